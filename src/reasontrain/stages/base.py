"""Stages: functions from datasets on disk to a dataset on disk, cached by their config and inputs.

A stage's folder is `<run>/<name>-<key hash>/`. It counts as finished only once `stage.json` is written, so a
re-run reuses finished stages and redoes (or resumes) unfinished ones; changing a value changes the key and
re-runs that stage and every stage that takes its folder as input.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable

from reasontrain.distributed import barrier, dist_info, is_main_process

log = logging.getLogger("reasontrain")

DONE_FILE = "stage.json"
# Fault injection for the failure tests: "<stage name>:<rank>" makes that rank raise as the stage starts.
FAIL_ENV = "REASONTRAIN_FAIL_STAGE"


def stage_key(value) -> str:
    """A short stable hash of any JSON-able value."""
    blob = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def _maybe_inject_failure(name: str) -> None:
    import os

    stage, _, rank = os.environ.get(FAIL_ENV, "").partition(":")
    if stage == name and str(dist_info()[0]) == (rank or "0"):
        raise RuntimeError(f"injected failure in stage {name} on rank {rank or 0} ({FAIL_ENV})")


def _config_value(cfg, dotted: str):
    from enum import Enum

    from omegaconf import DictConfig, ListConfig

    from reasontrain.config import to_plain

    node = cfg
    for part in dotted.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    if isinstance(node, (DictConfig, ListConfig)) or hasattr(node, "__dataclass_fields__"):
        return to_plain(node)
    return node.value if isinstance(node, Enum) else node


def stage_key_from(cfg, reads: tuple[str, ...] = (), inputs: dict | None = None, **values) -> dict:
    """A stage's key, from what the stage declares it reads: config values (dotted paths into the root config,
    whole sections or single values), inputs given by path (entered by content, see `fingerprint`), and values
    the stage derives itself. Two runs that agree on all of them compute the same thing, wherever they run."""
    from reasontrain.stages.fingerprint import fingerprint

    key = {dotted: _config_value(cfg, dotted) for dotted in reads}
    key.update({f"input:{name}": None if path is None else fingerprint(path) for name, path in (inputs or {}).items()})
    key.update(values)
    return key


def distributed_key(cfg) -> dict:
    """The distributed settings that can change a stage's result (not the collective timeout)."""
    from reasontrain.config import to_plain

    return {k: v for k, v in to_plain(cfg.distributed).items() if k != "timeout_minutes"}


# Where every finished stage is registered (a symlink per `<name>-<key>`), so that any run under the same
# output_root finds it: `recipe=rise` after `recipe=dpo` on the same start reuses dpo's samples and grades. The
# CLI sets it to `<output_root>/.stages`; None (library use) looks only in the run's own folder.
_index: Path | None = None


def use_stage_index(path: Path | None) -> None:
    global _index
    _index = Path(path) if path is not None else None


def _from_index(folder: Path) -> Path | None:
    """The finished, readable folder of the same stage and key that another run registered, if any."""
    if _index is None:
        return None
    entry = _index / folder.name
    if not entry.is_symlink():
        return None
    target = entry.resolve()
    if target == folder.resolve() or not (target / DONE_FILE).is_file() or unreadable_output(target) is not None:
        return None
    return target


def _register(folder: Path) -> None:
    if _index is None:
        return
    _index.mkdir(parents=True, exist_ok=True)
    entry, target = _index / folder.name, folder.resolve()
    tmp = _index / f".{folder.name}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(target, _index))
    os.replace(tmp, entry)


def run_stage(run_dir: Path, name: str, key: dict, fn: Callable[[Path], dict | None]) -> tuple[Path, dict]:
    """Run `fn(folder)` unless the stage with this key already finished, in this run's folder or (through the
    stage index) in another run's; return (folder, its summary)."""
    folder = Path(run_dir) / f"{name}-{stage_key(key)}"
    done = folder / DONE_FILE
    if not done.exists():
        shared = _from_index(folder)
        if shared is not None:
            log.info("stage %s: reusing %s (computed by another run)", name, shared)
            if is_main_process() and not folder.exists() and not folder.is_symlink():
                folder.parent.mkdir(parents=True, exist_ok=True)
                folder.symlink_to(os.path.relpath(shared, folder.parent))
            barrier()
            found = folder if folder.is_symlink() else shared
            return found, json.loads((shared / DONE_FILE).read_text()).get("result") or {}
    if done.exists():
        problem = unreadable_output(folder)
        if problem is None:
            summary = json.loads(done.read_text())
            log.info("stage %s: reusing %s", name, folder)
            if is_main_process() and not folder.is_symlink():
                _register(folder)  # finished before the index existed, or by a run with another output_root
            return folder, summary.get("result") or {}
        log.warning("stage %s: %s; recomputing the stage", name, problem)
        barrier()  # every rank has seen the finished marker before rank 0 removes it
        if is_main_process():
            done.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    log.info("stage %s: running in %s", name, folder)
    start = time.time()
    _maybe_inject_failure(name)
    result = fn(folder) or {}
    barrier()  # the stage is marked done only once every rank has finished it
    if is_main_process():
        (folder / "key.json").write_text(json.dumps(key, indent=2, sort_keys=True, default=str))
        done.write_text(json.dumps({"name": name, "seconds": round(time.time() - start, 2), "result": result},
                                   indent=2, default=str))
        _register(folder)
    barrier()
    return folder, result


def unreadable_output(folder: Path) -> str | None:
    """What is wrong with a finished stage's own outputs (its JSON and JSONL files), or None if they all parse.

    A file damaged after the stage finished (a disk error, a hand edit, a copy cut short) would otherwise fail a
    later stage with a parser trace, or worse, be used."""
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".json", ".jsonl") or not path.is_file():
            continue
        try:
            with path.open(encoding="utf-8") as f:
                if path.suffix == ".json":
                    json.load(f)
                    continue
                for lineno, line in enumerate(f, start=1):
                    if line.strip():
                        json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            where = f"{path}:{lineno}" if path.suffix == ".jsonl" else str(path)
            return f"{where} is unreadable ({type(e).__name__}: {str(e).splitlines()[0][:80]})"
    return None


def train_and_save(trainer, tokenizer, folder: Path, merge_lora: bool):
    """Train (resuming from the last checkpoint in `folder/checkpoints` if any), then write `folder/final`
    (LoRA merged, ZeRO-3 shards gathered) and `folder/log_history.json`. Returns the train output.

    Every rank must call it: under ZeRO-3 all ranks take part in gathering the weights that rank 0 writes.
    """
    import json

    from reasontrain.trainers.checkpoint import (
        CompletionMarker,
        disk_full_error,
        is_disk_full,
        mean_logged_loss,
        resume_point,
    )

    ckpt_dir = folder / "checkpoints"
    resume = resume_point(ckpt_dir, remove_incomplete=is_main_process())
    barrier()
    if resume is not None:
        log.info("resuming from step %s (%s)", resume.name.split("-")[-1], resume)
    trainer.add_callback(CompletionMarker())
    try:
        out = trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
        save_final_model(trainer, tokenizer, folder / "final", merge_lora)
    except (OSError, RuntimeError) as e:
        if is_disk_full(e):
            raise disk_full_error(folder, e) from None
        raise
    if resume is not None:
        # transformers divides the loss summed since the resume by all steps; the logged values cover every step.
        out = out._replace(training_loss=mean_logged_loss(trainer.state.log_history) or out.training_loss)
    if is_main_process():
        (folder / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    return out


def save_final_model(trainer, tokenizer, final: Path, merge_lora: bool) -> None:
    """Write the trained model to `final` in HF format (safetensors, loadable with `from_pretrained`).

    Under ZeRO-3 each rank holds a slice of every weight: all ranks gather the full state dict to rank 0, which
    loads it into an unpartitioned copy of the model. LoRA adapters are merged into the base weights. The saved
    config.json and generation_config.json have the KV cache on (training turns it off). Afterwards
    transformers' global ZeRO-3 flag is cleared, so later stages load plain models again.
    """
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    from reasontrain.models.loading import save_for_inference

    model = trainer.accelerator.unwrap_model(trainer.model)
    state_dict = None
    if trainer.is_deepspeed_enabled and trainer.accelerator.deepspeed_config["zero_optimization"]["stage"] == 3:
        state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped)  # collective; full on rank 0
    unset_hf_deepspeed_config()
    if is_main_process():
        if state_dict is not None:
            model = _unpartitioned_copy(model, state_dict)
        if merge_lora and hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        save_for_inference(model, tokenizer, final)  # KV cache on, whatever training set
    barrier()


def _unpartitioned_copy(model, state_dict: dict):
    """A fresh model of the same architecture (and LoRA adapter, if any) holding `state_dict`."""
    from transformers import AutoModelForCausalLM

    peft_config = getattr(model, "peft_config", None)
    base = model.get_base_model() if peft_config else model
    copy = AutoModelForCausalLM.from_config(base.config, dtype=base.config.dtype)
    if peft_config:
        from peft import get_peft_model

        copy = get_peft_model(copy, peft_config[model.active_adapter])
    missing, unexpected = copy.load_state_dict(state_dict, strict=False)
    tied = set(getattr(copy, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k.split("base_model.model.")[-1] not in tied]
    if missing or unexpected:
        raise RuntimeError(f"gathered ZeRO-3 weights do not fit the model: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")
    if hasattr(copy, "tie_weights"):
        copy.tie_weights()
    return copy
