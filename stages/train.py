"""train@<fold>: fine-tune one model on every fold but <fold>, validating on <fold>.

Out: models/fold<k>/model.pt (weights + provenance) and models/fold<k>/live (DVCLive metrics).
While it runs, models/fold<k>/resume.pt holds the state after the last finished epoch: a killed
run started again (`dvc repro`) resumes from it, if params and data are unchanged.
With gpus > 1 it runs as one of the processes torchrun starts (`python -m stages.launch`);
only rank 0 writes the outs and logs.
"""

import contextlib
import json
import logging
import os

import torch
from dvclive import Live

from lib.common.fileio import remove_stale_temps
from lib.prepare.folds import read_folds
from lib.train import distributed
from lib.train.fold import fold_data, resume_key, train_fold
from lib.train.loop import TrainConfig, as_metrics
from lib.train.teaching import load_teaching
from stages.common import (
    FOLDS_CSV,
    IMAGES_DIR,
    PREDICTIONS_DIR,
    STATS_JSON,
    Interrupted,
    fold_argument,
    model_dir,
    run,
    upstream,
)
from stages.prechecks import check_before_work

PARAMS, SPEED_PARAMS = TrainConfig.dep_keys(), TrainConfig.speed_keys()


def main() -> None:
    fold, config = fold_argument(), TrainConfig.load()
    check_before_work()  # what would fail the ensemble, before any training
    env, device = distributed.setup(config.gpus)
    try:
        if not env.main:
            logging.getLogger().setLevel(logging.WARNING)
        else:  # the only process that writes
            remove_stale_temps(model_dir(fold))
        torch.manual_seed(config.seed)
        folds_text = upstream(FOLDS_CSV, "folds").read_text()
        stats_text = upstream(STATS_JSON, "stats").read_text()
        folds = read_folds(FOLDS_CSV)
        teaching = load_teaching(
            config,
            folds=folds,
            fold=fold,
            test_dir=IMAGES_DIR / "test",
            # a queued experiment runs in a temporary copy: the runs are the project's
            root=os.environ.get("DVC_ROOT", "."),
            predictions_dir=str(PREDICTIONS_DIR),
        )
        stats = json.loads(stats_text)
        # the params that made the model, saved in it (the stage's DVC params), and what the
        # teaching runs were
        provenance = config.dep_values() | teaching.provenance()
        data = fold_data(
            folds,
            fold,
            images_dir=IMAGES_DIR,
            stats=stats,
            config=config,
            env=env,
            teaching=teaching,
        )
        with (
            Live(dir=str(model_dir(fold) / "live"), dvcyaml=None, save_dvc_exp=False)
            if env.main
            else contextlib.nullcontext()
        ) as live:
            try:
                train_fold(
                    data,
                    fold=fold,
                    config=config,
                    provenance=provenance,
                    stats=stats,
                    env=env,
                    key=resume_key(provenance, folds_text=folds_text, stats_text=stats_text),
                    model_path=model_dir(fold) / "model.pt",
                    device=device,
                    resume_path=model_dir(fold) / "resume.pt",
                    on_epoch=lambda result: log_epoch(live, result),
                )
            except KeyboardInterrupt:
                raise Interrupted(interrupted_message(fold)) from None
    finally:
        distributed.teardown(env)


def interrupted_message(fold: int) -> str:
    resume = model_dir(fold) / "resume.pt"
    if resume.is_file():
        epoch = torch.load(resume, weights_only=True, map_location="cpu").get("epoch")
        return (
            f"training of fold {fold} stopped; {resume} holds epoch {epoch}: run "
            f"`dvc repro train@{fold}` (or this command) again to resume from it"
        )
    return (
        f"training of fold {fold} stopped before its first epoch ended: run "
        f"`dvc repro train@{fold}` again to start it"
    )


def log_epoch(live: Live | None, result) -> None:
    if live is None:  # only rank 0 logs
        return
    for name, value in as_metrics(result).items():
        live.log_metric(name, value)
    live.next_step()


if __name__ == "__main__":
    run(main)
