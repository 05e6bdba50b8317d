"""The notebook's side of a bundle: its config, and the test images staged as the download
stage stores them (the whole run is tested end to end in tests/test_pipeline.py)."""

import json

import pytest

from lib.acquire.layouts import read_test_competition
from lib.acquire.resize import ImageLimits
from lib.common.errors import UserError
from lib.infer.bundled import file_url_path, read_config, stage_test_images
from tests.conftest import write_image


def test_file_urls_resolve_only_inside_the_competition(tmp_path):
    assert file_url_path("file:test/a%20b.png", tmp_path) == (tmp_path / "test" / "a b.png")
    assert file_url_path("file:../secret.png", tmp_path) is None
    assert file_url_path("https://example.com/1.jpg", tmp_path) is None


def test_test_images_are_staged_as_the_download_stores_them(tmp_path):
    competition = tmp_path / "comp"
    for i in range(3):
        write_image(competition / "train" / f"cat{i % 2}" / f"t{i}.png", seed=i)
    write_image(competition / "test" / "b2.png", size=(40, 20), seed=5)
    write_image(competition / "test" / "a1.jpg", size=(16, 12), seed=6)
    (competition / "test" / "c3.png").write_bytes(b"<html>not an image</html>")
    write_image(competition / "test" / "d4.png", size=(4, 4), seed=7)  # a placeholder
    comp = read_test_competition(competition, fmt="folders")
    paths, ids = stage_test_images(
        comp,
        limits=ImageLimits(min_side=8, max_side=20),
        max_bytes=10_000_000,
        into=tmp_path / "staged",
    )
    assert ids == ["a1", "b2"]  # id order; the refused ones get the fallback row
    assert paths[0].read_bytes() == (competition / "test" / "a1.jpg").read_bytes()
    assert paths[1].suffix == ".jpg"  # b2 was wider than max_side: shrunk to a JPEG


def test_a_bundle_of_another_version_is_refused(tmp_path):
    with pytest.raises(UserError, match="inference.json: not found"):
        read_config(tmp_path)
    (tmp_path / "inference.json").write_text(json.dumps({"version": 99}))
    with pytest.raises(UserError, match="version 99; this code reads version 1"):
        read_config(tmp_path)
