"""lib.common.progress: a bar with rate and ETA in a terminal and in a log alike."""

from __future__ import annotations

import io
import re
import time

import lib.common.progress as progress_module
from lib.common.progress import LOG_INTERVAL_S, LOG_WIDTH, progress


def test_off_a_terminal_the_bar_is_shown_with_rate_and_eta_at_a_slow_pace(monkeypatch):
    log = io.StringIO()  # what a queued experiment's log is: not a terminal
    monkeypatch.setattr("sys.stderr", log)
    with progress(total=40, desc="hash") as bar:
        assert (bar.mininterval, bar.ncols, bar.disable) == (LOG_INTERVAL_S, LOG_WIDTH, False)
        for _ in range(40):
            time.sleep(0.001)
            bar.update()
    updates = [line for line in re.split(r"[\r\n]", log.getvalue()) if line]
    assert len(updates) <= 3  # the start, maybe one more, the end: not one per image
    assert re.search(r"hash: 100%.*40/40 \[\d\d:\d\d<00:00, +[\d.]+img/s\]", updates[-1])
    assert all(len(line) <= LOG_WIDTH for line in updates)


def test_in_a_terminal_it_redraws_often(monkeypatch):
    monkeypatch.setattr(progress_module, "_is_terminal", lambda: True)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    with progress(range(3), desc="stats", leave=False) as bar:
        assert bar.mininterval == 0.1 and list(bar) == [0, 1, 2]


def test_a_closed_stderr_is_no_terminal(monkeypatch):
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr("sys.stderr", closed)
    assert progress_module._is_terminal() is False
