"""Which project code each DVC stage runs, derived from its imports.

In: the repository root and dvc.yaml. Out: for each stage, the files of stages/ and lib/ its
command runs (the import closure of the modules it starts, lazy imports included, less
NOT_DEPS; commands/ is walked too, so a stage importing a command would show) and the params
it reads (its modules' PARAMS, which derive from the stage's config class:
lib.common.params.Config), and dvc.yaml's text with each stage's code deps and params replaced
by exactly those. DVC trusts dvc.yaml: a module or param missing from a stage's deps would let
it serve stale results with a clean status, so the lists are derived here and
`tests/common/test_code_deps.py` holds them equal.
"""

from __future__ import annotations

import ast
import importlib
import re
import shlex
from pathlib import Path

import yaml

PACKAGES = ("lib", "stages", "commands")
# Modules a stage runs that cannot change any of its outputs: editing them re-runs nothing.
NOT_DEPS = {
    "lib/common/errors.py": "exception classes: they change what a failure says, never an output",
    "lib/common/params.py": "reads and checks params.yaml as DVC does; DVC tracks the values",
    "lib/common/progress.py": "draws progress bars on stderr, never an output",
    "stages/prechecks.py": "checks what would fail the ensemble before a stage's work: it can "
    "stop a stage, never change what it writes",
}
_CODE_DEP = re.compile(r"^(\s+)- ((?:lib|stages|commands)/[\w/]+\.py)\s*$")
_PARAMS = re.compile(r"^(\s+)params:\s*$")
_ITEM = re.compile(r"^(\s+)- [\w.-]+\s*$")
_COMMENT = re.compile(r"^(\s+)#")


def stage_definitions(root: Path) -> dict[str, dict]:
    """Every stage of dvc.yaml, foreach stages by their template (`train`, not `train@0`)."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


def entry_modules(cmd: str) -> list[str]:
    """The project modules a stage command starts: `python -m stages.launch stages.train ...`
    runs both."""
    return [
        word
        for word in shlex.split(cmd)
        if word.split(".")[0] in PACKAGES and not word.startswith("-")
    ]


def module_file(root: Path, module: str) -> Path | None:
    path = root / Path(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(root: Path, path: Path) -> set[str]:
    """The project modules `path` imports, wherever the import sits (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from lib import distributed` imports the module lib.train.distributed
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {m for m in found if m.split(".")[0] in PACKAGES and module_file(root, m)}


def import_closure(root: Path, modules: list[str]) -> set[str]:
    """Repo-relative paths of every project file the modules run, empty __init__s aside. The
    walk stops at NOT_DEPS: what only they import cannot change an output either."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            path = _file_of(root, module)
            if path.relative_to(root).as_posix() not in NOT_DEPS:
                todo += imported_modules(root, path)
    files = {_file_of(root, m) for m in seen}
    return {
        f.relative_to(root).as_posix()
        for f in files
        if not (f.name == "__init__.py" and not f.read_text().strip())
    }


def _file_of(root: Path, module: str) -> Path:
    path = module_file(root, module)
    if path is None:  # only a stage command's module can be missing: imports are checked
        raise ValueError(f"{module}: no such module under {root}")
    return path


def code_deps(root: Path, cmd: str) -> list[str]:
    """The code deps a stage running `cmd` must declare, sorted."""
    return sorted(import_closure(root, entry_modules(cmd)) - set(NOT_DEPS))


def rewrite_code_deps(root: Path) -> str:
    """dvc.yaml's text with each stage's `lib/`/`stages/` deps replaced by `code_deps` (in
    place of the first one listed); every other line, comments included, as it was."""
    stages = stage_definitions(root)
    lines = (root / "dvc.yaml").read_text().splitlines(keepends=True)
    out, stage = [], None
    for line in lines:
        name = re.match(r"^  ([\w-]+):\s*$", line)
        if name:
            stage, written = name.group(1), False
        dep = _CODE_DEP.match(line)
        if dep and stage in stages:
            if not written:
                paths = code_deps(root, stages[stage]["cmd"])
                out += [f"{dep.group(1)}- {path}\n" for path in paths]
                written = True
            continue
        out.append(line)
    return "".join(out)


def stage_params(cmd: str) -> list[str]:
    """The params a stage running `cmd` declares: the PARAMS of the modules it starts (their
    SPEED_PARAMS are read, but no deps), in order, each once. Imports those modules."""
    keys: list[str] = []
    for module in entry_modules(cmd):
        keys += [key for key in importlib.import_module(module).PARAMS if key not in keys]
    return keys


def rewrite_params(text: str, params: dict[str, list[str]]) -> str:
    """dvc.yaml's `text` with the params list of each stage named in `params` holding exactly
    its keys: those listed stay in their place, the others are dropped, new ones are appended
    (so a rewrite moves no line it need not). A comment inside the list stays above the keys
    it precedes (it goes when they all go); every other line as it was."""
    out: list[str] = []
    stage, block = "", None
    groups: list[tuple[list[str], list[str]]] = []  # (comment lines, the keys they precede)
    for line in [*text.splitlines(keepends=True), ""]:
        if block is not None:
            item, note = _ITEM.match(line), _COMMENT.match(line)
            if item and len(item.group(1)) > len(block):
                groups[-1][1].append(line.split("-", 1)[1].strip())
                continue
            if note and len(note.group(1)) > len(block):
                if groups[-1][1]:
                    groups.append(([], []))
                groups[-1][0].append(line)
                continue
            out += _params_block(block, groups, params[stage])
            block = None
        name = re.match(r"^  ([\w-]+):\s*$", line)
        if name:
            stage = name.group(1)
        found = _PARAMS.match(line)
        if found and stage in params:
            block, groups = found.group(1), [([], [])]
        out.append(line)
    return "".join(out)


def _params_block(
    block: str, groups: list[tuple[list[str], list[str]]], wanted: list[str]
) -> list[str]:
    lines: list[str] = []
    listed = [key for _, keys in groups for key in keys]
    for comments, keys in groups:
        kept = [key for key in keys if key in wanted]
        if kept or not keys:
            lines += comments
        lines += [f"{block}  - {key}\n" for key in kept]
    return lines + [f"{block}  - {key}\n" for key in wanted if key not in listed]


def rewrite_dvc_yaml(root: Path) -> str:
    """dvc.yaml's text with every stage's code deps and params derived (`make deps`)."""
    params = {name: stage_params(stage["cmd"]) for name, stage in stage_definitions(root).items()}
    return rewrite_params(rewrite_code_deps(root), params)
