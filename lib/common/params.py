"""Read params.yaml and validate the keys a stage reads, before any work starts.

In: the path of params.yaml and the dotted keys a stage reads (`lr`, `download.retries`).
Out: a flat dict of those keys and their checked values, or a ParamError naming the key, the
value and what is allowed. The rules for every key live in RULES, in one place.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from lib.common.errors import ParamError

Check = Callable[[Any], str | None]  # returns what is allowed when the value is not allowed


def _int(low: int | None = None, high: int | None = None) -> Check:
    def check(value: Any) -> str | None:
        bad = not isinstance(value, int) or isinstance(value, bool)
        bad = bad or (low is not None and value < low) or (high is not None and value > high)
        if bad:
            bounds = [f">= {low}" if low is not None else "", f"<= {high}" if high else ""]
            return "an integer " + " and ".join(b for b in bounds if b)
        return None

    return check


def _number(low: float, *, strict: bool = False, high: float | None = None) -> Check:
    def check(value: Any) -> str | None:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and _finite(value)
        ok = ok and (value > low if strict else value >= low) and (high is None or value <= high)
        if not ok:
            upper = f" and <= {high}" if high is not None else ""
            return f"a number {'>' if strict else '>='} {low}{upper}"
        return None

    return check


def _finite(value: int | float) -> bool:
    try:  # an int beyond a float's range is no usable number either
        return math.isfinite(value)
    except OverflowError:
        return False


def _choice(*allowed: str) -> Check:
    return lambda value: None if value in allowed else "one of " + ", ".join(allowed)


def _resolution(value: Any) -> str | None:
    if value == "native" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return None
    return "native or an image size in pixels (an integer >= 1)"


def _workers(value: Any) -> str | None:
    if value == "auto" or _int(0)(value) is None:
        return None
    return "auto or an integer >= 0"


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "a non-empty string"


def _competition_file(value: Any) -> str | None:
    if value is None or value == "auto" or (isinstance(value, str) and Path(value).is_file()):
        return None
    return (
        "auto (the competition folder's file, when there is one), null or the path of "
        "an existing file"
    )


def _competition_dir(value: Any) -> str | None:
    if isinstance(value, str) and (
        (Path(value) / "train.json").is_file()
        or (Path(value) / "train").is_dir()
        or (Path(value) / "images").is_dir()
    ):
        return None
    return (
        "a folder that holds train.json, train/ (with labels.csv, class folders or "
        "TinyImageNet's wnids.txt) or images/ (labels in the file names)"
    )


# The competition's metric (lib.infer.metrics.METRICS; not imported: every stage reads params).
METRICS = ("accuracy", "log_loss", "map@1", "map@2", "map@3", "map@4", "map@5", "f1_macro", "qwk")


def _label_pattern(value: Any) -> str | None:
    """A regular expression with a group for the label: a group named `label`, else the
    first."""
    allowed = (
        "a regular expression matched against each image's file name, with a group "
        "capturing the label, e.g. '^(.+)_\\d+\\.\\w+$'"
    )
    if not isinstance(value, str) or not value:
        return allowed
    try:
        compiled = re.compile(value)
    except re.error as err:
        return f"{allowed} ({err})"
    return None if compiled.groups >= 1 else f"{allowed}; it has no group"


def _column_name(value: Any) -> str | None:
    if value == "auto" or _text(value) is None:
        return None
    return "auto (detected) or the name of a column of labels.csv"


def _fold_list(value: Any) -> str | None:
    ints = isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    )
    if not ints or not value or len(set(value)) != len(value):
        return "a non-empty list of distinct fold numbers, e.g. [0, 1, 2]"
    return None


def _scales(value: Any) -> str | None:
    ok = (
        isinstance(value, list)
        and value
        and all(
            isinstance(v, int | float) and not isinstance(v, bool) and 0 < v <= 4 for v in value
        )
    )
    return None if ok else "a non-empty list of scale factors in (0, 4], e.g. [1.0, 1.15]"


# A git revision or DVC experiment name as git spells refs: no spaces, `..`, `:`, `?`, `*`,
# `[` or `\`, no leading `-` (it would read as an option), no trailing `/`, `.` or `.lock`.
_REVISION = re.compile(r"(?!-)(?!.*\.\.)[^\s:?*\[\\]+(?<![/.])(?<!\.lock)")


def _members(value: Any) -> str | None:
    """Only the spelling: whether a name or revision exists is known when the stage runs."""
    ok = isinstance(value, list) and all(
        isinstance(v, str) and (Path(v).is_dir() or _REVISION.fullmatch(v)) for v in value
    )
    if ok and len(set(value)) == len(value):
        return None
    return (
        "a list of distinct runs, each an existing folder (a copy of a run's predictions/), "
        "a DVC experiment name or a git revision, e.g. [exp-a, v1, runs/b3]"
    )


def _source_run(value: Any) -> str | None:
    """A finished run to learn from, or none: only the spelling, as for ensemble_runs."""
    if value is None or value == "" or value == "none":
        return None
    if isinstance(value, str) and (Path(value).is_dir() or _REVISION.fullmatch(value)):
        return None
    return (
        "empty (none), a DVC experiment name, a git revision or an existing folder (a copy of "
        "a run's predictions/), e.g. b3-pseudo1"
    )


def _weights(value: Any) -> str | None:
    if value == "auto":
        return None
    ok = isinstance(value, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in value
    )
    if ok and (not value or sum(value) > 0):
        return None
    return (
        "auto (fitted on the out-of-fold predictions), [] (equal weights) or a list of "
        "numbers >= 0 with a positive sum"
    )


def _prior(value: Any) -> str | None:
    if value == "uniform" or (isinstance(value, str) and Path(value).is_file()):
        return None
    return "uniform or the path of a label_id,prior CSV"


RULES: dict[str, Check] = {
    "competition": _competition_dir,
    "competition_format": _choice(
        "auto", "json", "labels_csv", "folders", "tinyimagenet", "named_files"
    ),
    "label_pattern": _label_pattern,
    "test_share": _number(0, strict=True, high=0.5),
    "id_column": _column_name,
    "label_column": _column_name,
    "test_labels": _competition_file,
    "download.concurrency": _int(1),
    "download.per_host": _int(1),
    "download.timeout_s": _number(0, strict=True),
    "download.connect_timeout_s": _number(0, strict=True),
    "download.read_timeout_s": _number(0, strict=True),
    "download.dns_cache_s": _number(0),
    "download.retries": _int(0),
    "download.backoff_s": _number(0),
    "download.max_redirects": _int(0),
    "download.min_side": _int(1),
    "download.max_bytes": _int(1),
    "download.max_pixels": _int(1),
    "download.max_side": lambda value: (
        None
        if value is None or _int(1)(value) is None
        else "null (keep the originals) or an integer >= 1"
    ),
    "download.jpeg_quality": _int(1, 100),
    "download.workers": _int(0),
    "download.retry_failures": _bool,
    "download.refetch": _bool,
    "stats.workers": _int(0),
    "folds": _int(2),
    "train_folds": _fold_list,
    "validation": _choice("pool", "holdout"),
    "stats.resolution": _resolution,
    "seed": _int(0, 2**32 - 1),  # numpy and scikit-learn take seeds below 2**32
    "arch": _text,
    "pretrained": _text,
    "img_size": _int(16),
    "epochs": _int(1),
    "batch_size": _int(1),
    "lr": _number(0, strict=True),
    "optimizer": _choice("sgd", "adamw"),
    "head": _choice("default", "concat"),
    "dropout": _number(0, high=0.95),
    "freeze_epochs": _int(0),
    "backbone_lr_mult": _number(0, strict=True, high=1.0),
    "layer_decay": _number(0, high=0.999),
    "schedule": _choice("cosine", "sgdr", "onecycle", "plateau"),
    "sgdr_t0": _number(0, strict=True),
    "sgdr_t_mult": _number(1),
    "plateau_patience": _int(1),
    "plateau_factor": _number(0, strict=True, high=1.0),
    "label_smoothing": _number(0, high=0.5),
    "mixup": _number(0, high=1.0),
    "cutmix": _number(0, high=1.0),
    "mix_alpha": _number(0, strict=True),
    "ema": _number(0, high=0.99999),
    "class_balance": _choice("none", "sampler", "loss_weights"),
    "aug": _choice("none", "light", "medium", "heavy"),
    "keep": _choice("last", "best"),
    "momentum": _number(0, high=0.999),
    "weight_decay": _number(0),
    "warmup_epochs": _number(0),
    "workers": _workers,
    "amp": _choice("auto", "bf16", "fp16", "off"),
    "compile": _bool,
    "gpus": _int(1),
    "sync_bn": _bool,
    "tta": _choice("none", "flip", "flip5", "flip6"),
    "tta_merge": _choice("mean", "geomean"),
    "tta_crop": _number(0.5, strict=True, high=1.0),
    "tta_scales": _scales,
    "ensemble_merge": _choice("mean", "geomean"),
    "ensemble_runs": _members,
    "ensemble_weights": _weights,
    "prior_correction": _bool,
    "target_prior": _prior,
    "submission_format": _choice("label", "proba", "topk"),
    "metric": _choice(*METRICS),
    "sample_submission": _competition_file,
    "classes_file": _competition_file,
    "kaggle_competition": lambda value: (
        None
        if value is None or (isinstance(value, str) and re.fullmatch(r"[a-z0-9][a-z0-9-]*", value))
        else "null or a competition slug as in its URL, e.g. imaterialist-challenge-furniture-2018"
    ),
    "kaggle_username": lambda value: (
        None
        if value is None
        or (isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", value))
        else "null or your Kaggle user name (kaggle.com/<user name>), e.g. jdoe"
    ),
    "pseudo_from": _source_run,
    "pseudo_threshold": _number(0, high=1.0),
    "pseudo_weight": _number(0, strict=True, high=10.0),
    "pseudo_soft": _bool,
    "distill_from": _source_run,
    "distill_alpha": _number(0, high=1.0),
    "clip_low": _number(0, high=0.5),
    "clip_high": _number(0.5, strict=True, high=1.0),
}


def _lookup(params: dict, dotted: str, source: Path) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamError(f"{source}: missing key '{dotted}'")
        node = node[part]
    return node


def read_params_file(path: Path | str = "params.yaml") -> dict[str, Any]:
    """params.yaml as DVC reads it: YAML 1.2 (so `1e-05`, written by `dvc exp run -S lr=1e-5`,
    is a number, and `on` is text), a duplicate key an error; errors carry line and column."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamError(f"{source}: file not found") from None
    except UnicodeDecodeError as exc:
        raise ParamError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        params = YAML(typ="safe", pure=True).load(text)
    except DuplicateKeyError as exc:
        first, again = exc.context_mark, exc.problem_mark
        key = str(exc.problem).split(" with value")[0].removeprefix("found duplicate key ")
        raise ParamError(
            f"{source}:{again.line + 1}:{again.column + 1}: duplicate key {key} "
            f"(first at line {first.line + 1}); keep one of them"
        ) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ParamError(
            f"{source}{where}: not valid YAML ({exc.problem or exc.context})"
        ) from None
    except (YAMLError, RecursionError) as exc:
        raise ParamError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ParamError(
            f"{source}: expected a mapping of keys to values at the top, "
            f"found {type(params).__name__}"
        )
    return params


def load_params(keys: Iterable[str], path: Path | str = "params.yaml") -> dict[str, Any]:
    """The values of `keys` from the params file, each checked against its rule."""
    source = Path(path)
    params = read_params_file(source)
    values = {key: _lookup(params, key, source) for key in keys}
    for key, value in values.items():
        allowed = RULES[key](value)
        if allowed:
            raise ParamError(f"{source}: {key} = {value!r} is not allowed: expected {allowed}")
    _check_together(values | _partners(params, values), source)
    return values


# Keys whose tie is checked by every stage that reads either, or neither: train@k runs for each
# fold of train_folds but reads only folds.csv, so a train_folds naming a fold that `folds` does
# not make must stop the first stage that runs, before any work.
_ALWAYS_TOGETHER = ("folds", "train_folds")


def _partners(params: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``_ALWAYS_TOGETHER`` not asked for, from the file, where present and valid
    (an invalid one is reported by the stage that reads it)."""
    found = {}
    for key in _ALWAYS_TOGETHER:
        section: Any = params
        for part in key.split("."):
            section = section.get(part) if isinstance(section, dict) else None
        if key not in values and section is not None and RULES[key](section) is None:
            found[key] = section
    return found


def _check_together(values: dict[str, Any], source: Path) -> None:
    """Rules that tie two keys together."""
    if values.get("mixup", 0) + values.get("cutmix", 0) > 1:
        raise ParamError(
            f"{source}: mixup + cutmix = {values['mixup'] + values['cutmix']} is "
            "not allowed: expected at most 1 (they are per-batch probabilities)"
        )
    if (
        "freeze_epochs" in values
        and "epochs" in values
        and values["freeze_epochs"] >= values["epochs"]
    ):
        raise ParamError(
            f"{source}: freeze_epochs = {values['freeze_epochs']} is not allowed: "
            f"expected fewer than epochs = {values['epochs']}"
        )
    weights = values.get("ensemble_weights")
    if (
        isinstance(weights, list)
        and weights
        and "ensemble_runs" in values
        and len(weights) != 1 + len(values["ensemble_runs"])
    ):
        raise ParamError(
            f"{source}: ensemble_weights = {weights} is not allowed: expected "
            f"auto, [] or {1 + len(values['ensemble_runs'])} weights (this run's "
            "first, then one per entry of ensemble_runs)"
        )
    _check_metric_and_format(values, source)
    if "folds" in values and "train_folds" in values:
        outside = [f for f in values["train_folds"] if f >= values["folds"]]
        if outside:
            raise ParamError(
                f"{source}: train_folds = {values['train_folds']} is not allowed: "
                f"expected fold numbers from 0 to folds - 1 = {values['folds'] - 1}"
                f" (folds = {values['folds']}): drop fold {outside[0]} from "
                "train_folds or raise folds"
            )


def _check_metric_and_format(values: dict[str, Any], source: Path) -> None:
    """A submission shape the metric cannot score: ranked labels (map@k) from probabilities,
    or the k of a top-k submission without map@k to give it."""
    metric, fmt = values.get("metric"), values.get("submission_format")
    if metric is None or fmt is None:
        return
    ranked = metric.startswith("map@")
    if fmt == "proba" and ranked:
        raise ParamError(
            f"{source}: submission_format = proba with metric = {metric} is not "
            "allowed: MAP@k scores a ranked list of labels per image; expected "
            "submission_format topk (or label)"
        )
    if fmt == "topk" and not ranked:
        raise ParamError(
            f"{source}: submission_format = topk with metric = {metric} is not "
            "allowed: topk writes the k best labels of metric map@k; expected "
            "metric map@1..map@5, or submission_format label or proba"
        )
