"""Crash-safe resume for the `transformers.Trainer`-based trainers (SFT, preference, cDPO's models).

transformers writes `checkpoints/checkpoint-N/` in place, file by file, so a crash (SIGKILL, a full disk) can leave
a folder that its own resume logic picks as the newest and then fails on. Here a checkpoint counts only once every
rank has finished writing it: `CompletionMarker` (a callback) writes `.complete` after a barrier, and the resume
point is the newest folder that has it. Folders without it are incomplete: they are removed, with a warning naming
them, before training continues from the newest complete one. A full disk becomes one line that names the folder
and the space left.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback

log = logging.getLogger("reasontrain")

MARKER = ".complete"
# Tests only: seconds to wait before marking a checkpoint complete, so a test can kill a run mid-checkpoint.
DELAY_ENV = "REASONTRAIN_CHECKPOINT_DELAY"
_STEP = re.compile(r"^checkpoint-(\d+)$")


class DiskFull(RuntimeError):
    pass


def _step(path: Path) -> int:
    return int(_STEP.match(path.name).group(1))


def _legacy_complete(folder: Path) -> bool:
    """A checkpoint written before markers existed: trainer_state.json (written last) parses."""
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def checkpoint_folders(ckpt_dir: Path) -> list[Path]:
    """Every `checkpoint-N` folder under `ckpt_dir`, oldest first."""
    if not Path(ckpt_dir).is_dir():
        return []
    return sorted((p for p in Path(ckpt_dir).iterdir() if p.is_dir() and _STEP.match(p.name)), key=_step)


def is_complete(folder: Path) -> bool:
    if (folder / MARKER).exists():
        return True
    # Folders of this checkout always get a marker; one without it next to marked ones is a crashed write.
    return not any((p / MARKER).exists() for p in folder.parent.iterdir()) and _legacy_complete(folder)


def resume_point(ckpt_dir: Path, remove_incomplete: bool = True) -> Path | None:
    """The newest complete checkpoint under `ckpt_dir`, or None. Incomplete ones newer than it are removed (when
    `remove_incomplete`, which only rank 0 should do), each with a warning: they hold no usable state, and left in
    place transformers' rotation could delete the complete one instead."""
    folders = checkpoint_folders(ckpt_dir)
    complete = [p for p in folders if is_complete(p)]
    best = complete[-1] if complete else None
    for p in folders:
        if p not in complete:
            log.warning("checkpoint %s is incomplete (the run stopped while writing it); %s", p,
                        "removing it" if remove_incomplete else "skipping it")
            if remove_incomplete:
                shutil.rmtree(p, ignore_errors=True)
    return best


def cache_on(folder: Path) -> None:
    """Set `use_cache: true` in a checkpoint's config.json and generation_config.json: transformers saves what
    training set (off), and anyone generating from the checkpoint would then recompute every token."""
    for name in ("config.json", "generation_config.json"):
        path = folder / name
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(config, dict) and config.get("use_cache") is not True:
            config["use_cache"] = True
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, path)


class CompletionMarker(TrainerCallback):
    """Marks `checkpoint-N/` complete once every rank has written its part (on_save runs after the whole save),
    with the KV cache switched back on in its configs."""

    def on_save(self, args, state, control, **kwargs):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        if os.environ.get(DELAY_ENV):  # fault injection: widen the window in which a crash leaves it incomplete
            time.sleep(float(os.environ[DELAY_ENV]))
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                cache_on(folder)
                tmp = folder / f"{MARKER}.tmp"
                tmp.write_text(json.dumps({"step": state.global_step}))
                os.replace(tmp, folder / MARKER)
        return control


def is_disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    text = str(error)
    # torch.save reports a full disk as a failed write in its zip writer.
    return "No space left" in text or "unexpected pos" in text or "file write failed" in text


def disk_full_error(folder: Path, error: BaseException) -> DiskFull:
    try:
        free = shutil.disk_usage(folder).free
        space = f"{free / 2**20:.1f} MiB free"
    except OSError:
        space = "free space unknown"
    return DiskFull(f"disk full while writing {folder} ({space}): free some space and run the same command again; "
                    f"it resumes from the last complete checkpoint ({type(error).__name__}: "
                    f"{str(error).splitlines()[0][:120]})")


def mean_logged_loss(log_history: list[dict]) -> float | None:
    """The training loss averaged over every step logged, before and after any resume (each logged value is the
    mean over the steps since the previous log, so it is weighted by that span)."""
    total, steps, previous = 0.0, 0, 0
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            span = max(1, entry["step"] - previous)
            total, steps, previous = total + entry["loss"] * span, steps + span, entry["step"]
    return total / steps if steps else None
