"""The members of an ensemble: `ensemble_runs` entries resolved to their predictions.

In: an `ensemble_runs` entry, the DVC project root and this run's RunPredictions
(lib.infer.runs). An entry is
a folder holding a copy of a run's `predictions/` (as before), a DVC experiment name (`dvc exp
show` lists them) or a git revision (branch, tag, commit). Out: a Member with the entry's
RunPredictions, read from the folder or, for a name or revision, from the local DVC cache at
that commit (dvc.fs.DVCFileSystem), so no copy is made by hand; and the commit it came from.

A member is refused with one line naming it (UserError) when the entry is no folder,
experiment or revision; when its predictions are not in the local cache (with the command that
brings them); or when it predicted other images or other classes than this run.
`gather_runs` gives every run the ensemble blends: this run's, then each member's.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dvc.fs import DVCFileSystem
from dvc_data.index import DataIndexDirError
from scmrepo.exceptions import RevError, SCMError
from scmrepo.git import Git

from lib.common.errors import UserError
from lib.infer.combine import combine
from lib.infer.runs import RunPredictions

FOLDER, EXPERIMENT, REVISION = "folder", "experiment", "revision"
SPLIT_FILES = ("oof.npz", "test.npz", "holdout.npz")
# refs/exps/<baseline[:2]>/<baseline[2:]>/<name>; DVC's own refs (exec, celery, ...) differ
_EXP_REF = re.compile(r"refs/exps/([0-9a-f]{2})/([0-9a-f]{38})/(.+)")


@dataclass(frozen=True)
class Source:
    """Where an entry's predictions live: a folder, or a commit of the project's git repo."""

    entry: str
    kind: str  # FOLDER, EXPERIMENT or REVISION
    folder: Path | None = None
    commit: str | None = None

    def describe(self) -> str:
        if self.commit is None:
            return self.entry
        return f"{self.entry} ({self.kind} {self.commit[:7]})"


@dataclass
class Member:
    source: Source
    run: RunPredictions


def load_members(
    entries: Sequence[str],
    *,
    this_run: RunPredictions,
    root: Path | str = ".",
    how: str = "mean",
    predictions_dir: str = "predictions",
) -> list[Member]:
    """Each entry of `ensemble_runs` resolved and read (`how` merges its folds), checked to
    have predicted the images and classes of `this_run`. `root`: the DVC project whose git
    refs and cache are read (a queued experiment passes DVC_ROOT, its parent project);
    `predictions_dir`: where a run keeps its predictions, relative to the root."""
    members = []
    for entry in entries:
        source = resolve(entry, root=Path(root))
        run = read_member(source, root=Path(root), how=how, predictions_dir=predictions_dir)
        check_same_rows(this_run, run)
        members.append(Member(source=source, run=run))
    return members


def gather_runs(
    predictions_dir: Path, *, folds: Sequence[int], entries: Sequence[str], root: Path, how: str
) -> tuple[list[RunPredictions], dict[str, str | None]]:
    """This run's predictions, then each member of `entries` ; and the commit
    each member was read from (None for a folder)."""
    this_run = RunPredictions(predictions_dir, folds=folds, how=how)
    members = load_members(entries, this_run=this_run, root=root, how=how)
    return [this_run, *(m.run for m in members)], {m.run.name: m.source.commit for m in members}


def resolve(entry: str, *, root: Path) -> Source:
    """A folder when one exists at `entry`; else a DVC experiment of that name; else a git
    revision. UserError when it is none of them."""
    if Path(entry).is_dir():
        return Source(entry=entry, kind=FOLDER, folder=Path(entry))
    try:
        scm = Git(root)
    except SCMError:
        raise UserError(
            f"ensemble_runs: {entry!r} is not a folder, and {root} is not a git "
            "repository, so it cannot name an experiment or a revision"
        ) from None
    try:
        commit = experiment_commit(scm, entry)
        if commit is not None:
            return Source(entry=entry, kind=EXPERIMENT, commit=commit)
        return Source(entry=entry, kind=REVISION, commit=scm.resolve_rev(entry))
    except RevError:
        raise UserError(
            f"ensemble_runs: {entry!r} is not a folder, a DVC experiment or a git "
            "revision of this project (`dvc exp list --all-commits` lists "
            f"experiments; one run elsewhere comes with `dvc exp pull "
            f"{git_remote(scm)} {entry}`)"
        ) from None
    finally:
        scm.close()


def experiment_commit(scm: Git, name: str) -> str | None:
    """The commit of experiment `name` (None when there is none): the one whose baseline is
    HEAD when several baselines have an experiment of that name, as `dvc exp apply` picks."""
    found = {}
    for ref in scm.iter_refs(base="refs/exps/"):
        match = _EXP_REF.fullmatch(ref)
        if match and match.group(3) == name:
            found[match.group(1) + match.group(2)] = ref
    if not found:
        return None
    if len(found) > 1:
        head = scm.get_rev()
        if head not in found:
            baselines = ", ".join(sorted(b[:7] for b in found))
            raise UserError(
                f"ensemble_runs: experiment {name!r} exists on several baselines "
                f"({baselines}), none of them HEAD: list its commit instead "
                "(`dvc exp show --all-commits --sha`)"
            )
        return scm.get_ref(found[head])
    return scm.get_ref(next(iter(found.values())))


def git_remote(scm: Git) -> str:
    """The git remote to pull experiments from: the only one, or a placeholder."""
    names = list(scm.pygit2.repo.remotes.names())
    return names[0] if len(names) == 1 else "<git-remote>"


def read_member(
    source: Source, *, root: Path, how: str, predictions_dir: str = "predictions"
) -> RunPredictions:
    """The member's RunPredictions, named by its entry. A commit's predictions are copied from
    the local DVC cache into a temporary folder that is gone once they are loaded."""
    if source.kind == FOLDER:
        return RunPredictions(source.folder, how=how, name=source.entry)
    with tempfile.TemporaryDirectory(prefix="ensemble-member-") as tmp:
        fetch_predictions(source, root=root, predictions_dir=predictions_dir, into=Path(tmp))
        return RunPredictions(Path(tmp), how=how, name=source.entry)


def fetch_predictions(source: Source, *, root: Path, predictions_dir: str, into: Path) -> None:
    """Copy `fold<k>/{oof,test,holdout}.npz` of `predictions_dir` at the source's commit from
    the local DVC cache into `into`; UserError when they are not there or not cached."""
    fs = DVCFileSystem(repo=str(root), rev=source.commit)
    try:
        for remote_path in _prediction_files(fs, source, root, predictions_dir):
            local = into / Path(*PurePosixPath(remote_path).parts[-2:])
            local.parent.mkdir(parents=True, exist_ok=True)
            try:
                fs.get_file(remote_path, str(local))
            except FileNotFoundError:  # listed at that commit, so its data is not cached
                raise _not_cached(source, root, remote_path) from None
    finally:
        fs.close()


def _prediction_files(
    fs: DVCFileSystem, source: Source, root: Path, predictions_dir: str
) -> list[str]:
    """The paths of fold<k>/{oof,test,holdout}.npz at the commit; UserError when no fold has
    OOF predictions there (a stage that never ran has outs without data)."""
    files = []
    if fs.isdir(predictions_dir):
        for fold in _listing(fs, source, root, predictions_dir):
            if re.fullmatch(r"fold\d+", PurePosixPath(fold).name) and fs.isdir(fold):
                files += [
                    path
                    for path in _listing(fs, source, root, fold)
                    if PurePosixPath(path).name in SPLIT_FILES
                ]
    if not any(PurePosixPath(path).name == "oof.npz" for path in files):
        raise UserError(
            f"{source.describe()}: no {predictions_dir}/fold<k>/oof.npz at that commit "
            "(did its predict stage run? `dvc exp show` lists each experiment's outs)"
        )
    return files


def _listing(fs: DVCFileSystem, source: Source, root: Path, folder: str) -> list[str]:
    try:
        return fs.ls(folder, detail=False)
    except DataIndexDirError:  # the folder's .dir object, its list of files, is not cached
        raise _not_cached(source, root, folder) from None


def _not_cached(source: Source, root: Path, path: str) -> UserError:
    if source.kind == EXPERIMENT:
        scm = Git(root)
        try:
            bring = f"dvc exp pull {git_remote(scm)} {source.entry}"
        finally:
            scm.close()
    else:
        bring = "dvc fetch --all-commits"
    return UserError(
        f"{source.describe()}: {path} is not in the local DVC cache; bring it with "
        f"`{bring}` (from the DVC remote it was pushed to)"
    )


def check_same_rows(this_run: RunPredictions, member: RunPredictions) -> None:
    """UserError naming the member when its OOF or test predictions cover other images or
    other classes than this run's (lib.infer.combine.combine's checks, run before any work)."""
    names = [this_run.name, member.name]
    combine([this_run.oof, member.oof], names=names)
    combine([this_run.test, member.test], names=names)
