"""Stages: functions from datasets on disk to a dataset on disk, cached by their config and inputs.

A stage's folder is `<run>/<name>-<key hash>/`. It counts as finished only once `stage.json` is written, so a
re-run reuses finished stages and redoes (or resumes) unfinished ones; changing a value changes the key and
re-runs that stage and every stage that takes its folder as input.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger("reasontrain")

DONE_FILE = "stage.json"


def stage_key(value) -> str:
    """A short stable hash of any JSON-able value."""
    blob = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def is_main_process() -> bool:
    from reasontrain.generation.base import dist_info

    return dist_info()[0] == 0


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def run_stage(run_dir: Path, name: str, key: dict, fn: Callable[[Path], dict | None]) -> tuple[Path, dict]:
    """Run `fn(folder)` unless the stage with this key already finished; return (folder, its summary)."""
    folder = Path(run_dir) / f"{name}-{stage_key(key)}"
    done = folder / DONE_FILE
    if done.exists():
        summary = json.loads(done.read_text())
        log.info("stage %s: reusing %s", name, folder)
        return folder, summary.get("result") or {}
    folder.mkdir(parents=True, exist_ok=True)
    log.info("stage %s: running in %s", name, folder)
    start = time.time()
    result = fn(folder) or {}
    barrier()
    if is_main_process():
        (folder / "key.json").write_text(json.dumps(key, indent=2, sort_keys=True, default=str))
        done.write_text(json.dumps({"name": name, "seconds": round(time.time() - start, 2), "result": result},
                                   indent=2, default=str))
    barrier()
    return folder, result


def train_and_save(trainer, tokenizer, folder: Path, merge_lora: bool):
    """Train (resuming from the last checkpoint in `folder/checkpoints` if any), then write `folder/final`
    (LoRA merged, ZeRO-3 shards gathered) and `folder/log_history.json`. Returns the train output."""
    import json

    ckpt_dir = folder / "checkpoints"
    resume = ckpt_dir.exists() and any(ckpt_dir.glob("checkpoint-*"))
    out = trainer.train(resume_from_checkpoint=True if resume else None)
    final = folder / "final"
    if trainer.is_deepspeed_enabled:
        trainer.save_model(str(final))  # every rank takes part in gathering ZeRO-3 shards
    elif is_main_process():
        model = trainer.model.merge_and_unload() if merge_lora else trainer.model
        model.save_pretrained(final)
    if is_main_process():
        tokenizer.save_pretrained(final)
        (folder / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    return out
