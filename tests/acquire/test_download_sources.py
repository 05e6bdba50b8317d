"""lib.acquire.download: a copy follows its source. A file of a local competition that changed
(size or mtime) is copied again on the next run; with ``refetch`` a URL whose server reports
another version (ETag, Last-Modified, Content-Length, by a HEAD request) is fetched again.
Driven against a real aiohttp server on 127.0.0.1 and real competition folders."""

from __future__ import annotations

import asyncio
import io
import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image

from lib.acquire.download import SOURCES_FILE, download_competition
from lib.acquire.records import ImageRecord
from tests.acquire.test_layouts_kaggle_shapes import download_stage, make_competition
from tests.conftest import download_settings, write_image


def jpeg(colour: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 20), (colour, 40, 90)).save(buffer, "JPEG")
    return buffer.getvalue()


class Versions:
    """A server of /img/<n>.jpg whose pictures can be replaced; each version its own ETag."""

    def __init__(self) -> None:
        self.bodies = {n: jpeg(10 * n) for n in range(3)}
        self.etags = {n: f'"v1-{n}"' for n in range(3)}
        self.hits: Counter[tuple[str, str]] = Counter()
        self.base = ""

    async def handle(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        self.hits[(request.method, request.path)] += 1
        return web.Response(
            body=self.bodies[n], content_type="image/jpeg", headers={"ETag": self.etags[n]}
        )


@pytest.fixture
def versions() -> Iterator[Versions]:
    state = Versions()
    app = web.Application()
    app.router.add_get("/img/{n}.jpg", state.handle)  # add_get serves HEAD too
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    host, port = runner.addresses[0][:2]
    state.base = f"http://{host}:{port}"
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield state
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.run_until_complete(runner.cleanup())
    loop.close()


def test_refetch_asks_the_server_and_fetches_only_what_changed(versions, tmp_path):
    images = tmp_path / "images"
    records = {
        "train": [
            ImageRecord("train", n, (f"{versions.base}/img/{n}.jpg",), 1 + n % 2) for n in range(3)
        ]
    }

    def download(refetch: bool):
        return download_competition(
            records,
            competition_dir=tmp_path,
            images_dir=images,
            settings=download_settings(workers=1, refetch=refetch),
        )

    assert download(False).report["downloaded"] == 3
    assert (
        f'img/1.jpg\tETag="v1-1" Content-Length={len(versions.bodies[1])}\n'
        in (images / SOURCES_FILE).read_text()
    )
    versions.bodies[1], versions.etags[1] = jpeg(250), '"v2-1"'  # corrected on the server

    report = download(False).report  # not asked: no request at all, the copy kept
    assert (report["skipped_existing"], report["source_changed"]) == (3, 0)
    assert not [key for key in versions.hits if key[0] == "HEAD"]

    report = download(True).report
    assert (report["source_changed"], report["downloaded"], report["skipped_existing"]) == (1, 1, 2)
    assert (images / "train/2/1.jpg").read_bytes() == versions.bodies[1]
    assert versions.hits[("HEAD", "/img/0.jpg")] == 1 and versions.hits[("GET", "/img/0.jpg")] == 1
    assert versions.hits[("GET", "/img/1.jpg")] == 2
    report = download(True).report  # up to date now
    assert (report["source_changed"], report["skipped_existing"]) == (0, 3)


def json_competition(root: Path) -> Path:
    images, annotations = [], []
    for n in range(6):
        write_image(root / "pictures" / f"{n}.png", size=(20, 18), seed=n)
        images.append({"url": f"file:pictures/{n}.png", "image_id": n})
        annotations.append({"image_id": n, "label_id": 1 + n % 2})
    (root / "train.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    return root


@pytest.mark.parametrize("layout", ["json", "labels_csv", "folders"])
def test_a_corrected_source_file_is_copied_again(tmp_path, monkeypatch, layout):
    root = tmp_path / "c"
    competition = json_competition(root) if layout == "json" else make_competition(root, layout)
    source = next(
        p
        for p in sorted(competition.rglob("*"))
        if p.suffix in (".png", ".jpg") and "test" not in p.parts
    )
    project = tmp_path / "p"
    project.mkdir()
    download_stage(project, competition, monkeypatch)
    copy = next((project / "data/images/train").rglob(f"{source.stem}.*"))
    assert copy.read_bytes() == source.read_bytes()
    download_stage(project, competition, monkeypatch)  # nothing changed: nothing copied
    report = json.loads((project / "data/download_report.json").read_text())
    assert (report["downloaded"], report["source_changed"]) == (0, 0)

    write_image(source, size=(20, 18), seed=777)  # a different picture, same name
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    download_stage(project, competition, monkeypatch)
    assert copy.read_bytes() == source.read_bytes()
    report = json.loads((project / "data/download_report.json").read_text())
    assert (report["downloaded"], report["source_changed"]) == (1, 1)


def test_a_full_disk_while_downloading_is_one_line_and_leaves_whole_images(tmp_path):
    from lib.common.fileio import DiskFullError
    from lib.common.images import decode_problem
    from tests.small_disk import small_disk

    records = {"train": []}
    for n in range(8):  # ~77 KB each, incompressible: 8 of them overflow 256 KB
        write_image(tmp_path / "c" / f"{n}.png", size=(160, 160), seed=n)
        records["train"].append(ImageRecord("train", n, (f"file:{n}.png",), 1 + n % 2))
    with small_disk(tmp_path / "disk") as disk:
        with pytest.raises(
            DiskFullError,
            match=r"disk/images/train/\d/\d\.png: the disk is "
            r"full \(\d+\.\d MB free",
        ) as error:
            download_competition(
                records,
                competition_dir=tmp_path / "c",
                images_dir=disk / "images",
                settings=download_settings(workers=1),
            )
        assert "\n" not in str(error.value)
        kept = [p for p in (disk / "images").rglob("*") if p.is_file()]
        assert all(not p.name.startswith(".tmp") for p in kept)
        assert all(decode_problem(p) is None for p in kept if p.suffix == ".png")
