"""The ways probabilities of one image are merged, named once for everything that merges them.

In: nothing. Out: ``MERGES``, the method names: "mean" (the arithmetic mean of the
probabilities) and "geomean" (the renormalised geometric mean, which punishes a class any part
rules out). TTA merges views with them (``lib.infer.tta``), the ensemble folds and runs
(``lib.infer.combine``): a module of its own, below both, so that editing the ensemble's code
does not re-run the predictions.
"""

from __future__ import annotations

MERGES = ("mean", "geomean")
