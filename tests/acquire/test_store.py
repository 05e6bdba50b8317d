"""lib.acquire.store: the download's worker processes, driven from a real event loop."""

from __future__ import annotations

import asyncio
import io
import os
import signal
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
from PIL import Image

from lib.acquire.resize import ImageLimits
from lib.acquire.store import EXISTING_BAD, EXISTING_OK, StoreWorkers
from lib.common.pools import context


def png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def run_with(workers: StoreWorkers, work) -> object:
    async def main():
        return await work()
    try:
        return asyncio.run(main())
    finally:
        workers.close()


def test_bodies_are_stored_and_images_on_disk_checked_in_the_workers(tmp_path: Path):
    workers = StoreWorkers(count=2, limits=ImageLimits(min_side=8), context=context())
    body = png((32, 16))
    (tmp_path / "broken.png").write_bytes(b"not an image")

    async def work():
        stored = await asyncio.gather(*(workers.store(body, tmp_path, str(i)) for i in range(6)))
        placeholder = await workers.store(png((1, 1)), tmp_path, "pixel")
        checks = [await workers.check_existing(str(tmp_path / name))
                  for name in ("0.png", "broken.png")]
        return stored, placeholder, checks

    stored, placeholder, checks = run_with(workers, work)
    assert stored == [(None, len(body), False)] * 6
    assert all((tmp_path / f"{i}.png").read_bytes() == body for i in range(6))
    assert placeholder == ("placeholder", 0, False)
    assert checks == [EXISTING_OK, EXISTING_BAD]
    assert not (tmp_path / "broken.png").exists()
    assert not list(tmp_path.glob(".tmp*"))


def test_an_unexpected_error_in_a_worker_is_raised_in_the_main_process(tmp_path: Path):
    workers = StoreWorkers(count=1, limits=ImageLimits(), context=context())
    with pytest.raises(FileNotFoundError):  # the folder does not exist: a bug, not a bad image
        run_with(workers, lambda: workers.store(png((16, 16)), tmp_path / "nowhere", "1"))


def test_a_killed_worker_fails_the_call_instead_of_hanging(tmp_path: Path):
    workers = StoreWorkers(count=1, limits=ImageLimits(), context=context())
    os.kill(workers.pids[0], signal.SIGKILL)
    with pytest.raises(BrokenProcessPool):
        run_with(workers, lambda: asyncio.wait_for(
            workers.store(png((16, 16)), tmp_path, "1"), timeout=30))


def test_close_ends_every_worker(tmp_path: Path):
    workers = StoreWorkers(count=2, limits=ImageLimits(), context=context())
    pids = workers.pids
    run_with(workers, lambda: workers.store(png((16, 16)), tmp_path, "1"))
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
