"""lib.infer.clipping: rows clipped and renormalised; bounds that would flatten every row are
refused."""

import numpy as np
import pytest

from lib.common.errors import ParamError
from lib.infer.clipping import check_clip_bounds, clip_probs


def test_clipping_then_renormalising_by_hand():
    clipped = clip_probs(np.array([[1.0, 0.0, 0.0]]), low=0.01, high=0.9)
    # [0.9, 0.01, 0.01] / 0.92
    np.testing.assert_allclose(clipped, [[0.9 / 0.92, 0.01 / 0.92, 0.01 / 0.92]])
    assert clipped.sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("low", "high", "classes"), [(0.5, 0.99, 3), (0.001, 0.3, 3), (0.5, 0.9, 2), (0.01, 0.1, 10)]
)
def test_clip_bounds_that_flatten_every_row_are_refused(low, high, classes):
    with pytest.raises(ParamError) as error:
        clip_probs(np.eye(classes), low=low, high=high)
    assert str(error.value).startswith(
        f"clip_low = {low} and clip_high = {high} are not allowed with {classes} classes: "
        f"expected clip_low < 1/{classes} = "
    )
    check_clip_bounds(low=0.01 / classes, high=0.99, n_classes=classes)  # the advice is fine
