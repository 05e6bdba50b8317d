"""The lines a run prints at its end, from the detail metrics (lib.infer.scoring).

In: the detail metrics (metrics/ensemble_detail.json's dict), the submission format, the
competition's metric, whether prior correction is on and the name this run's predictions go by.
Out: a few lines of text: the submission's rows, the OOF scores (prior-corrected when they are
what is submitted), the fitted blend weights, the competition's metric and the test's scores
when its answers are known.
"""

from __future__ import annotations


def summary(
    detail: dict,
    submission_format: str,
    metric: str = "accuracy",
    *,
    prior_correction: bool = False,
    this_run: str = "predictions",
) -> str:
    """The lines a Kaggler looks at, from the detail metrics: the competition's `metric` when it
    is another than accuracy and log loss, the prior-corrected scores only when prior_correction
    is on (they are then what is submitted), and each member's fitted weight when the weights
    were fitted (`this_run`: the name the current run's predictions go by in the detail)."""
    o, done = detail["oof"], detail["submission"]
    lines = [
        f"submission: {done['rows']} rows ({done['filled_missing_images']} without an image, "
        f"given the most probable class under the prior), format {submission_format}",
        f"OOF accuracy {o['accuracy']:.4f} (top-3 {o['top3_accuracy']:.4f}), log loss "
        f"{o['log_loss']:.4f} raw / {o['log_loss_clipped']:.4f} clipped",
    ]
    if prior_correction:
        lines.append(
            f"prior-corrected (as submitted): OOF accuracy {o['accuracy_prior']:.4f}, "
            f"log loss {o['log_loss_prior']:.4f} raw / "
            f"{o['log_loss_prior_clipped']:.4f} clipped"
        )
    if "weights" in detail:
        lines.append(weights_line(detail["weights"], this_run=this_run))
    if metric in o and metric not in ("accuracy", "log_loss"):
        lines.append(
            f"OOF {metric} {o[metric]:.4f} (the competition's metric)"
            + (f"; prior-corrected {o[f'{metric}_prior']:.4f}" if prior_correction else "")
        )
    if "test" in detail:  # known answers (test_labels): the demo scores itself
        t = detail["test"]
        lines.append(
            f"test accuracy {t['accuracy']:.4f}, log loss of the submitted "
            f"probabilities {t['log_loss_submitted']:.4f}"
            + (f", {metric} {t[metric]:.4f}" if metric in t and metric != "accuracy" else "")
        )
    return "\n".join(lines)


def weights_line(fit: dict, *, this_run: str = "predictions") -> str:
    """The fitted blend weights by member name (lib.infer.weights.WeightFit.metrics), with the
    nested OOF score they give against equal weights."""
    named = ", ".join(
        f"{'this run' if name == this_run else name} {weight:.3f}"
        for name, weight in fit["weights"].items()
    )
    nested, equal = fit["nested_oof"], fit["equal_oof"]
    return (
        f"blend weights fitted on the OOF {fit['objective'].replace('_', ' ')}: {named}; "
        f"nested OOF accuracy {nested['accuracy']:.4f}, log loss {nested['log_loss']:.4f} "
        f"(equal weights: {equal['accuracy']:.4f}, {equal['log_loss']:.4f})"
    )
