"""lib.common.params, property-based: whatever params.yaml holds (random values under the real keys,
random YAML text, random bytes), load_params either returns checked values or raises the
one-line UserError; it never raises anything else and writes nothing."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lib.common.errors import UserError
from tests.common.test_params import EVERY_RULE, load_params
from tests.conftest import assert_written_only_inside, recording_writes

FAST = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# Integers beyond what a float holds are test_an_integer_too_large_for_a_float_is_refused's.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["auto", "native", "uniform", "none", "mean", "sgd", ".", "/"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
keys = st.lists(st.sampled_from(sorted(EVERY_RULE)), min_size=1, max_size=8, unique=True)


def nested(flat: dict[str, object]) -> dict:
    """``{"download.retries": 3}`` -> ``{"download": {"retries": 3}}``."""
    tree: dict = {}
    for dotted, value in flat.items():
        *parents, last = dotted.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return tree


def check_params(text: bytes, wanted: list[str]) -> None:
    """load_params on `text` as params.yaml, run inside a fresh folder (values are paths
    relative to it); it returns or raises UserError, and writes nothing."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "params.yaml").write_bytes(text)
        cwd = os.getcwd()
        os.chdir(folder)
        try:
            with recording_writes() as writes, contextlib.suppress(UserError):
                load_params(wanted, folder / "params.yaml")
        finally:
            os.chdir(cwd)
        assert_written_only_inside(folder, writes)


@FAST
@given(keys.flatmap(lambda ks: st.fixed_dictionaries({k: values for k in ks})), keys)
def test_any_values_under_the_real_keys_are_checked_or_refused(params, wanted):
    check_params(yaml.safe_dump(nested(params)).encode(), wanted)


@FAST
@given(st.text(max_size=200), keys)
def test_any_text_is_read_or_refused_in_one_line(text, wanted):
    check_params(text.encode("utf-8", "surrogatepass"), wanted)


@FAST
@given(st.binary(max_size=200), keys)
@example(b"lr: \x80\n", ["lr"])
def test_any_bytes_are_read_or_refused_in_one_line(data, wanted):
    check_params(data, wanted)


@FAST
@given(
    st.integers(min_value=2**1024, max_value=2**1100),
    st.sampled_from(sorted(k for k in EVERY_RULE if EVERY_RULE[k](0.5) is None)),
)
def test_an_integer_too_large_for_a_float_is_refused(value, key):
    check_params(f"{key}: {value}\n".encode(), [key])
