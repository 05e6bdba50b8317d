"""The last step from blended test probabilities to the submission's rows, shared by the
ensemble stage and the Kaggle bundle's notebook so both write the same numbers.

In: the blended test Predictions, the SubmissionLayout, the class prior the models were
trained under (`source`) and the test set's (`target`), whether to correct for the prior, and
the clip bounds. Out: a Final: the test probabilities as submitted (prior-corrected when asked,
clipped and renormalised), the prior behind the rows of test images without a prediction and
its most probable column, the submission frame and how many rows were filled that way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lib.infer.clipping import clip_probs
from lib.infer.predictions import Predictions
from lib.infer.prior import correct_prior, most_probable_column
from lib.infer.submission import SubmissionLayout, build_submission


@dataclass
class Final:
    test: Predictions  # the probabilities as submitted
    prior: np.ndarray  # the prior a test image without a prediction gets
    fallback_column: int  # its most probable column
    frame: pd.DataFrame  # the submission, in the layout's row order
    filled: int  # rows filled from the prior


def final_submission(
    test: Predictions,
    *,
    layout: SubmissionLayout,
    source: np.ndarray,
    target: np.ndarray,
    prior_correction: bool,
    low: float,
    high: float,
) -> Final:
    prior = target if prior_correction else source
    probs = (
        correct_prior(test.probs, source=source, target=target) if prior_correction else test.probs
    )
    final = Predictions(
        probs=clip_probs(probs, low=low, high=high),
        image_ids=test.image_ids,
        classes=test.classes,
        splits=test.splits,
        targets=test.targets,
        prior=test.prior,
    )
    fallback_column = most_probable_column(prior, source)
    frame, filled = build_submission(
        layout,
        final,
        fallback_probs=clip_probs(prior[None], low=low, high=high)[0],
        fallback_column=fallback_column,
    )
    return Final(
        test=final, prior=prior, fallback_column=fallback_column, frame=frame, filled=filled
    )
