"""Experiment tracking: wandb (online or offline) or nothing. Only the main process logs."""

from __future__ import annotations

from pathlib import Path

from reasontrain.config import Tracker as TrackerKind


class Tracker:
    def __init__(self, run=None):
        self.run = run

    def log(self, metrics: dict, step: int | None = None) -> None:
        """Per-step curves (the online trainers log every step)."""
        if self.run is not None:
            self.run.log(metrics, step=step)

    def summary(self, metrics: dict) -> None:
        if self.run is not None:
            self.run.summary.update(metrics)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


def start_tracking(cfg, run_dir: Path, config: dict) -> Tracker:
    from reasontrain.distributed import is_main_process

    backend = TrackerKind(cfg.tracking.backend).value
    if backend != "wandb" or not is_main_process():
        return Tracker()
    import wandb

    t = cfg.tracking
    run = wandb.init(project=t.project, entity=t.entity, group=t.group, tags=list(t.tags) or None,
                     name=f"{cfg.recipe}/{cfg.run_name}", config=config, dir=str(run_dir), reinit="finish_previous")
    return Tracker(run)
