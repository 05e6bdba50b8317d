"""Progress of a long loop, with its rate and ETA, in a terminal and in a log alike.

In: what tqdm takes (an iterable and/or a total, a description, a unit). Out: a tqdm bar on
stderr. In a terminal it redraws in place up to 10 times a second. Elsewhere (a queued
experiment's log read with `dvc queue logs`, CI, `dvc repro 2> log`) it is still shown, as
tqdm's own ``disable=None`` would not, but at most every ``LOG_INTERVAL_S`` seconds, at a fixed
width, so a step of an hour adds a few hundred updates to its log, each with the count, the
rate and the time left.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

LOG_INTERVAL_S = 15.0  # seconds between two updates written to a file or pipe
LOG_WIDTH = 100  # characters of an update written to a file or pipe


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str,
    unit: str = "img",
    **options: Any,
) -> tqdm:
    """A tqdm bar over ``iterable`` (or updated by hand up to ``total``); ``options`` go to
    tqdm as they are (``initial``, ``smoothing``, ``leave``...)."""
    terminal = _is_terminal()
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        mininterval=0.1 if terminal else LOG_INTERVAL_S,
        ncols=None if terminal else LOG_WIDTH,
        **options,
    )


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without it, or closed
        return False
