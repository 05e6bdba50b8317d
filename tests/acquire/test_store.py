"""lib.acquire.store: the download's worker processes, driven from a real event loop."""

from __future__ import annotations

import asyncio
import io
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lib.acquire.resize import ImageLimits
from lib.acquire.store import EXISTING_BAD, EXISTING_OK, StoreWorkers, WorkerDied
from lib.common.pools import context


def png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def run_with(workers: StoreWorkers, work) -> object:
    async def main():
        async with workers.connected():
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
    with pytest.raises(WorkerDied):
        run_with(workers, lambda: asyncio.wait_for(
            workers.store(png((16, 16)), tmp_path, "1"), timeout=30))


def test_close_ends_every_worker(tmp_path: Path):
    workers = StoreWorkers(count=2, limits=ImageLimits(), context=context())
    pids = workers.pids
    run_with(workers, lambda: workers.store(png((16, 16)), tmp_path, "1"))
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def noise_png(side: int, seed: int) -> bytes:
    """A PNG that does not compress: its size in bytes grows with `side` squared."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


def test_every_body_arrives_intact_through_the_shared_slots_even_when_callers_give_up(
        tmp_path: Path):
    # one worker, so its two body slots are reused many times over; the sizes go up and down
    # (the slots grow from a few KB to 3 MB), and some callers are cancelled while their body
    # is in a slot: a slot is only refilled once the worker has answered for it
    workers = StoreWorkers(count=1, limits=ImageLimits(min_side=8), context=context())
    sides = [16, 600, 24, 1000, 40, 200, 1000, 8, 700, 300, 32, 900]
    bodies = [noise_png(side, seed) for seed, side in enumerate(sides)]

    async def work():
        tasks = [asyncio.ensure_future(workers.store(body, tmp_path, str(i)))
                 for i, body in enumerate(bodies)]
        await asyncio.sleep(0)  # the first two are sent to the worker
        for i in (1, 4, 9):
            tasks[i].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = run_with(workers, work)
    for i, body in enumerate(bodies):
        if i in (1, 4, 9):
            assert isinstance(results[i], asyncio.CancelledError)
            continue
        assert results[i] == (None, len(body), False)
        assert (tmp_path / f"{i}.png").read_bytes() == body
    # the cancelled images already in the worker's slots were still stored whole, or not at all
    for i in (1, 4, 9):
        path = tmp_path / f"{i}.png"
        assert not path.exists() or path.read_bytes() == bodies[i]
