"""Checks before any work: what the ensemble stage would refuse, found before any image is
copied or any model trained.

In: the competition (lib.acquire.layouts) and the params that shape its submission and its
ensemble: `submission_format`, `metric`, `classes_file`, `sample_submission`, `ensemble_runs`,
`ensemble_weights`, as params.yaml gives them; the DVC project root (whose experiments
`ensemble_runs` may name). Out: nothing, or the UserError the ensemble would raise, in the same
words. The download, folds, train and predict stages run `run_prechecks` before their work
(stages.prechecks), so a mistake that would stop the ensemble stops the first stage instead.

CHECKS lists the checks in the order they run; each takes a `Setup` and raises a UserError or
returns None. A new rule of the ensemble that is known before training goes there as one more
function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lib.acquire.competition_files import competition_files
from lib.acquire.layouts import Competition
from lib.acquire.records import CompetitionError
from lib.common.errors import ParamError
from lib.infer.shapes import check_sample_shape, top_k
from lib.infer.submission import competition_class_names, competition_layout


@dataclass(frozen=True)
class Setup:
    """What the ensemble will be given, as far as it is known before any work."""

    competition: Competition
    submission_format: str
    classes_file: str | None  # the param: auto, null or a path
    sample_submission: str | None  # the param: auto, null or a path
    ensemble_runs: Sequence[str] = ()
    ensemble_weights: Sequence[float] | str = ()
    root: Path = Path(".")
    metric: str = "accuracy"

    @property
    def labels_per_row(self) -> int:
        return top_k(self.submission_format, self.metric)

    def files(self):
        """The classes file and the sample submission the params resolve to. `auto` finds only
        the competition folder's own files here: data/classes.csv may still be another
        competition's until the download rewrites it (`class_names` stands in for it)."""
        return competition_files(
            self.competition.folder,
            classes_file=self.classes_file,
            test_labels=None,
            sample_submission=self.sample_submission,
        )

    def class_names(self) -> dict[int, str] | None:
        """The names the ensemble will put on the classes: the classes file's, checked to cover
        exactly the competition's labels, else the competition's own (labels that are names)."""
        classes = self.files().classes_file
        if classes is None:
            return self.competition.class_names
        return competition_class_names(classes, self.competition)


def check_test_split(setup: Setup) -> None:
    """A submission needs test ids: test.json or test/ images."""
    if "test" not in setup.competition.records:
        raise CompetitionError(
            f"{setup.competition.folder}: no test split (test.json, or test/ "
            "images): no test ids to submit for"
        )


def check_classes_file(setup: Setup) -> None:
    """The classes file names exactly the competition's labels."""
    setup.class_names()


def check_submission_format(setup: Setup) -> None:
    """The submission format can be written for these labels (label ids, or names)."""
    competition_layout(
        setup.submission_format,
        setup.competition,
        names=setup.class_names(),
        sample=None,
        k=setup.labels_per_row,
    )


def check_sample_submission(setup: Setup) -> None:
    """Kaggle's sample submission has the competition's test ids, and the header the format
    writes (2 columns for label, one per class for proba)."""
    sample = setup.files().sample_submission
    if sample is not None:
        competition_layout(
            setup.submission_format,
            setup.competition,
            names=setup.class_names(),
            sample=sample,
            k=setup.labels_per_row,
        )


def check_sample_shape_and_metric(setup: Setup) -> None:
    """The sample's columns and cells have the shape `submission_format` writes (a topk sample
    holds k labels a cell), and topk labels have no spaces (Kaggle splits cells at them)."""
    check_sample_shape(
        setup.files().sample_submission,
        submission_format=setup.submission_format,
        metric=setup.metric,
        labels=set((setup.competition.class_names or {}).values()),
    )


def check_ensemble_runs(setup: Setup) -> None:
    """Each entry of ensemble_runs is a folder, an experiment or a revision of the project."""
    if not setup.ensemble_runs:
        return
    from lib.infer.members import resolve  # reads git: only when there are members to find

    for entry in setup.ensemble_runs:
        resolve(entry, root=setup.root)


def check_ensemble_weights(setup: Setup) -> None:
    """A list of weights has one per member: this run, then each of ensemble_runs."""
    weights, members = setup.ensemble_weights, 1 + len(setup.ensemble_runs)
    if (
        isinstance(weights, Sequence)
        and not isinstance(weights, str)
        and weights
        and len(weights) != members
    ):
        raise ParamError(
            f"ensemble_weights = {list(weights)} is not allowed: expected auto, [] "
            f"or {members} weights (this run's first, then one per entry of "
            "ensemble_runs)"
        )


CHECKS: list[Callable[[Setup], None]] = [
    check_test_split,
    check_classes_file,
    check_submission_format,
    check_sample_shape_and_metric,
    check_sample_submission,
    check_ensemble_weights,
    check_ensemble_runs,
]


def run_prechecks(setup: Setup, skip: Sequence[Callable[[Setup], None]] = ()) -> None:
    """Every check of CHECKS but those in `skip`, in order; the first failure is raised."""
    for check in CHECKS:
        if check not in skip:
            check(setup)
