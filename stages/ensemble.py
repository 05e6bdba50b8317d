"""ensemble: merge the folds' predictions (and those of other runs listed in ensemble_runs),
score the out-of-fold predictions raw, clipped and prior-corrected, and write the submission.

Out: submissions/submission.csv (label or proba format, every test id, checked as Kaggle
would), metrics/ensemble.json (per fold, per run and ensembled), metrics/per_class.csv,
metrics/oof_confusion.csv and metrics/top_losses.png (for `dvc plots show`).

`python -m stages.ensemble --summary` prints the last run's figures again (`make run` ends
with it, so they show even when DVC had nothing to re-run).
"""

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lib.ensemble import (
    RunPredictions,
    clip_probs,
    combine,
    correct_prior,
    log_loss,
    most_probable_column,
    read_target_prior,
    score,
    target_columns,
)
from lib.errors import UserError
from lib.fileio import atomic_path, write_json
from lib.folds import read_folds
from lib.params import load_params
from lib.predictions import training_prior
from lib.report import confusion_frame, per_class_table, top_losses_grid
from lib.submission import (
    build_submission,
    competition_layout,
    make_layout,
    read_class_names,
    write_submission,
)
from stages.common import (
    CONFUSION_CSV,
    ENSEMBLE_METRICS,
    FOLDS_CSV,
    IMAGES_DIR,
    PER_CLASS_CSV,
    PREDICTIONS_DIR,
    SUBMISSION_CSV,
    TOP_LOSSES_PNG,
    run,
)

KEYS = ["competition", "test_labels", "train_folds", "clip_low", "clip_high", "ensemble_merge",
        "ensemble_runs", "ensemble_weights", "prior_correction", "target_prior",
        "submission_format", "sample_submission", "classes_file"]
log = logging.getLogger("stages.ensemble")


def main() -> None:
    p = load_params(KEYS)
    bounds = {"low": p["clip_low"], "high": p["clip_high"]}
    test_json = Path(p["competition"]) / "test.json"
    if not test_json.is_file():
        raise UserError(f"{test_json} not found: no test images to write a submission for")
    how, weights = p["ensemble_merge"], p["ensemble_weights"] or None
    runs = [RunPredictions(PREDICTIONS_DIR, folds=p["train_folds"], how=how)]
    runs += [RunPredictions(Path(folder), how=how) for folder in p["ensemble_runs"]]
    names = [str(r.folder) for r in runs]
    oof = combine([r.oof for r in runs], how=how, weights=weights, names=names)
    test = combine([r.test for r in runs], how=how, weights=weights, names=names)
    source = oof.prior if oof.prior is not None else training_prior(oof.targets, oof.classes)
    target = read_target_prior(p["target_prior"], oof.classes)
    priors = {"source": source, "target": target}

    def scored(predictions) -> dict:
        columns = target_columns(predictions.classes, predictions.targets)
        return score(predictions.probs, columns, **bounds, **priors)

    metrics = {f"fold{k}": scored(part) for k, part in runs[0].fold_oof.items()}
    if len(runs) > 1:
        metrics["runs"] = {name: scored(r.oof) for name, r in zip(names, runs, strict=True)}
    metrics["oof"] = scored(oof)
    if all(r.holdout is not None for r in runs):
        metrics["holdout"] = scored(combine([r.holdout for r in runs], how=how,
                                            weights=weights, names=names))

    final = test.probs
    if p["prior_correction"]:
        final = correct_prior(final, source=source, target=target)
    test.probs = clip_probs(final, **bounds)
    prior = target if p["prior_correction"] else source
    names_of = read_class_names(Path(p["classes_file"])) if p["classes_file"] else None
    layout = competition_layout(
        p["submission_format"], Path(p["competition"]), names=names_of,
        sample=Path(p["sample_submission"]) if p["sample_submission"] else None,
        extra_labels=test.classes)
    fallback_column = most_probable_column(prior, source)
    frame, filled = build_submission(layout, test,
                                     fallback_probs=clip_probs(prior[None], **bounds)[0],
                                     fallback_column=fallback_column)
    write_submission(SUBMISSION_CSV, frame, layout)
    metrics["submission"] = {"rows": len(frame), "filled_missing_images": filled}
    if p["test_labels"]:
        metrics["test"] = score_test(Path(p["test_labels"]), layout, test, prior,
                                     fallback_column)
    write_reports(oof, names_of)
    write_json(ENSEMBLE_METRICS, metrics)
    print(summary(metrics, p["submission_format"]))


def summary(metrics: dict, submission_format: str) -> str:
    """The few figures a Kaggler looks at, from metrics/ensemble.json."""
    o, done = metrics["oof"], metrics["submission"]
    lines = [f"submission: {done['rows']} rows ({done['filled_missing_images']} without an image, "
             f"given the most probable class under the prior), format {submission_format}",
             f"OOF accuracy {o['accuracy']:.4f} (top-3 {o['top3_accuracy']:.4f}), log loss "
             f"{o['log_loss']:.4f} raw / {o['log_loss_clipped']:.4f} clipped; prior-corrected: "
             f"accuracy {o['accuracy_prior']:.4f}, log loss {o['log_loss_prior']:.4f} raw / "
             f"{o['log_loss_prior_clipped']:.4f} clipped"]
    if "test" in metrics:  # known answers (test_labels): the demo scores itself
        t = metrics["test"]
        lines.append(f"test accuracy {t['accuracy']:.4f}, log loss of the submitted "
                     f"probabilities {t['log_loss_submitted']:.4f}")
    return "\n".join(lines)


def print_summary() -> None:
    """``--summary``: the last run's figures again, without recomputing anything."""
    if not ENSEMBLE_METRICS.is_file():
        raise UserError(f"{ENSEMBLE_METRICS} not found: run `dvc repro` first")
    metrics = json.loads(ENSEMBLE_METRICS.read_text())
    print(summary(metrics, load_params(["submission_format"])["submission_format"]))


def score_test(answers: Path, layout, test, prior: np.ndarray, fallback_column: int) -> dict:
    """Accuracy of the submitted labels (and log loss of the submitted probabilities) against
    known answers: the demo scores itself."""
    truth = pd.read_csv(answers)
    label_layout = make_layout("label", test_ids=layout.ids, labels=test.classes)
    labels, _ = build_submission(label_layout, test, fallback_probs=prior,
                                 fallback_column=fallback_column)
    merged = labels.merge(truth, on="id")
    known = merged[merged["id"].isin(set(test.image_ids.tolist()))]
    row_of = {int(i): r for r, i in enumerate(test.image_ids)}
    rows = np.array([row_of[int(i)] for i in known["id"]], dtype=np.int64)
    probs = test.probs[rows]
    columns = target_columns(test.classes, known["label"].to_numpy())
    return {"accuracy": float((merged["predicted"] == merged["label"]).mean()),
            "log_loss_submitted": log_loss(probs, columns)}


def write_reports(oof, names: dict[int, str] | None) -> None:
    """The per-class table, the confusion rows and the top-losses grid of the OOF ensemble."""
    columns = target_columns(oof.classes, oof.targets)
    table = per_class_table(oof.probs, columns, oof.classes, names)
    with atomic_path(PER_CLASS_CSV, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    with atomic_path(CONFUSION_CSV, suffix=".csv") as tmp:
        confusion_frame(oof.probs, columns, oof.classes, names, oof.image_ids).to_csv(
            tmp, index=False)
    folds = read_folds(FOLDS_CSV)
    path_of = {(s, int(i)): p for s, i, p in zip(folds["split"], folds["image_id"],
                                                 folds["path"], strict=True)}
    paths = [IMAGES_DIR / path_of[(str(s), int(i))] for s, i in zip(oof.splits, oof.image_ids,
                                                                      strict=True)]
    shown = top_losses_grid(TOP_LOSSES_PNG, image_paths=paths, probs=oof.probs, columns=columns,
                            classes=oof.classes, names=names)
    worst = table.iloc[0]
    log.info("per-class accuracy: worst %s %.3f (%d images), best %s %.3f; %d worst OOF "
             "mistakes drawn in %s", worst["name"], worst["accuracy"], worst["images"],
             table.iloc[-1]["name"], table.iloc[-1]["accuracy"], shown, TOP_LOSSES_PNG)


if __name__ == "__main__":
    run(print_summary if sys.argv[1:] == ["--summary"] else main)
