"""Learning-rate schedules, stepped every batch (reduce-on-plateau: every epoch).

In: the run's length in optimizer steps and the schedule's knobs. Out: a schedule object whose
`factor(step)` multiplies each param group's base lr, with a linear warm-up in front of every
schedule. Plain functions of the step, so a resumed run lands on exactly the same lr.

- cosine: warm-up, then half a cosine from 1 to 0 over the remaining steps.
- sgdr: cosine with warm restarts (Loshchilov & Hutter, https://arxiv.org/abs/1608.03983):
  the first cycle lasts `t0` epochs, each next one `t_mult` times longer.
- onecycle: rises from 1/25 to 1 over the first 30% of the run (no separate warm-up), then a
  cosine down to 1/1e4 (Smith, https://arxiv.org/abs/1708.07120, as PyTorch's OneCycleLR).
- plateau: constant after warm-up; divided by `1/factor` when the validation loss has not
  improved for `patience` epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SCHEDULES = ("cosine", "sgdr", "onecycle", "plateau")


@dataclass
class Schedule:
    name: str
    total_steps: int
    steps_per_epoch: int
    warmup_steps: int = 0
    t0_epochs: float = 1.0
    t_mult: float = 2.0
    plateau_patience: int = 1
    plateau_factor: float = 0.5
    # Reduce-on-plateau state (saved in resume checkpoints).
    state: dict = field(default_factory=lambda: {"best": math.inf, "bad": 0, "scale": 1.0})

    def factor(self, step: int) -> float:
        if self.name == "onecycle":
            return _one_cycle(step, self.total_steps)
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        after = step - self.warmup_steps
        if self.name == "cosine":
            return _half_cosine(after / max(self.total_steps - self.warmup_steps, 1))
        if self.name == "sgdr":
            return self._sgdr(after)
        return self.state["scale"]

    def _sgdr(self, step: int) -> float:
        cycle = max(self.t0_epochs * self.steps_per_epoch, 1)
        while step >= cycle:
            step -= cycle
            cycle *= self.t_mult
        return _half_cosine(step / cycle)

    def end_epoch(self, val_loss: float) -> None:
        """Reduce-on-plateau bookkeeping; the other schedules ignore it."""
        if self.name != "plateau":
            return
        if val_loss < self.state["best"]:
            self.state.update(best=val_loss, bad=0)
            return
        self.state["bad"] += 1
        if self.state["bad"] > self.plateau_patience - 1:
            self.state.update(scale=self.state["scale"] * self.plateau_factor, bad=0)


def _half_cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def _one_cycle(
    step: int, total: int, peak_at: float = 0.3, start: float = 1 / 25, end: float = 1e-4
) -> float:
    rise = max(round(total * peak_at), 1)
    if step < rise:
        return start + (1 - start) * (1 - _half_cosine(step / rise))
    return end + (1 - end) * _half_cosine((step - rise) / max(total - rise, 1))
