"""lib.acquire.download and the download stage against a real aiohttp server on 127.0.0.1 that
injects each fault, and real files; no mocks."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from PIL import Image

from lib.acquire.download import (
    SOURCES_FILE,
    DownloadResult,
    FailuresFileError,
    download_competition,
    read_failures,
    write_report,
)
from lib.acquire.fetch import backoff_delay, retry_after_s
from lib.acquire.records import ImageRecord
from lib.common.decoded import DECODED_FILE, known_to_decode, read_decoded
from lib.prepare.duplicates import file_digest
from tests.conftest import REPO, default_params, download_settings, write_image

# small limits so the big and the bomb fixtures trip them while 32x32 images pass
SETTINGS = dict(
    concurrency=8,
    per_host=8,
    timeout_s=1.0,
    connect_timeout_s=1.0,
    read_timeout_s=0.3,
    retries=1,
    backoff_s=0.01,
    max_redirects=3,
    min_side=8,
    max_bytes=50_000,
    max_pixels=10_000,
    workers=2,
)


def encode(size: tuple[int, int], fmt: str, *, noise: bool = False) -> bytes:
    image = Image.new("RGB", size, (200, 30, 90))
    if noise:  # incompressible, so the file is big
        rng = random.Random(0)
        pixels = size[0] * size[1]
        image.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(pixels)])
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@dataclass
class Fixtures:
    jpeg: bytes
    png: bytes
    gif_1x1: bytes
    truncated_jpeg: bytes
    big_png: bytes  # over max_bytes
    bomb_png: bytes  # 120x120 = 14,400 px: between 1x and 2x max_pixels (PIL only warns)
    huge_bomb_png: bytes  # 300x300: over 2x max_pixels (PIL raises)
    noisy_jpeg: bytes  # 64x64, ~10 kB: big enough to be cut in the middle


@pytest.fixture(scope="module")
def fixtures() -> Fixtures:
    noisy_jpeg = encode((64, 64), "JPEG", noise=True)
    return Fixtures(
        jpeg=encode((32, 32), "JPEG"),
        png=encode((32, 32), "PNG"),
        gif_1x1=encode((1, 1), "GIF"),
        truncated_jpeg=noisy_jpeg[: len(noisy_jpeg) // 2],
        big_png=encode((160, 160), "PNG", noise=True),
        bomb_png=encode((120, 120), "PNG"),
        huge_bomb_png=encode((300, 300), "PNG"),
        noisy_jpeg=noisy_jpeg,
    )


@dataclass
class Server:
    base: str
    hits: Counter[str]
    hit_times: dict[str, list[float]]
    sent: Counter[str]  # body bytes the streaming handlers managed to send
    in_flight: Counter[str]  # requests being served now, per host:port
    peak: Counter[str]  # the most at once, per host:port, and "all"
    other_base: str = ""  # the same app on a second port: another "host"
    delay_s: list[float] = field(default_factory=lambda: [0.0])  # for /delayed/

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"


def build_app(fixtures: Fixtures, server: Server) -> web.Application:
    hits = server.hits

    def image(body: bytes, content_type: str = "image/jpeg"):
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=body, content_type=content_type)

        return handler

    def once_then_image(status: int, headers: dict[str, str]):
        # first request of each path fails with `status`, later ones serve the JPEG
        async def handler(request: web.Request) -> web.Response:
            if hits[request.path] == 1:
                return web.Response(status=status, headers=headers)
            return web.Response(body=fixtures.jpeg, content_type="image/jpeg")

        return handler

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, text="not here")

    async def gone(request: web.Request) -> web.Response:
        return web.Response(status=410, text="gone for good")

    async def page(request: web.Request) -> web.Response:
        html = "<html><body>Image removed</body></html>"
        return web.Response(text=html, content_type="text/html")

    async def slow(request: web.Request) -> web.Response:  # no headers before the timeout
        await asyncio.sleep(5)
        return web.Response(body=fixtures.jpeg, content_type="image/jpeg")

    async def stream(request: web.Request, body: bytes) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "image/jpeg", "Content-Length": str(len(body))}
        )
        await response.prepare(request)
        return response

    async def stall(request: web.Request) -> web.StreamResponse:  # silent mid-body
        response = await stream(request, fixtures.noisy_jpeg)
        await response.write(fixtures.noisy_jpeg[:1000])
        await asyncio.sleep(5)
        await response.write(fixtures.noisy_jpeg[1000:])
        return response

    async def trickle(request: web.Request) -> web.StreamResponse:  # never silent, too slow
        response = await stream(request, fixtures.noisy_jpeg)
        for start in range(0, len(fixtures.noisy_jpeg), 100):
            await response.write(fixtures.noisy_jpeg[start : start + 100])
            await asyncio.sleep(0.1)
        return response

    async def cut(request: web.Request) -> web.StreamResponse:
        # first request: half the body, then the connection drops; later ones: the image
        if hits[request.path] > 1:
            return web.Response(body=fixtures.noisy_jpeg, content_type="image/jpeg")
        response = await stream(request, fixtures.noisy_jpeg)
        await response.write(fixtures.noisy_jpeg[: len(fixtures.noisy_jpeg) // 2])
        request.transport.close()
        return response

    async def endless(request: web.Request) -> web.StreamResponse:  # no Content-Length
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        chunk = fixtures.big_png[:8192]
        for _ in range(8192):  # 64 MB, unless the client hangs up first
            await response.write(chunk)
            server.sent[request.path] += len(chunk)
        return response

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.path)

    async def hops(request: web.Request) -> web.Response:  # /hops/3 -> /hops/2 -> ... -> image
        left = int(request.match_info["n"])
        if left == 0:
            return web.Response(body=fixtures.jpeg, content_type="image/jpeg")
        raise web.HTTPFound(f"/hops/{left - 1}/{request.match_info['name']}")

    async def delayed(request: web.Request) -> web.Response:
        await asyncio.sleep(server.delay_s[0])
        return web.Response(body=fixtures.noisy_jpeg, content_type="image/jpeg")

    @web.middleware
    async def count(request: web.Request, handler):
        hits[request.path] += 1
        server.hit_times[request.path].append(time.monotonic())
        server.in_flight[request.host] += 1
        server.in_flight["all"] += 1
        for key in (request.host, "all"):
            server.peak[key] = max(server.peak[key], server.in_flight[key])
        try:
            return await handler(request)
        finally:
            server.in_flight[request.host] -= 1
            server.in_flight["all"] -= 1

    app = web.Application(middlewares=[count])
    app.router.add_get("/good.jpg", image(fixtures.jpeg))
    app.router.add_get("/good.png", image(fixtures.png, "image/png"))
    app.router.add_get("/png-named.jpg", image(fixtures.png))
    app.router.add_get("/jpeg-as-html", image(fixtures.jpeg, "text/html"))
    app.router.add_get("/pixel.gif", image(fixtures.gif_1x1, "image/gif"))
    app.router.add_get("/truncated.jpg", image(fixtures.truncated_jpeg))
    app.router.add_get("/big.png", image(fixtures.big_png, "image/png"))
    app.router.add_get("/bomb.png", image(fixtures.bomb_png, "image/png"))
    app.router.add_get("/huge-bomb.png", image(fixtures.huge_bomb_png, "image/png"))
    app.router.add_get("/missing", missing)
    app.router.add_get("/missing/{name}", missing)
    app.router.add_get("/gone", gone)
    app.router.add_get("/page.html", page)
    app.router.add_get("/slow.jpg", slow)
    app.router.add_get("/stall.jpg", stall)
    app.router.add_get("/trickle.jpg", trickle)
    app.router.add_get("/endless", endless)
    app.router.add_get("/loop", loop)
    app.router.add_get("/hops/{n}/{name}", hops)
    app.router.add_get("/cut/{name}", cut)
    app.router.add_get("/delayed/{name}", delayed)
    app.router.add_get("/flaky/{name}", once_then_image(503, {}))
    app.router.add_get("/error/{name}", once_then_image(500, {}))
    app.router.add_get("/unavailable/{name}", once_then_image(503, {"Retry-After": "1"}))
    app.router.add_get("/throttled/{name}", once_then_image(429, {"Retry-After": "0"}))
    return app


@pytest.fixture(scope="module")
def server(fixtures: Fixtures) -> Iterator[Server]:
    """A real HTTP server on two free ports, its own event loop in a background thread."""
    state = Server(
        base="",
        hits=Counter(),
        hit_times=defaultdict(list),
        sent=Counter(),
        in_flight=Counter(),
        peak=Counter(),
    )
    loop = asyncio.new_event_loop()
    # handler_cancellation: the slow handlers stop when the client gives up
    runner = web.AppRunner(
        build_app(fixtures, state), handler_cancellation=True, shutdown_timeout=1
    )
    loop.run_until_complete(runner.setup())
    for _ in range(2):
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    (host, port), (_, other_port) = (address[:2] for address in runner.addresses)
    state.base, state.other_base = f"http://{host}:{port}", f"http://{host}:{other_port}"
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield state
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.run_until_complete(runner.cleanup())
    loop.close()


def closed_port_url() -> str:
    """A loopback URL where nothing listens: the connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/x.jpg"


def train(image_id: int, label: int, *urls: str) -> ImageRecord:
    return ImageRecord("train", image_id, urls, label)


def validation(image_id: int, label: int, *urls: str) -> ImageRecord:
    return ImageRecord("validation", image_id, urls, label)


def unlabelled(image_id: int, *urls: str) -> ImageRecord:
    return ImageRecord("test", image_id, urls, None)


@dataclass
class Run:
    result: DownloadResult
    images: Path
    competition: Path
    server: Server
    refused: str

    def failure(self, split: str, image_id: int) -> dict | None:
        rows = [
            row
            for row in self.result.failures
            if (row["split"], row["image_id"]) == (split, image_id)
        ]
        assert len(rows) <= 1
        return rows[0] if rows else None

    def files(self, split: str, image_id: int) -> list[Path]:
        return sorted(self.images.glob(f"{split}/**/{image_id}.*"))


@pytest.fixture(scope="module")
def run(server: Server, fixtures: Fixtures, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One download of a competition holding every case, shared by the tests below."""
    root = tmp_path_factory.mktemp("run")
    competition = root / "competition"
    (competition / "images").mkdir(parents=True)
    (competition / "images" / "good.png").write_bytes(fixtures.png)
    (competition / "images" / "good.jpg").write_bytes(fixtures.jpeg)
    (competition / "images" / "big.png").write_bytes(fixtures.big_png)
    outside = root / "outside.png"
    outside.write_bytes(fixtures.png)
    (competition / "images" / "link.png").symlink_to(outside)
    url = server.url
    refused = closed_port_url()
    records = {
        "train": [
            train(1, 3, url("good.jpg")),
            train(2, 3, url("missing")),
            train(3, 12, url("missing"), url("good.png")),  # a dead first mirror
            train(4, 5, url("page.html")),
            train(5, 5, url("pixel.gif")),
            train(6, 5, url("truncated.jpg")),
            train(7, 5, url("flaky/run")),
            train(8, 5, url("png-named.jpg")),
            train(9, 5, url("loop")),
            train(10, 5, url("slow.jpg")),
            train(11, 5, url("big.png")),
            train(12, 5, url("bomb.png")),
            train(13, 5, url("missing"), url("page.html")),
            train(14, 5, url("throttled/run")),
            train(15, 5, url("huge-bomb.png")),
            train(16, 5, url("gone")),
            train(17, 5, url("error/run")),
            train(18, 5, url("unavailable/run")),
            train(19, 5, url("stall.jpg")),
            train(20, 5, url("trickle.jpg")),
            train(21, 5, url("cut/run")),
            train(22, 5, url("hops/3/run")),  # max_redirects=3: followed
            train(23, 5, url("hops/4/run")),  # one too many
            train(24, 5, url("endless")),
            train(25, 5, url("jpeg-as-html")),
            train(26, 5, refused),
        ],
        "validation": [
            validation(40, 7, "file:images/good.png"),
            validation(41, 7, "file:images/nothere.png"),
            validation(42, 7, "file:../outside.png"),
            validation(43, 7, f"file://{competition / 'images' / 'good.jpg'}"),
            validation(44, 7, "file:images/link.png"),
            validation(45, 7, "file:images/big.png"),
        ],
        "test": [
            unlabelled(50, url("good.jpg")),
            unlabelled(51, f"file://{outside}"),
        ],
    }
    result = download_competition(
        records,
        competition_dir=competition,
        images_dir=root / "images",
        settings=download_settings(**SETTINGS),
    )
    return Run(result, root / "images", competition, server, refused)


def test_good_image_lands_in_imagefolder_path_with_identical_bytes(run: Run, fixtures: Fixtures):
    # labels go up to 12: two digits for every split, validation included
    assert (run.images / "train" / "03" / "1.jpg").read_bytes() == fixtures.jpeg
    assert (run.images / "test" / "50.jpg").read_bytes() == fixtures.jpeg
    assert run.failure("train", 1) is None


def test_extension_comes_from_the_decoded_format_not_the_url(run: Run, fixtures: Fixtures):
    assert (run.images / "train" / "05" / "8.png").read_bytes() == fixtures.png
    assert not (run.images / "train" / "05" / "8.jpg").exists()


def test_valid_image_with_a_wrong_content_type_is_kept(run: Run, fixtures: Fixtures):
    assert (run.images / "train" / "05" / "25.jpg").read_bytes() == fixtures.jpeg


@pytest.mark.parametrize(
    ("split", "image_id", "reason"),
    [
        ("train", 2, "http_404"),
        ("train", 4, "not_an_image"),  # HTML served with status 200
        ("train", 5, "placeholder"),  # 1x1 GIF
        ("train", 6, "truncated_image"),
        ("train", 9, "too_many_redirects"),  # a loop
        ("train", 10, "timeout"),  # no response before read_timeout_s
        ("train", 11, "too_large"),  # Content-Length over max_bytes
        ("train", 12, "decompression_bomb"),
        ("train", 15, "decompression_bomb"),
        ("train", 16, "http_410"),
        ("train", 19, "timeout"),  # silent mid-body longer than read_timeout_s
        ("train", 20, "timeout"),  # a body slower than timeout_s in total
        ("train", 23, "too_many_redirects"),  # one hop over max_redirects
        ("train", 24, "too_large"),  # no Content-Length, over max_bytes
        ("train", 26, "connection_error"),  # refused
        ("validation", 41, "not_found"),
        ("validation", 42, "file_outside_competition"),
        ("validation", 44, "file_outside_competition"),  # a symlink pointing out
        ("validation", 45, "too_large"),
        ("test", 51, "file_outside_competition"),
    ],
)
def test_failure_reason(run: Run, split: str, image_id: int, reason: str):
    row = run.failure(split, image_id)
    assert row is not None and row["reason"].split(";")[-1] == reason
    assert not run.files(split, image_id)


def test_dead_first_mirror_falls_back_to_the_second(run: Run, fixtures: Fixtures):
    assert run.failure("train", 3) is None
    assert (run.images / "train" / "12" / "3.png").read_bytes() == fixtures.png
    assert run.result.report["from_later_url"] == 1


@pytest.mark.parametrize(
    ("image_id", "path"),
    [
        (7, "/flaky/run"),
        (17, "/error/run"),
        (14, "/throttled/run"),
        (18, "/unavailable/run"),
        (21, "/cut/run"),
    ],
)
def test_retryable_failure_then_200_is_downloaded_after_one_retry(run: Run, image_id, path):
    # 503, 500, 429, 503 + Retry-After, a connection cut mid-body: each once, then the image
    assert run.failure("train", image_id) is None and run.files("train", image_id)
    assert run.server.hits[path] == 2


def test_retry_after_is_honoured(run: Run):
    first, second = run.server.hit_times["/unavailable/run"]
    assert second - first >= 0.95  # Retry-After: 1, far above backoff_s = 0.01


def test_a_cut_body_is_never_written_half(run: Run, fixtures: Fixtures):
    assert (run.images / "train" / "05" / "21.jpg").read_bytes() == fixtures.noisy_jpeg


def test_redirects_are_followed_up_to_max_redirects(run: Run, fixtures: Fixtures):
    assert (run.images / "train" / "05" / "22.jpg").read_bytes() == fixtures.jpeg
    assert run.server.hits["/loop"] == SETTINGS["max_redirects"] + 1  # then it gives up


def test_reading_stops_at_the_size_cap(run: Run):
    assert run.server.hits["/endless"] == 1  # not retried
    assert run.server.sent["/endless"] < 16_000_000  # of 64 MB offered


@pytest.mark.parametrize(
    "path", ["/page.html", "/missing", "/gone", "/loop", "/big.png", "/truncated.jpg", "/pixel.gif"]
)
def test_permanent_failures_are_not_retried(run: Run, path: str):
    per_image = {"/page.html": 2, "/missing": 3}.get(path, 1)  # images 2, 3, 4 and 13
    per_request = SETTINGS["max_redirects"] + 1 if path == "/loop" else 1
    assert run.server.hits[path] == per_image * per_request


@pytest.mark.parametrize("path", ["/slow.jpg", "/stall.jpg", "/trickle.jpg"])
def test_timeouts_are_retried(run: Run, path: str):
    assert run.server.hits[path] == 1 + SETTINGS["retries"]


def test_file_urls_read_inside_the_competition(run: Run, fixtures: Fixtures):
    assert (run.images / "validation" / "07" / "40.png").read_bytes() == fixtures.png
    assert (run.images / "validation" / "07" / "43.jpg").read_bytes() == fixtures.jpeg


@pytest.mark.timeout(60)  # opening the FIFO would block: fail, do not hang
def test_file_urls_to_special_files_are_refused_unopened(fixtures: Fixtures, tmp_path: Path):
    competition = tmp_path / "competition"
    competition.mkdir()
    (competition / "good.png").write_bytes(fixtures.png)
    os.mkfifo(competition / "fifo")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(competition / "socket"))
    (competition / "folder").mkdir()
    records = {
        "train": [
            train(1, 1, "file:fifo"),
            train(2, 1, "file:socket"),
            train(3, 1, "file:folder"),
            train(4, 1, "file:fifo", "file:good.png"),
        ]
    }
    opened = threading.Event()
    done = threading.Event()

    def watch_fifo() -> None:  # a write end opens without blocking only while a reader has it
        while not done.is_set():
            try:
                os.close(os.open(competition / "fifo", os.O_WRONLY | os.O_NONBLOCK))
                opened.set()  # closing it also frees the reader, so the test ends
            except OSError:  # ENXIO: no reader
                time.sleep(0.001)

    watcher = threading.Thread(target=watch_fifo, daemon=True)
    watcher.start()
    try:
        result = download_competition(
            records,
            competition_dir=competition,
            images_dir=tmp_path / "images",
            settings=download_settings(**SETTINGS),
        )
    finally:
        done.set()
        watcher.join()
        listener.close()
    assert not opened.is_set()
    assert {row["image_id"]: row["reason"] for row in result.failures} == {
        1: "not_a_regular_file",
        2: "not_a_regular_file",
        3: "not_a_regular_file",
    }
    assert (tmp_path / "images" / "train" / "1" / "4.png").read_bytes() == fixtures.png


def test_report_counts(run: Run, fixtures: Fixtures):
    report = run.result.report
    assert (report["total"], report["downloaded"], report["failed"]) == (34, 13, 21)
    assert report["skipped_existing"] == report["not_attempted"] == report["resized"] == 0
    assert (
        report["bytes"]
        == report["bytes_written"]
        == (9 * len(fixtures.jpeg) + 3 * len(fixtures.png) + len(fixtures.noisy_jpeg))
    )
    assert report["per_split"] == {
        "train": {
            "total": 26,
            "downloaded": 10,
            "skipped_existing": 0,
            "failed": 16,
            "not_attempted": 0,
        },
        "validation": {
            "total": 6,
            "downloaded": 2,
            "skipped_existing": 0,
            "failed": 4,
            "not_attempted": 0,
        },
        "test": {
            "total": 2,
            "downloaded": 1,
            "skipped_existing": 0,
            "failed": 1,
            "not_attempted": 0,
        },
    }
    assert report["failure_reasons"] == {
        "connection_error": 1,
        "decompression_bomb": 2,
        "file_outside_competition": 3,
        "http_404": 1,
        "http_410": 1,
        "not_an_image": 2,
        "not_found": 1,
        "placeholder": 1,
        "timeout": 3,
        "too_large": 3,
        "too_many_redirects": 2,
        "truncated_image": 1,
    }
    assert report["elapsed_s"] > 0 and report["images_per_s"] > 0
    assert 0 < report["fetching_s"] < report["elapsed_s"]


def test_failures_name_the_last_url_and_every_reason(run: Run):
    rows = {(row["split"], row["image_id"]): row for row in run.result.failures}
    assert len(rows) == 21
    assert rows[("train", 13)] == {
        "split": "train",
        "image_id": 13,
        "url": run.server.url("page.html"),
        "reason": "http_404;not_an_image",
    }
    assert rows[("train", 26)]["url"] == run.refused
    assert list(rows)[0] == ("train", 2)  # sorted by split then image_id
    assert list(rows)[-1] == ("test", 51)


def test_the_digest_of_every_image_written_is_known_to_decode(run: Run):
    written = sorted(p for p in run.images.rglob("*") if p.is_file() and p.name[0] != ".")
    assert written
    digests = [file_digest(str(path)) for path in written]
    assert known_to_decode(digests, run.images).all()
    assert len(read_decoded(run.images)) == len(set(digests))  # nothing else: no failure
    refused = file_digest(str(run.competition / "images" / "big.png"))  # over max_bytes
    assert not known_to_decode([refused], run.images)[0]


def test_no_temp_file_is_left_behind(run: Run):
    assert not list(run.images.rglob(".tmp*"))


def test_write_report_writes_json_and_csv(run: Run, tmp_path: Path):
    report_path, failures_path = tmp_path / "out" / "report.json", tmp_path / "failures.csv"
    write_report(
        run.result.report, run.result.failures, report_path=report_path, failures_path=failures_path
    )
    text = report_path.read_text()
    assert json.loads(text) == run.result.report
    assert text == json.dumps(run.result.report, indent=2, sort_keys=True) + "\n"
    lines = failures_path.read_text().splitlines()
    assert lines[0] == "split,image_id,url,reason"
    rows = list(csv.DictReader(io.StringIO(failures_path.read_text())))
    assert [(r["split"], r["image_id"], r["reason"]) for r in rows][:2] == [
        ("train", "2", "http_404"),
        ("train", "4", "not_an_image"),
    ]
    assert len(rows) == 21
    assert read_failures(failures_path) == {(r["split"], str(r["image_id"])) for r in rows}
    assert not list(tmp_path.rglob(".tmp*"))


def test_concurrency_is_bounded_in_total_and_per_host(server: Server, tmp_path: Path):
    server.delay_s[0] = 0.05
    server.peak.clear()
    records = {
        "train": [
            train(i, 1, f"{base}/delayed/bounded-{i}")
            for i, base in enumerate([server.base, server.other_base] * 20)
        ]
    }
    settings = download_settings(**SETTINGS | dict(concurrency=5, per_host=3))
    result = download_competition(
        records, competition_dir=tmp_path, images_dir=tmp_path / "images", settings=settings
    )
    assert result.report["downloaded"] == 40
    hosts = [base.removeprefix("http://") for base in (server.base, server.other_base)]
    # the workers (as many as cores, at most 3) split both limits between them
    assert 2 <= max(server.peak[host] for host in hosts) <= 3
    assert 3 <= server.peak["all"] <= 5


def test_max_side_shrinks_larger_images_and_keeps_small_ones(
    server: Server, fixtures: Fixtures, tmp_path: Path
):
    records = {
        "train": [
            train(1, 1, server.url("delayed/shrink")),  # 64x64 noisy JPEG
            train(2, 1, server.url("good.png")),
        ]
    }  # 32x32 PNG
    settings = download_settings(**SETTINGS | dict(max_side=40, jpeg_quality=80))
    result = download_competition(
        records, competition_dir=tmp_path, images_dir=tmp_path / "images", settings=settings
    )
    with Image.open(tmp_path / "images" / "train" / "1" / "1.jpg") as image:
        assert image.size == (40, 40)
    assert (tmp_path / "images" / "train" / "1" / "2.png").read_bytes() == fixtures.png
    report = result.report
    assert (report["downloaded"], report["resized"]) == (2, 1)
    assert report["bytes_written"] < report["bytes"]


def test_rerun_skips_existing_fetches_nothing_and_cleans_temp_files(
    server: Server, fixtures: Fixtures, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    images = tmp_path / "images"
    # an image already there under another extension counts as present
    (images / "train" / "2").mkdir(parents=True)
    (images / "train" / "2" / "41.webp").write_bytes(encode((16, 16), "WEBP"))
    records = {
        "train": [train(40, 1, server.url("flaky/rerun")), train(41, 2, server.url("good.png"))],
        "test": [
            unlabelled(42, server.url("good.jpg")),
            unlabelled(43, server.url("missing/rerun")),
        ],
    }
    settings = download_settings(**SETTINGS)
    first = download_competition(
        records, competition_dir=tmp_path, images_dir=images, settings=settings
    )
    assert (first.report["downloaded"], first.report["skipped_existing"]) == (2, 1)
    assert first.report["failure_reasons"] == {"http_404": 1}
    leftover = images / "test" / ".tmp42.jpg.1234.deadbeef"
    leftover.write_bytes(b"half")
    hits_before = Counter(server.hits)

    with caplog.at_level(logging.INFO, logger="lib.acquire.download"):
        second = download_competition(
            records, competition_dir=tmp_path, images_dir=images, settings=settings
        )

    assert (second.report["skipped_existing"], second.report["downloaded"]) == (3, 0)
    assert second.report["failed"] == 1  # the dead URL is tried again, nothing else
    assert +(Counter(server.hits) - hits_before) == Counter({"/missing/rerun": 1})
    assert not leftover.exists()
    assert (images / "train" / "1" / "40.jpg").read_bytes() == fixtures.jpeg
    assert any("3 skipped" in record.getMessage() for record in caplog.records)


def test_rerun_replaces_broken_images_and_shrinks_oversize_ones_in_place(
    server: Server, fixtures: Fixtures, tmp_path: Path
):
    images = tmp_path / "images"
    folder = images / "train" / "1"
    folder.mkdir(parents=True)
    (folder / "1.jpg").write_bytes(b"")  # e.g. copied in half by another tool
    (folder / "2.png").write_bytes(encode((64, 32), "PNG"))  # from a run without max_side
    records = {
        "train": [
            train(1, 1, server.url("good.jpg")),
            train(2, 1, server.url("missing/never-fetched")),
        ]
    }
    settings = download_settings(**SETTINGS | dict(max_side=16))
    result = download_competition(
        records, competition_dir=tmp_path, images_dir=images, settings=settings
    )
    report = result.report
    assert (report["existing_replaced"], report["existing_resized"]) == (1, 1)
    assert (report["downloaded"], report["skipped_existing"], report["failed"]) == (1, 1, 0)
    assert sorted(p.name for p in folder.iterdir()) == ["1.jpg", "2.jpg"]
    with Image.open(folder / "2.jpg") as image:
        assert image.size == (16, 8)
    assert server.hits["/missing/never-fetched"] == 0


def test_retry_failures_fetches_only_the_listed_images(
    server: Server, fixtures: Fixtures, tmp_path: Path
):
    images = tmp_path / "images"
    (images / "train" / "1").mkdir(parents=True)
    (images / "train" / "1" / "1.jpg").write_bytes(b"not checked in this mode")
    records = {
        "train": [
            train(1, 1, server.url("good.jpg")),
            train(2, 1, server.url("throttled/retry-listed")),
            train(3, 1, server.url("missing/retry-unlisted")),
            train(4, 1, server.url("missing/retry-listed")),
        ]
    }
    hits_before = Counter(server.hits)
    result = download_competition(
        records,
        competition_dir=tmp_path,
        images_dir=images,
        settings=download_settings(**SETTINGS),
        retry_only={("train", 2), ("train", 4), ("test", 9)},
    )
    new_hits = +(Counter(server.hits) - hits_before)
    assert new_hits == Counter({"/throttled/retry-listed": 2, "/missing/retry-listed": 1})
    report = result.report
    assert (
        report["downloaded"],
        report["skipped_existing"],
        report["failed"],
        report["not_attempted"],
    ) == (1, 1, 1, 1)
    assert [(row["image_id"], row["reason"]) for row in result.failures] == [
        (3, "not_attempted"),
        (4, "http_404"),
    ]
    assert (images / "train" / "1" / "1.jpg").read_bytes() == b"not checked in this mode"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("split,url\ntrain,x\n", "no column 'image_id'"),
        ("split,image_id,url,reason\ntrain,7,u,r\ntrian,8,u,r\n", "line 3: split 'trian'"),
        ("split,image_id,url,reason\ntrain,../x,u,r\n", "image_id '../x'"),
        ("split,image_id,url,reason\ntrain,²,u,r\n", "image_id '²'"),
    ],  # a digit to isdigit()
)
def test_read_failures_names_the_bad_line(tmp_path: Path, text: str, message: str):
    path = tmp_path / "failures.csv"
    path.write_text(text)
    with pytest.raises(FailuresFileError, match=message):
        read_failures(path)


def test_read_failures_needs_the_file(tmp_path: Path):
    with pytest.raises(FailuresFileError, match="file not found; retrying failures needs"):
        read_failures(tmp_path / "nothere.csv")


def test_empty_competition_gives_an_empty_report(tmp_path: Path):
    result = download_competition(
        {"train": []},
        competition_dir=tmp_path,
        images_dir=tmp_path / "images",
        settings=download_settings(),
    )
    assert result.report["total"] == 0 and result.failures == []
    assert result.report["per_split"] == {
        "train": {
            "total": 0,
            "downloaded": 0,
            "skipped_existing": 0,
            "failed": 0,
            "not_attempted": 0,
        }
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("concurrency", 0),
        ("per_host", -1),
        ("timeout_s", 0),
        ("timeout_s", float("nan")),
        ("connect_timeout_s", 0),
        ("read_timeout_s", -1),
        ("dns_cache_s", -1),
        ("retries", -1),
        ("retries", 1.5),
        ("backoff_s", -0.1),
        ("max_redirects", -1),
        ("min_side", 0),
        ("max_bytes", True),
        ("max_pixels", 0),
        ("max_side", 0),
        ("max_side", "256"),
        ("jpeg_quality", 0),
        ("jpeg_quality", 101),
        ("workers", -1),
    ],
)
def test_bad_settings_name_the_field_and_value(name: str, value: object):
    with pytest.raises(ValueError, match=rf"{name}={value!r}"):
        download_settings(**{name: value})


def test_settings_are_checked_again_on_entry(tmp_path: Path):
    settings = download_settings()
    settings.concurrency = 0
    with pytest.raises(ValueError, match="concurrency=0"):
        download_competition({}, competition_dir=tmp_path, images_dir=tmp_path, settings=settings)


def test_retry_after_and_backoff():
    assert retry_after_s("7") == 7.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_s("soon") is None
    assert backoff_delay(0, 1.0, None) <= 1.0
    assert 2.0 <= backoff_delay(2, 1.0, None) <= 4.0
    assert backoff_delay(0, 0.01, 120.0) == 30.0  # Retry-After honoured, capped


# ---------------------------------------------------------------------------------------------
# images already on disk: moved, set aside, restored, checked; never lost


def files_under(root: Path) -> dict[str, bytes]:
    """``{relative path: bytes}`` of every file under ``root`` (but the sources' versions and
    the decoded digests: bookkeeping, not images)."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.relative_to(root).as_posix() not in (SOURCES_FILE, DECODED_FILE)
    }


def downloaded_before(images: Path, labels: dict[int, int], width: int) -> dict[int, bytes]:
    """Distinct images as an earlier run left them: ``train/<label>/<id>.png``."""
    return {
        image_id: write_image(
            images / "train" / f"{label:0{width}d}" / f"{image_id}.png",
            size=(16, 16),
            seed=image_id,
        ).read_bytes()
        for image_id, label in labels.items()
    }


def dead(server: Server, image_id: int) -> str:
    return server.url(f"missing/kept-{image_id}")  # the host has lost the image


def test_a_wider_label_folder_moves_every_image_and_fetches_none(server: Server, tmp_path: Path):
    images = tmp_path / "images"
    labels = {image_id: 1 + image_id % 9 for image_id in range(30)}  # labels 1..9: width 1
    before = downloaded_before(images, labels, width=1)
    (images / "train" / "1" / ".tmp27.png.123.abcd").write_bytes(b"a killed run's")
    labels[0] = 10  # one label id going from 9 to 10: every folder is now two digits
    records = {"train": [train(i, label, dead(server, i)) for i, label in labels.items()]}
    hits_before = Counter(server.hits)

    result = download_competition(
        records, competition_dir=tmp_path, images_dir=images, settings=download_settings(**SETTINGS)
    )

    assert +(Counter(server.hits) - hits_before) == Counter()
    assert files_under(images) == {
        f"train/{label:02d}/{i}.png": before[i] for i, label in labels.items()
    }
    report = result.report
    assert (report["moved"], report["skipped_existing"], report["failed"]) == (30, 30, 0)
    assert not (tmp_path / "images_removed").exists()


def test_images_no_longer_listed_are_set_aside_and_come_back_without_a_fetch(
    server: Server, tmp_path: Path
):
    images, removed = tmp_path / "images", tmp_path / "images_removed"
    labels = {image_id: 1 + image_id % 3 for image_id in range(1, 13)}
    before = downloaded_before(images, labels, width=1)
    settings = download_settings(**SETTINGS)

    emptied = download_competition(
        {"train": []},
        competition_dir=tmp_path,
        images_dir=images,
        settings=settings,  # an empty train.json, meant
        refuse_shrinking=False,
    )

    assert files_under(images) == {}
    assert files_under(removed) == {f"train/{labels[i]}/{i}.png": before[i] for i in labels}
    assert emptied.report["set_aside"] == 12
    hits_before = Counter(server.hits)
    records = {"train": [train(i, label, dead(server, i)) for i, label in labels.items()]}

    relisted = download_competition(
        records, competition_dir=tmp_path, images_dir=images, settings=settings
    )

    assert +(Counter(server.hits) - hits_before) == Counter()
    assert files_under(images) == {f"train/{labels[i]}/{i}.png": before[i] for i in labels}
    assert files_under(removed) == {}
    report = relisted.report
    assert (report["restored"], report["skipped_existing"], report["failed"]) == (12, 12, 0)


def test_images_of_a_split_or_label_no_longer_listed_are_set_aside_mirrored(
    server: Server, fixtures: Fixtures, tmp_path: Path
):
    images = tmp_path / "images"
    stale = {
        "train/3/40.png": b"old 40",  # same id, label changed to 1: moved, then broken
        "train/2/77.png": b"old 77",  # id no longer listed
        "validation/1/5.png": b"old 5",  # split no longer present
        "test/8.jpg": b"old 8",
    }
    for name, body in stale.items():
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        (images / name).write_bytes(body)
    records = {"train": [train(40, 1, server.url("good.png"))]}
    result = download_competition(
        records,
        competition_dir=tmp_path,
        images_dir=images,
        settings=download_settings(**SETTINGS),
        refuse_shrinking=False,
    )  # the changes are meant
    assert files_under(images) == {"train/1/40.png": fixtures.png}
    assert files_under(tmp_path / "images_removed") == {
        name: body for name, body in stale.items() if "40" not in name
    }
    report = result.report
    assert (report["moved"], report["set_aside"], report["existing_replaced"]) == (1, 3, 1)


def test_a_copy_in_another_label_folder_is_set_aside_not_deleted(server: Server, tmp_path: Path):
    images = tmp_path / "images"
    downloaded_before(images, {5: 1}, width=1)
    (images / "train" / "2").mkdir()
    (images / "train" / "2" / "5.jpg").write_bytes(b"a copy from an older label")
    records = {"train": [train(5, 1, dead(server, 5))]}
    result = download_competition(
        records, competition_dir=tmp_path, images_dir=images, settings=download_settings(**SETTINGS)
    )
    assert list(files_under(images)) == ["train/1/5.png"]
    assert files_under(tmp_path / "images_removed") == {
        "train/2/5.jpg": b"a copy from an older label"
    }
    assert (result.report["set_aside"], result.report["skipped_existing"]) == (1, 1)


def test_files_not_named_as_images_are_left_alone_and_not_counted(
    server: Server, fixtures: Fixtures, tmp_path: Path
):
    images = tmp_path / "images"
    before = downloaded_before(images, {1: 1, 2: 1, 3: 2}, width=1)
    foreign = {
        "train/1/.DS_Store": b"mac",
        "train/1/notes.txt": b"a note",
        "train/1/a cat.jpg": b"not ours",
        "train/1/7.jpg.part": b"not ours either",
        "train/1/x.y.jpg": b"no id has a dot",
        "train/1/4.txt": b"beside image 4",
        "train/notes/1.png": b"not a label folder",
        "train/9.png": b"not in a label folder",
        "test/.DS_Store": b"mac",
        "test/README": b"mine",
        "test/2/3.png": b"no label folders in test",
    }
    for name, body in foreign.items():
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        (images / name).write_bytes(body)
    # named as an image of string id `cat` would be: set aside like any image no list names
    (images / "train/1/cat.jpg").write_bytes(b"an image of id cat?")
    settings = download_settings(**SETTINGS)

    emptied = download_competition(
        {"train": []},
        competition_dir=tmp_path,
        images_dir=images,
        settings=settings,
        refuse_shrinking=False,
    )

    assert files_under(images) == foreign
    assert emptied.report["set_aside"] == 4
    assert (tmp_path / "images_removed/train/1/cat.jpg").read_bytes() == b"an image of id cat?"
    records = {"train": [train(1, 1, dead(server, 1)), train(4, 1, server.url("good.png"))]}
    relisted = download_competition(
        records, competition_dir=tmp_path, images_dir=images, settings=settings
    )
    assert files_under(images) == foreign | {
        "train/1/1.png": before[1],
        "train/1/4.png": fixtures.png,
    }
    report = relisted.report
    assert (report["restored"], report["downloaded"], report["existing_replaced"]) == (1, 1, 0)


def test_a_damaged_image_on_disk_is_fetched_again_and_a_whole_one_is_not(
    server: Server, fixtures: Fixtures, tmp_path: Path
):
    folder = tmp_path / "images" / "train" / "1"
    png = write_image(folder / "1.png", size=(64, 64)).read_bytes()
    (folder / "1.png").write_bytes(png[: len(png) // 2])  # truncated: the header still reads
    (folder / "2.jpg").write_bytes(fixtures.noisy_jpeg[:-2])  # only the end marker lost
    (folder / "3.jpg").write_bytes(b"")
    (folder / "4.jpg").write_bytes(fixtures.jpeg + b"\0" * 10)  # padding after the end: whole
    (folder / "5.png").write_bytes(fixtures.png)
    records = {
        "train": [
            train(1, 1, server.url("good.png")),
            train(2, 1, server.url("good.jpg")),
            train(3, 1, server.url("good.jpg")),
            train(4, 1, server.url("missing/padded")),
            train(5, 1, server.url("missing/whole")),
        ]
    }
    hits_before = Counter(server.hits)
    result = download_competition(
        records,
        competition_dir=tmp_path,
        images_dir=tmp_path / "images",
        settings=download_settings(**SETTINGS),
    )
    assert +(Counter(server.hits) - hits_before) == Counter({"/good.png": 1, "/good.jpg": 2})
    assert files_under(folder) == {
        "1.png": fixtures.png,
        "2.jpg": fixtures.jpeg,
        "3.jpg": fixtures.jpeg,
        "4.jpg": fixtures.jpeg + b"\0" * 10,
        "5.png": fixtures.png,
    }
    report = result.report
    assert (report["existing_replaced"], report["downloaded"], report["skipped_existing"]) == (
        3,
        3,
        2,
    )


# ---------------------------------------------------------------------------------------------
# the stage as a real process: killed, interrupted, run again


RESUME_IMAGES = 120


def stage_project(root: Path, server: Server, tag: str) -> Path:
    """A folder holding params.yaml and a competition whose URLs point at the server."""
    competition = root / "competition"
    competition.mkdir(parents=True)
    images = [
        {"url": [server.url(f"delayed/{tag}-{i}.jpg")], "image_id": i} for i in range(RESUME_IMAGES)
    ]
    annotations = [{"image_id": i, "label_id": 1 + i % 3} for i in range(RESUME_IMAGES)]
    (competition / "train.json").write_text(
        json.dumps({"images": images, "annotations": annotations})
    )
    params = default_params()
    params["competition"] = str(competition)
    params["download"] |= dict(concurrency=4, per_host=4, workers=1, timeout_s=5)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def start_stage(cwd: Path) -> subprocess.Popen:
    """The stage with SIGINT ignored, as a script's background job starts: it must still stop
    on SIGINT, which Python's own Ctrl-C handling would then never see."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "stages.download"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_ignore_sigint,
    )


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def written(root: Path) -> set[int]:
    """Image ids on disk under their final name."""
    return {
        int(path.name.partition(".")[0])
        for path in (root / "data" / "images").rglob("*")
        if path.is_file() and not path.name.startswith(".")
    }


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (the worker pool and the forkserver), from /proc."""
    children: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children[int(fields[1])].append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int], grace_s: float = 5.0) -> set[int]:
    """The pids still running after up to ``grace_s`` (the forkserver exits a moment after its
    parent does, asynchronously)."""
    deadline = time.monotonic() + grace_s
    while (running := _running(pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return running


def _running(pids: set[int]) -> set[int]:
    return {
        pid
        for pid in pids
        if Path(f"/proc/{pid}").exists()
        and "Z" not in Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2][:3]
    }


def interrupt_mid_run(root: Path, signum: int) -> tuple[subprocess.Popen, set[int], set[int]]:
    """Start the stage, send ``signum`` once a quarter of the images are on disk."""
    process = start_stage(root)
    deadline = time.monotonic() + 60
    while len(written(root)) < RESUME_IMAGES // 4:
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "the stage never got going"
        time.sleep(0.02)
    workers = descendants(process.pid)
    os.kill(process.pid, signum)
    process.wait(timeout=30)
    return process, written(root), workers


def assert_complete_and_fetched_once(
    root: Path, server: Server, tag: str, before: set[int], hits_after_stop: Counter[str]
) -> None:
    bookkeeping = (SOURCES_FILE, DECODED_FILE)
    files = [p for p in (root / "data" / "images").rglob("*") if p.is_file()]
    files = [p for p in files if p.name not in bookkeeping]
    assert sorted(int(p.name.partition(".")[0]) for p in files) == list(range(RESUME_IMAGES))
    for path in files:
        with Image.open(path) as image:
            image.load()  # every image complete and valid
    for image_id in before:  # nothing written before the stop was fetched again
        path = f"/delayed/{tag}-{image_id}.jpg"
        assert server.hits[path] == hits_after_stop[path] == 1


def test_stage_killed_mid_run_resumes_without_refetching(server: Server, tmp_path: Path):
    server.delay_s[0] = 0.1
    root = stage_project(tmp_path, server, "kill")
    process, before, workers = interrupt_mid_run(root, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    assert RESUME_IMAGES // 4 <= len(before) < RESUME_IMAGES
    hits_after_kill = Counter(server.hits)
    assert not alive(workers)  # the orphaned workers notice within a second or so and exit

    server.delay_s[0] = 0.0
    again = start_stage(root)
    output = again.communicate(timeout=120)[0]
    assert again.returncode == 0, output
    assert_complete_and_fetched_once(root, server, "kill", before, hits_after_kill)
    assert not list(root.rglob(".tmp*"))
    report = json.loads((root / "data" / "download_report.json").read_text())
    assert report["skipped_existing"] == len(before)
    assert report["downloaded"] == RESUME_IMAGES - len(before)


def test_the_stage_sets_images_no_longer_listed_aside_in_data_images_removed(tmp_path: Path):
    competition = tmp_path / "competition"
    competition.mkdir()
    write_image(competition / "6.png", seed=6)  # the list names image 6, no longer 5
    (competition / "train.json").write_text(
        '{"images": [{"url": "file:6.png", "image_id": 6}], '
        '"annotations": [{"image_id": 6, "label_id": 3}]}'
    )
    params = default_params() | {"competition": str(competition)}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    image = write_image(tmp_path / "data" / "images" / "train" / "3" / "5.png").read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "stages.download"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "data" / "images_removed" / "train" / "3" / "5.png").read_bytes() == image
    assert json.loads((tmp_path / "data" / "download_report.json").read_text())["set_aside"] == 1
    assert "moved 1 images that the lists no longer name to" in done.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stage_stops_cleanly_on_sigterm_and_sigint(server: Server, tmp_path: Path, signum):
    server.delay_s[0] = 0.1
    tag = signal.Signals(signum).name
    root = stage_project(tmp_path, server, tag)
    process, before, workers = interrupt_mid_run(root, signum)
    output = process.stdout.read()
    assert process.returncode == 128 + signum, output
    assert f"download interrupted by {tag}" in output and "Traceback" not in output
    assert not alive(workers)  # the pool was shut down, not orphaned
    assert not (root / "data" / "download_report.json").exists()
    assert all(not p.name.startswith(".tmp") for p in (root / "data" / "images").rglob("*"))
    hits_after_stop = Counter(server.hits)

    server.delay_s[0] = 0.0
    again = start_stage(root)
    assert again.wait(timeout=120) == 0
    assert_complete_and_fetched_once(root, server, tag, written(root) & before, hits_after_stop)
