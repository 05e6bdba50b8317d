"""lib.download against a real aiohttp server on 127.0.0.1 and real files, no mocks."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import random
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image

from lib.competition import ImageRecord
from lib.download import (
    DownloadResult,
    DownloadSettings,
    ImageOutcome,
    _backoff_delay,
    _retry_after_s,
    check_image,
    download_competition,
    write_report,
)

# small limits so the big and the bomb fixtures trip them while 32x32 images pass
SETTINGS = dict(concurrency=8, per_host=4, timeout_s=0.5, retries=1, backoff_s=0.01,
                min_side=8, max_bytes=50_000, max_pixels=10_000)


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
    )


@dataclass
class Server:
    base: str
    hits: Counter[str]

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"


def build_app(fixtures: Fixtures, hits: Counter[str]) -> web.Application:
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

    async def page(request: web.Request) -> web.Response:
        html = "<html><body>Image removed</body></html>"
        return web.Response(text=html, content_type="text/html")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(body=fixtures.jpeg, content_type="image/jpeg")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.path)

    @web.middleware
    async def count(request: web.Request, handler):
        hits[request.path] += 1
        return await handler(request)

    app = web.Application(middlewares=[count])
    app.router.add_get("/good.jpg", image(fixtures.jpeg))
    app.router.add_get("/good.png", image(fixtures.png, "image/png"))
    app.router.add_get("/png-named.jpg", image(fixtures.png))
    app.router.add_get("/pixel.gif", image(fixtures.gif_1x1, "image/gif"))
    app.router.add_get("/truncated.jpg", image(fixtures.truncated_jpeg))
    app.router.add_get("/big.png", image(fixtures.big_png, "image/png"))
    app.router.add_get("/bomb.png", image(fixtures.bomb_png, "image/png"))
    app.router.add_get("/huge-bomb.png", image(fixtures.huge_bomb_png, "image/png"))
    app.router.add_get("/missing", missing)
    app.router.add_get("/missing/{name}", missing)
    app.router.add_get("/page.html", page)
    app.router.add_get("/slow.jpg", slow)
    app.router.add_get("/loop", loop)
    app.router.add_get("/flaky/{name}", once_then_image(503, {}))
    app.router.add_get("/throttled/{name}", once_then_image(429, {"Retry-After": "0"}))
    return app


@pytest.fixture(scope="module")
def server(fixtures: Fixtures) -> Iterator[Server]:
    """A real HTTP server on a free port, its own event loop in a background thread."""
    hits: Counter[str] = Counter()
    loop = asyncio.new_event_loop()
    # handler_cancellation: the slow handler stops when the client gives up
    runner = web.AppRunner(build_app(fixtures, hits), handler_cancellation=True,
                           shutdown_timeout=1)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    host, port = runner.addresses[0][:2]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield Server(base=f"http://{host}:{port}", hits=hits)
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.run_until_complete(runner.cleanup())
    loop.close()


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
    outside: Path
    server: Server

    def outcome(self, split: str, image_id: int) -> ImageOutcome:
        (found,) = [o for o in self.result.outcomes if (o.split, o.image_id) == (split, image_id)]
        return found


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
    records = {
        "train": [
            train(1, 3, url("good.jpg")),
            train(2, 3, url("missing")),
            train(3, 12, url("missing"), url("good.png")),
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
        ],
        "validation": [
            validation(20, 7, "file:images/good.png"),
            validation(21, 7, "file:images/nothere.png"),
            validation(22, 7, "file:../outside.png"),
            validation(23, 7, f"file://{competition / 'images' / 'good.jpg'}"),
            validation(24, 7, "file:images/link.png"),
            validation(25, 7, "file:images/big.png"),
        ],
        "test": [
            unlabelled(30, url("good.jpg")),
            unlabelled(31, f"file://{outside}"),
        ],
    }
    result = download_competition(records, competition_dir=competition,
                                  images_dir=root / "images", settings=DownloadSettings(**SETTINGS))
    return Run(result, root / "images", competition, outside, server)


def test_good_image_lands_in_imagefolder_path_with_identical_bytes(run: Run, fixtures: Fixtures):
    # labels go up to 12: two digits for every split, validation included
    assert (run.images / "train" / "03" / "1.jpg").read_bytes() == fixtures.jpeg
    assert (run.images / "test" / "30.jpg").read_bytes() == fixtures.jpeg
    assert run.outcome("train", 1).status == "downloaded"
    assert run.outcome("train", 1).nbytes == len(fixtures.jpeg)


def test_extension_comes_from_the_decoded_format_not_the_url(run: Run, fixtures: Fixtures):
    assert (run.images / "train" / "05" / "8.png").read_bytes() == fixtures.png
    assert not (run.images / "train" / "05" / "8.jpg").exists()


@pytest.mark.parametrize(
    ("split", "image_id", "reason"),
    [
        ("train", 2, "http_404"),
        ("train", 4, "not_an_image"),
        ("train", 5, "placeholder"),
        ("train", 6, "truncated_image"),
        ("train", 9, "too_many_redirects"),
        ("train", 10, "timeout"),
        ("train", 11, "too_large"),
        ("train", 12, "decompression_bomb"),
        ("train", 15, "decompression_bomb"),
        ("validation", 21, "not_found"),
        ("validation", 22, "file_outside_competition"),
        ("validation", 24, "file_outside_competition"),
        ("validation", 25, "too_large"),
        ("test", 31, "file_outside_competition"),
    ],
)
def test_failure_reason(run: Run, split: str, image_id: int, reason: str):
    outcome = run.outcome(split, image_id)
    assert (outcome.status, outcome.reason) == ("failed", reason)
    assert not list(run.images.glob(f"{split}/**/{image_id}.*"))


def test_dead_first_url_falls_back_to_the_second(run: Run, fixtures: Fixtures):
    outcome = run.outcome("train", 3)
    assert outcome.status == "downloaded"
    assert outcome.url.endswith("/good.png") and outcome.reasons == ("http_404",)
    assert (run.images / "train" / "12" / "3.png").read_bytes() == fixtures.png


def test_503_then_200_is_downloaded_after_a_retry(run: Run):
    assert run.outcome("train", 7).status == "downloaded"
    assert run.server.hits["/flaky/run"] == 2


def test_429_with_retry_after_is_retried(run: Run):
    assert run.outcome("train", 14).status == "downloaded"
    assert run.server.hits["/throttled/run"] == 2


def test_404_and_html_are_not_retried(run: Run):
    assert run.server.hits["/page.html"] == 2  # once for image 4, once for image 13
    assert run.server.hits["/missing"] == 3  # images 2, 3 and 13, one request each


def test_timeouts_are_retried(run: Run):
    assert run.server.hits["/slow.jpg"] == 1 + SETTINGS["retries"]


def test_file_urls_read_inside_the_competition(run: Run, fixtures: Fixtures):
    assert (run.images / "validation" / "07" / "20.png").read_bytes() == fixtures.png
    assert (run.images / "validation" / "07" / "23.jpg").read_bytes() == fixtures.jpeg


def test_report_counts(run: Run, fixtures: Fixtures):
    report = run.result.report
    downloaded = {("train", 1), ("train", 3), ("train", 7), ("train", 8), ("train", 14),
                  ("validation", 20), ("validation", 23), ("test", 30)}
    assert (report["total"], report["downloaded"], report["failed"]) == (23, 8, 15)
    assert report["skipped_existing"] == 0
    assert {(o.split, o.image_id) for o in run.result.outcomes if o.status == "downloaded"} \
        == downloaded
    assert report["bytes"] == 5 * len(fixtures.jpeg) + 3 * len(fixtures.png)
    assert report["per_split"] == {
        "train": {"total": 15, "downloaded": 5, "skipped_existing": 0, "failed": 10},
        "validation": {"total": 6, "downloaded": 2, "skipped_existing": 0, "failed": 4},
        "test": {"total": 2, "downloaded": 1, "skipped_existing": 0, "failed": 1},
    }
    assert report["failure_reasons"] == {
        "decompression_bomb": 2, "file_outside_competition": 3, "http_404": 1,
        "not_an_image": 2, "not_found": 1, "placeholder": 1, "timeout": 1,
        "too_large": 2, "too_many_redirects": 1, "truncated_image": 1,
    }
    assert report["elapsed_s"] > 0 and report["images_per_s"] > 0


def test_failures_name_the_last_url_and_every_reason(run: Run):
    rows = {(row["split"], row["image_id"]): row for row in run.result.failures}
    assert len(rows) == 15
    assert rows[("train", 13)] == {"split": "train", "image_id": 13,
                                   "url": run.server.url("page.html"),
                                   "reason": "http_404;not_an_image"}
    assert rows[("train", 2)]["reason"] == "http_404"
    assert list(rows)[0] == ("train", 2)  # sorted by split then image_id


def test_write_report_writes_json_and_csv(run: Run, tmp_path: Path):
    report_path, failures_path = tmp_path / "out" / "report.json", tmp_path / "failures.csv"
    write_report(run.result.report, run.result.failures, report_path=report_path,
                 failures_path=failures_path)
    text = report_path.read_text()
    assert json.loads(text) == run.result.report
    assert text == json.dumps(run.result.report, indent=2, sort_keys=True) + "\n"
    lines = failures_path.read_text().splitlines()
    assert lines[0] == "split,image_id,url,reason"
    rows = list(csv.DictReader(io.StringIO(failures_path.read_text())))
    assert [(r["split"], r["image_id"], r["reason"]) for r in rows][:2] == [
        ("train", "2", "http_404"), ("train", "4", "not_an_image")]
    assert len(rows) == 15
    assert not list(tmp_path.rglob(".tmp*"))


def test_rerun_skips_existing_fetches_nothing_and_cleans_temp_files(
    server: Server, fixtures: Fixtures, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    images = tmp_path / "images"
    # an image already there under another extension counts as present
    (images / "train" / "2").mkdir(parents=True)
    (images / "train" / "2" / "41.webp").write_bytes(b"from an earlier run")
    records = {
        "train": [train(40, 1, server.url("flaky/rerun")), train(41, 2, server.url("good.png"))],
        "test": [unlabelled(42, server.url("good.jpg")),
                 unlabelled(43, server.url("missing/rerun"))],
    }
    settings = DownloadSettings(**SETTINGS)
    first = download_competition(records, competition_dir=tmp_path, images_dir=images,
                                 settings=settings)
    assert (first.report["downloaded"], first.report["skipped_existing"]) == (2, 1)
    assert first.report["failure_reasons"] == {"http_404": 1}
    leftover = images / "test" / ".tmp42.jpg.1234.deadbeef"
    leftover.write_bytes(b"half")
    hits_before = Counter(server.hits)

    with caplog.at_level(logging.INFO, logger="lib.download"):
        second = download_competition(records, competition_dir=tmp_path, images_dir=images,
                                      settings=settings)

    assert (second.report["skipped_existing"], second.report["downloaded"]) == (3, 0)
    assert second.report["failed"] == 1  # the dead URL is tried again, nothing else
    new_hits = Counter(server.hits)
    new_hits.subtract(hits_before)
    assert +new_hits == Counter({"/missing/rerun": 1})
    assert not leftover.exists()
    assert (images / "train" / "1" / "40.jpg").read_bytes() == fixtures.jpeg
    assert any("3 skipped" in record.getMessage() for record in caplog.records)


def test_empty_competition_gives_an_empty_report(tmp_path: Path):
    result = download_competition({"train": []}, competition_dir=tmp_path,
                                  images_dir=tmp_path / "images", settings=DownloadSettings())
    assert result.report["total"] == 0 and result.failures == []
    assert result.report["per_split"] == {
        "train": {"total": 0, "downloaded": 0, "skipped_existing": 0, "failed": 0}}


@pytest.mark.parametrize(
    ("field", "value"),
    [("concurrency", 0), ("per_host", -1), ("timeout_s", 0), ("timeout_s", float("nan")),
     ("retries", -1), ("retries", 1.5), ("backoff_s", -0.1), ("min_side", 0),
     ("max_bytes", True), ("max_pixels", 0)],
)
def test_bad_settings_name_the_field_and_value(field: str, value: object):
    with pytest.raises(ValueError, match=rf"{field}={value!r}"):
        DownloadSettings(**{field: value})


def test_settings_are_checked_again_on_entry(tmp_path: Path):
    settings = DownloadSettings()
    settings.concurrency = 0
    with pytest.raises(ValueError, match="concurrency=0"):
        download_competition({}, competition_dir=tmp_path, images_dir=tmp_path,
                             settings=settings)


def test_check_image_formats(fixtures: Fixtures):
    limits = dict(min_side=8, max_pixels=10_000)
    assert check_image(fixtures.jpeg, **limits) == ("jpg", None)
    assert check_image(fixtures.png, **limits) == ("png", None)
    assert check_image(encode((16, 16), "GIF"), **limits) == ("gif", None)
    assert check_image(encode((16, 16), "WEBP"), **limits) == ("webp", None)
    assert check_image(encode((16, 16), "BMP"), **limits) == ("bmp", None)
    assert check_image(b"", **limits) == (None, "not_an_image")


def test_retry_after_and_backoff():
    assert _retry_after_s("7") == 7.0
    assert _retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert _retry_after_s("soon") is None
    assert _backoff_delay(0, 1.0, None) <= 1.0
    assert 2.0 <= _backoff_delay(2, 1.0, None) <= 4.0
    assert _backoff_delay(0, 0.01, 120.0) == 30.0  # Retry-After honoured, capped


def test_images_the_lists_no_longer_name_are_removed(server: Server, tmp_path: Path):
    images = tmp_path / "images"
    stale = [images / "train" / "3" / "40.png",       # same id, label changed to 1
             images / "train" / "2" / "77.png",       # id no longer listed
             images / "validation" / "1" / "5.png"]   # split no longer present
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"old")
    records = {"train": [train(40, 1, server.url("good.png"))]}
    download_competition(records, competition_dir=tmp_path, images_dir=images,
                         settings=DownloadSettings(**SETTINGS))
    assert not any(path.exists() for path in stale)
    assert [p.relative_to(images).as_posix() for p in images.rglob("*") if p.is_file()] == [
        "train/1/40.png"]
