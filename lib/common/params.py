"""Read params.yaml and validate the keys a stage reads, before any work starts.

In: the path of params.yaml and a stage's config class (a frozen dataclass of `param` fields,
subclassing Config), or the dotted keys a command reads (`lr`, `download.retries`).
Out: the config (or a flat dict of those keys) with checked values, or a ParamError naming the
key, the value and what is allowed. A key's rule is written once: on its config field, or in
RULES when several configs or code without a config read it. A config also says which of its
keys only change speed; the stage's DVC params derive from it (Config.dep_keys).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Self

from lib.common.errors import ParamError

Check = Callable[[Any], str | None]  # returns what is allowed when the value is not allowed


def integer(low: int | None = None, high: int | None = None) -> Check:
    def check(value: Any) -> str | None:
        bad = not isinstance(value, int) or isinstance(value, bool)
        bad = bad or (low is not None and value < low) or (high is not None and value > high)
        if bad:
            bounds = [f">= {low}" if low is not None else "", f"<= {high}" if high else ""]
            return "an integer " + " and ".join(b for b in bounds if b)
        return None

    return check


def number(low: float, *, strict: bool = False, high: float | None = None) -> Check:
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


def choice(*allowed: str) -> Check:
    return lambda value: None if value in allowed else "one of " + ", ".join(allowed)


def resolution(value: Any) -> str | None:
    if value == "native" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return None
    return "native or an image size in pixels (an integer >= 1)"


def _workers(value: Any) -> str | None:
    if value == "auto" or integer(0)(value) is None:
        return None
    return "auto or an integer >= 0"


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def text(value: Any) -> str | None:
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


# The competition's metrics: the names lib.infer.metrics scores (it imports them from here, the
# home below both: every stage reads params, only the ensemble scores).
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
    if value == "auto" or text(value) is None:
        return None
    return "auto (detected) or the name of a column of labels.csv"


def _fold_list(value: Any) -> str | None:
    ints = isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    )
    if not ints or not value or len(set(value)) != len(value):
        return "a non-empty list of distinct fold numbers, e.g. [0, 1, 2]"
    return None


def scales(value: Any) -> str | None:
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


def source_run(value: Any) -> str | None:
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


def class_prior(value: Any) -> str | None:
    if value == "uniform" or (isinstance(value, str) and Path(value).is_file()):
        return None
    return "uniform or the path of a label_id,prior CSV"


# The rules of the keys that several configs, or code without a config, read (the ensemble, the
# prechecks, the commands). Every other key's rule sits on its field in the config of the stage
# that reads it (`param(rule)`): DownloadConfig, StatsConfig, FoldsConfig, TrainConfig,
# PredictConfig, EnsembleConfig. A key has its rule in exactly one of the two places.
RULES: dict[str, Check] = {
    "competition": _competition_dir,
    "competition_format": choice(
        "auto", "json", "labels_csv", "folders", "tinyimagenet", "named_files"
    ),
    "label_pattern": _label_pattern,
    "test_share": number(0, strict=True, high=0.5),
    "id_column": _column_name,
    "label_column": _column_name,
    "test_labels": _competition_file,
    "folds": integer(2),
    "train_folds": _fold_list,
    "seed": integer(0, 2**32 - 1),  # numpy and scikit-learn take seeds below 2**32
    "batch_size": integer(1),
    "workers": _workers,
    "ensemble_merge": choice("mean", "geomean"),
    "ensemble_runs": _members,
    "ensemble_weights": _weights,
    "submission_format": choice("label", "proba", "topk"),
    "metric": choice(*METRICS),
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
}


@dataclass(frozen=True)
class Param:
    """A config field's param: its params.yaml key (dotted inside a section), its rule (None:
    the key's rule is in RULES) and whether it changes only speed (read, but no DVC dep)."""

    key: str
    rule: Check | None
    speed: bool


_PARAM, _PART = "param", "part"


def param(rule: Check | None = None, *, speed: bool = False, key: str | None = None) -> Any:
    """A config field read from params.yaml's `key` (default: the field's name), checked by
    `rule` (none: RULES holds the key's rule, shared with other readers). Its default and
    meaning live in params.yaml only, so the field has no default."""
    return field(metadata={_PARAM: Param(key or "", rule, speed)})


def part(config: type[Config]) -> Any:
    """A config field holding another config (a section the stage reads with its other keys)."""
    return field(metadata={_PART: config})


class Config:
    """Base of a stage's frozen config dataclass, built from params.yaml: every field is a
    `param` (or a `part`); the stage's DVC params (PARAMS, SPEED_PARAMS, dvc.yaml's lists) and
    the rules its keys are checked by derive from the fields. SECTION: the params.yaml section
    its keys sit in (`download`), none for top-level keys."""

    SECTION = ""

    @classmethod
    def _key(cls, item: Field) -> str:
        spec = item.metadata[_PARAM]
        return spec.key or (f"{cls.SECTION}.{item.name}" if cls.SECTION else item.name)

    @classmethod
    def params(cls) -> list[Param]:
        """Every param of the config, parts' included, in field order, keys resolved."""
        found = []
        for item in fields(cls):  # type: ignore[arg-type]
            if _PART in item.metadata:
                found += item.metadata[_PART].params()
            elif _PARAM in item.metadata:
                spec = item.metadata[_PARAM]
                found.append(Param(cls._key(item), spec.rule, spec.speed))
        return found

    @classmethod
    def param_keys(cls) -> list[str]:
        """Every key the config reads."""
        return [p.key for p in cls.params()]

    @classmethod
    def dep_keys(cls) -> list[str]:
        """The keys that can change the stage's outputs: its DVC params."""
        return [p.key for p in cls.params() if not p.speed]

    @classmethod
    def speed_keys(cls) -> list[str]:
        """The keys read that change only speed: no DVC params."""
        return [p.key for p in cls.params() if p.speed]

    @classmethod
    def rules(cls) -> dict[str, Check]:
        """Each key's rule: the field's own, else RULES'."""
        return {p.key: p.rule or RULES[p.key] for p in cls.params()}

    @classmethod
    def from_values(cls, values: Mapping[str, Any], **overrides: Any) -> Self:
        """From values by dotted key (as load_params gives them), with fields in `overrides`."""
        kwargs: dict[str, Any] = {}
        for item in fields(cls):  # type: ignore[arg-type]
            if item.name in overrides:
                continue
            if _PART in item.metadata:
                kwargs[item.name] = item.metadata[_PART].from_values(values)
            elif _PARAM in item.metadata:
                kwargs[item.name] = values[cls._key(item)]
        return cls(**kwargs | overrides)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **overrides: Any) -> Self:
        """From a params file's contents (nested sections), unchecked, with `overrides`."""
        source = Path("params")
        values = {key: _lookup(dict(params), key, source) for key in cls.param_keys()}
        return cls.from_values(values, **overrides)

    @classmethod
    def load(cls, path: Path | str = "params.yaml") -> Self:
        """The config from the params file, every key checked (load_params' errors)."""
        return cls.from_values(load_params(cls.param_keys(), path, rules=cls.rules()))

    def values(self) -> dict[str, Any]:
        """Every param's value by its key, parts' included."""
        found: dict[str, Any] = {}
        for item in fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            if _PART in item.metadata:
                found |= value.values()
            elif _PARAM in item.metadata:
                found[self._key(item)] = value
        return found

    def dep_values(self) -> dict[str, Any]:
        """The values of the keys that can change the stage's outputs (its provenance)."""
        values = self.values()
        return {key: values[key] for key in self.dep_keys()}


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
    # Imported here: the Kaggle bundle's inference code builds its config from the bundle's
    # settings, never from params.yaml, and Kaggle's image has no ruamel.
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

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


def load_params(
    keys: Iterable[str],
    path: Path | str = "params.yaml",
    *,
    rules: Mapping[str, Check] | None = None,
) -> dict[str, Any]:
    """The values of `keys` from the params file, each checked against its rule: RULES', or
    `rules`' (a config's: `Config.rules()`) for the keys RULES does not hold."""
    source = Path(path)
    params = read_params_file(source)
    values = {key: _lookup(params, key, source) for key in keys}
    checks = {**RULES, **(rules or {})}
    for key, value in values.items():
        if key not in checks:  # a mistake in the code, not in params.yaml
            raise KeyError(f"{key}: no rule; read it through the config of a stage that reads it")
        allowed = checks[key](value)
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
