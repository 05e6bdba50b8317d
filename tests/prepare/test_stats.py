import numpy as np
import pytest
from PIL import Image

from lib.common.errors import UserError
from lib.common.images import list_images, load_rgb_array
from lib.prepare.stats import compute_stats
from tests.conftest import write_image


def reference(paths):
    pixels = np.concatenate([load_rgb_array(p).reshape(-1, 3) for p in paths]).astype(np.float64)
    pixels /= 255.0
    return pixels.mean(axis=0), pixels.std(axis=0)


def test_exact_against_numpy_reference_over_images_of_different_sizes(tmp_path):
    paths = [
        write_image(
            tmp_path / f"{i}.png",
            size=(5 + i * 7, 3 + i * 5),
            seed=i,
            mode="L" if i % 3 == 0 else "RGB",
        )
        for i in range(150)
    ]
    stats = compute_stats(paths, workers=2)
    mean, std = reference(paths)
    np.testing.assert_allclose(stats.mean, mean, atol=1e-6)
    np.testing.assert_allclose(stats.std, std, atol=1e-6)
    assert stats.images == 150
    assert stats.pixels == sum((5 + i * 7) * (3 + i * 5) for i in range(150))


def test_averaging_per_batch_stds_is_a_different_wrong_answer(tmp_path):
    # Two batches with different means: the mean of their stds misses the spread between them.
    def flat(name, value):
        Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(tmp_path / name)
        return tmp_path / name

    dark = [flat(f"d{i}.png", 10 + i) for i in range(4)]
    bright = [flat(f"b{i}.png", 240 - i) for i in range(4)]
    per_batch = np.mean([reference(dark)[1], reference(bright)[1]], axis=0)
    stats = compute_stats(dark + bright, workers=1)
    np.testing.assert_allclose(stats.std, reference(dark + bright)[1], atol=1e-6)
    assert np.all(np.abs(np.array(stats.std) - per_batch) > 0.3)


def test_unreadable_images_are_counted_not_fatal(image_tree):
    broken = image_tree / "train" / "01" / "999.png"
    broken.write_bytes(b"<html>not an image</html>")
    stats = compute_stats(list_images(image_tree / "train"), workers=1)
    assert stats.images == 18 and stats.unreadable == [str(broken)]


def test_no_readable_image_is_a_clear_error(tmp_path):
    path = tmp_path / "1.png"
    path.write_bytes(b"junk")
    with pytest.raises(UserError, match="none of the 1 images could be read"):
        compute_stats([path], workers=1)


def test_chunking_and_worker_count_do_not_change_the_result(tmp_path):
    paths = [write_image(tmp_path / f"{i}.jpg", size=(9 + i, 7), seed=i) for i in range(70)]
    one = compute_stats(paths, workers=1)
    two = compute_stats(list(reversed(paths)), workers=2)
    np.testing.assert_allclose(one.mean, two.mean, rtol=1e-12)
    np.testing.assert_allclose(one.std, two.std, rtol=1e-12)


def test_training_resolution_counts_resized_pixels_like_the_eval_transform(tmp_path):
    import albumentations as A

    paths = [write_image(tmp_path / f"{i}.png", size=(30, 20), seed=i) for i in range(5)]
    stats = compute_stats(paths, workers=1, size=12)
    resize = A.Resize(height=12, width=12)
    resized = [resize(image=load_rgb_array(p))["image"] for p in paths]
    pixels = np.concatenate([r.reshape(-1, 3) for r in resized]).astype(np.float64) / 255
    np.testing.assert_allclose(stats.mean, pixels.mean(0), atol=1e-9)
    np.testing.assert_allclose(stats.std, pixels.std(0), atol=1e-9)
    assert stats.pixels == 5 * 144 and stats.size == 12
