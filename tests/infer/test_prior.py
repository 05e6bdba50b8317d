"""lib.infer.prior: the target prior read, the prior correction, the fallback class."""

import re

import numpy as np
import pytest

from lib.common.errors import UserError
from lib.infer.prior import correct_prior, most_probable_column, read_target_prior

CLASSES = np.array([3, 7])


def test_prior_correction_by_hand():
    probs = np.array([[0.6, 0.3, 0.1]])
    source = np.array([0.6, 0.3, 0.1])  # trained on these class frequencies
    uniform = np.full(3, 1 / 3)
    # p * target / source = (1/3, 1/3, 1/3): the model only repeated the prior
    np.testing.assert_allclose(correct_prior(probs, source=source, target=uniform), [[1 / 3] * 3])
    corrected = correct_prior(
        np.array([[0.5, 0.25, 0.25]]),
        source=np.array([0.5, 0.25, 0.25]),
        target=np.array([0.25, 0.25, 0.5]),
    )
    # (0.5 * 0.5, 0.25 * 1, 0.25 * 2) = (0.25, 0.25, 0.5)
    np.testing.assert_allclose(corrected, [[0.25, 0.25, 0.5]])
    assert corrected.sum() == pytest.approx(1.0)


def test_target_prior_uniform_or_from_a_csv(tmp_path):
    np.testing.assert_allclose(read_target_prior("uniform", CLASSES), [0.5, 0.5])
    path = tmp_path / "prior.csv"
    path.write_text("label_id,prior\n7,30\n3,10\n")
    np.testing.assert_allclose(read_target_prior(str(path), CLASSES), [0.25, 0.75])
    path.write_text("label_id,prior\n7,30\n")
    with pytest.raises(UserError, match=r"no prior for label_id \[3\]"):
        read_target_prior(str(path), CLASSES)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"label_id,prior\n3,\xff\n", "target prior is not UTF-8 text (line 2, byte 17"),
        (b"label_id,prior\n3,lots\n7,1\n", "line 2: prior 'lots' is not a number"),
        (b"label,prior\n3,1\n", "target prior needs the columns label_id,prior; found label,prior"),
    ],
)
def test_a_malformed_target_prior_is_one_line(tmp_path, text, message):
    path = tmp_path / "prior.csv"
    path.write_bytes(text)
    with pytest.raises(UserError, match=re.escape(message)):
        read_target_prior(str(path), CLASSES)


def test_fallback_class_is_the_most_probable_under_the_prior():
    assert most_probable_column(np.array([0.2, 0.5, 0.3]), np.array([0.6, 0.2, 0.2])) == 1
    # a uniform prior ties: the most frequent training class wins
    assert most_probable_column(np.full(3, 1 / 3), np.array([0.2, 0.2, 0.6])) == 2
