"""lib.acquire.fetch_workers: worker processes that fetch, check and store, driven for real."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import pytest
from PIL import Image

from lib.acquire import fetch_workers
from lib.acquire.fetch_workers import CHECK, FETCH, Job, Outcome, WorkerFailed, Workers, shares
from lib.acquire.resize import ImageLimits
from lib.common.pools import context


def png(size: tuple[int, int], colour: int = 30) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, colour)).save(buffer, "PNG")
    return buffer.getvalue()


def options(concurrency: int = 3, per_host: int = 3) -> dict:
    return dict(
        concurrency=concurrency,
        per_host=per_host,
        timeout_s=10.0,
        connect_timeout_s=5.0,
        read_timeout_s=5.0,
        dns_cache_s=10.0,
        retries=0,
        backoff_s=0.01,
        max_redirects=0,
        max_bytes=1_000_000,
    )


def start(competition: Path, count: int = 2, limits: ImageLimits | None = None) -> Workers:
    return Workers(
        fetch_options=[options() for _ in range(count)],
        limits=limits or ImageLimits(min_side=8),
        competition_dir=competition,
        context=context(),
    )


def run(workers: Workers, jobs: list[Job]) -> list[Outcome]:
    try:
        return list(workers.run(len(jobs), jobs.__getitem__))
    finally:
        workers.close()


def test_every_job_gets_exactly_one_outcome_across_chunks(tmp_path: Path):
    # 47 jobs, handed out 3 at a time to each of 2 workers: no job lost or done twice
    sources = tmp_path / "sources"
    sources.mkdir()
    bodies = {i: png((16 + i % 5, 16), colour=i) for i in range(47)}
    for i, body in bodies.items():
        (sources / f"{i}.png").write_bytes(body)
    out = tmp_path / "out"
    out.mkdir()
    jobs = [Job(FETCH, (f"file:sources/{i}.png",), str(i), str(out)) for i in range(47)]
    workers = start(tmp_path)
    outcomes = run(workers, jobs)
    assert sorted(outcome.index for outcome in outcomes) == list(range(47))
    assert {outcome.kind for outcome in outcomes} == {fetch_workers.DOWNLOADED}
    assert all((out / f"{i}.png").read_bytes() == body for i, body in bodies.items())
    assert all(outcome.nbytes == len(bodies[outcome.index]) for outcome in outcomes)
    assert workers.fetching_s > 0


def test_a_worker_given_no_job_does_not_stretch_the_fetching_time(tmp_path: Path):
    (tmp_path / "1.png").write_bytes(png((16, 16)))
    (tmp_path / "out").mkdir()
    workers = start(tmp_path, count=3)  # one job: at least two workers never get one
    started = time.perf_counter()
    outcomes = run(workers, [Job(FETCH, ("file:1.png",), "1", str(tmp_path / "out"))])
    assert [outcome.index for outcome in outcomes] == [0]
    assert 0 <= workers.fetching_s <= time.perf_counter() - started


def test_mirrors_failures_and_images_on_disk(tmp_path: Path):
    (tmp_path / "good.png").write_bytes(png((16, 16)))
    (tmp_path / "pixel.png").write_bytes(png((1, 1)))
    out = tmp_path / "out"
    out.mkdir()
    (out / "3.png").write_bytes(png((20, 20)))  # whole: kept
    (out / "4.png").write_bytes(b"broken")  # fetched again by the worker that found it
    jobs = [
        Job(FETCH, ("file:missing.png", "file:good.png"), "1", str(out)),
        Job(FETCH, ("file:missing.png", "file:pixel.png"), "2", str(out)),
        Job(CHECK, ("file:good.png",), "3", str(out / "3.png")),
        Job(CHECK, ("file:good.png",), "4", str(out / "4.png")),
    ]
    outcomes = sorted(run(start(tmp_path), jobs), key=lambda o: (o.index, o.kind != "replaced"))
    assert [(o.index, o.kind) for o in outcomes] == [
        (0, "downloaded"),
        (1, "failed"),
        (2, "existing"),
        (3, "replaced"),
        (3, "downloaded"),
    ]
    assert outcomes[0].later_url and outcomes[1].reasons == ("not_found", "placeholder")
    assert (out / "4.png").read_bytes() == png((16, 16))


def test_an_unexpected_error_in_a_worker_is_raised_in_the_main_process(tmp_path: Path):
    (tmp_path / "good.png").write_bytes(png((16, 16)))
    jobs = [Job(FETCH, ("file:good.png",), "1", str(tmp_path / "nowhere"))]
    with pytest.raises(WorkerFailed, match="FileNotFoundError"):
        run(start(tmp_path, count=1), jobs)


def test_a_killed_worker_fails_the_run_instead_of_hanging(tmp_path: Path):
    workers = start(tmp_path, count=1)
    os.kill(workers.pids[0], signal.SIGKILL)
    with pytest.raises(WorkerFailed, match="exited with code -9"):
        run(workers, [Job(FETCH, ("file:none.png",), "1", str(tmp_path))])


def test_close_ends_every_worker(tmp_path: Path):
    workers = start(tmp_path)
    pids = workers.pids
    workers.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies")
def test_the_workers_run_under_sched_batch(tmp_path: Path):
    workers = start(tmp_path)
    try:
        deadline = time.monotonic() + 30
        while {os.sched_getscheduler(pid) for pid in workers.pids} != {os.SCHED_BATCH}:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        workers.close()
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the main process is left as it was


@pytest.mark.parametrize(
    ("total", "parts", "expected"),
    [(128, 2, [64, 64]), (5, 2, [3, 2]), (3, 3, [1, 1, 1]), (16, 3, [6, 5, 5])],
)
def test_shares_split_a_limit_without_exceeding_it(total, parts, expected):
    assert shares(total, parts) == expected


def test_a_worker_without_jobs_adds_no_fetching_span(tmp_path: Path):
    # 3 workers, 1 job: two workers get none and must not stretch the span back to time 0
    (tmp_path / "good.png").write_bytes(png((16, 16)))
    out = tmp_path / "out"
    out.mkdir()
    started = time.perf_counter()
    workers = start(tmp_path, count=3)
    run(workers, [Job(FETCH, ("file:good.png",), "1", str(out))])
    assert 0 < workers.fetching_s <= time.perf_counter() - started
    workers = start(tmp_path, count=2)  # only an image on disk, fine: nothing fetched
    run(workers, [Job(CHECK, ("file:good.png",), "1", str(out / "1.png"))])
    assert workers.fetching_s == 0
