import math

import pytest

from lib.train.schedules import Schedule


def curve(schedule, steps):
    return [schedule.factor(s) for s in range(steps)]


def test_cosine_with_linear_warmup():
    s = Schedule("cosine", total_steps=10, steps_per_epoch=5, warmup_steps=2)
    assert curve(s, 3) == [0.5, 1.0, 1.0]
    assert s.factor(6) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert s.factor(10) == pytest.approx(0.0)


def test_sgdr_restarts_after_t0_then_t0_times_t_mult():
    s = Schedule("sgdr", total_steps=70, steps_per_epoch=10, t0_epochs=1, t_mult=2)
    assert s.factor(0) == 1.0 and s.factor(5) == pytest.approx(0.5)
    assert s.factor(9) < 0.03
    assert s.factor(10) == 1.0  # first restart after 10 steps
    assert s.factor(20) == pytest.approx(0.5)  # middle of the 20-step second cycle
    assert s.factor(30) == 1.0  # second restart after 10 + 20 steps


def test_one_cycle_rises_to_peak_at_30_percent_then_anneals():
    s = Schedule("onecycle", total_steps=100, steps_per_epoch=10)
    values = curve(s, 100)
    assert values[0] == pytest.approx(1 / 25)
    assert max(values) == pytest.approx(1.0) and values.index(max(values)) == 30
    assert values[-1] < 0.001
    assert all(a <= b for a, b in zip(values[:30], values[1:31], strict=True))


def test_plateau_cuts_after_patience_epochs_without_improvement():
    s = Schedule(
        "plateau", total_steps=100, steps_per_epoch=10, plateau_patience=2, plateau_factor=0.5
    )
    for loss in (1.0, 0.9, 0.95, 0.93):
        s.end_epoch(loss)
    assert s.factor(50) == 0.5
    s.end_epoch(0.8)
    s.end_epoch(0.85)
    assert s.factor(60) == 0.5
