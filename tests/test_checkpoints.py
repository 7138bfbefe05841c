"""Crash-safe checkpoints of the transformers-based trainers (reasontrain.trainers.checkpoint): a run killed while
writing a checkpoint, or stopped by a full disk, resumes from the last complete one with the same command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from reasontrain.trainers.checkpoint import (MARKER, DiskFull, disk_full_error, is_disk_full, mean_logged_loss,
                                             resume_point)

SFT = ["recipe=sft", "model=tiny", "model.tiny.hidden_size=32", "model.tiny.num_layers=1", "model.tiny.num_heads=2",
       "model.tiny.intermediate_size=64", "data.arith.train.size=96", "data.arith.test.size=4",
       "data.arith.hard.size=4", "train.max_steps=8", "train.global_batch_size=4", "train.micro_batch_size=4",
       "train.logging_steps=1", "train.save_steps=2", "train.save_total_limit=3", "generation.max_new_tokens=8",
       "eval.before=false", "train.epochs=1"]


def make_checkpoint(ckpt_dir: Path, step: int, marker: bool = True, state: bool = True) -> Path:
    folder = ckpt_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    if state:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if marker:
        (folder / MARKER).write_text("{}")
    return folder


def test_resume_point_is_the_newest_complete_checkpoint_and_incomplete_ones_go(tmp_path):
    make_checkpoint(tmp_path, 2)
    make_checkpoint(tmp_path, 4)
    make_checkpoint(tmp_path, 6, marker=False)  # crashed after trainer_state.json, before every rank was done
    make_checkpoint(tmp_path, 8, marker=False, state=False)
    assert resume_point(tmp_path).name == "checkpoint-4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-4"]


def test_checkpoints_from_before_markers_still_resume(tmp_path):
    make_checkpoint(tmp_path, 10, marker=False)
    make_checkpoint(tmp_path, 20, marker=False, state=False)
    assert resume_point(tmp_path).name == "checkpoint-10"
    assert resume_point(tmp_path / "missing") is None


def test_mean_logged_loss_weights_each_log_by_its_steps():
    history = [{"loss": 1.0, "step": 2}, {"eval": 1, "step": 2}, {"loss": 0.5, "step": 4}, {"loss": 0.2, "step": 5}]
    assert mean_logged_loss(history) == pytest.approx((2 * 1.0 + 2 * 0.5 + 0.2) / 5)
    assert mean_logged_loss([]) is None


def test_full_disk_errors_are_recognised_and_named(tmp_path):
    import errno

    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 512 vs 400"))
    assert not is_disk_full(RuntimeError("shape mismatch"))
    err = disk_full_error(tmp_path, OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(err, DiskFull) and str(tmp_path) in str(err) and "MiB free" in str(err)


def cli(*args, env=None, **kw):
    return [sys.executable, "-m", "reasontrain.cli", *args]


def stage_dir(run_dir: Path) -> Path:
    return next(run_dir.glob("sft-*"))


@pytest.mark.e2e
def test_sigkill_while_a_checkpoint_is_written_resumes_from_the_previous_one(tmp_path):
    env = {**os.environ, "REASONTRAIN_CHECKPOINT_DELAY": "3"}
    run_dir = tmp_path / "sft" / "seed0"
    proc = subprocess.Popen(cli(*SFT, f"output_root={tmp_path}"), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    target = None
    while time.time() < deadline and proc.poll() is None:
        found = list(run_dir.glob("sft-*/checkpoints/checkpoint-4"))
        if found:
            target = found[0]
            break
        time.sleep(0.01)
    assert target is not None, "checkpoint-4 never appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (target / MARKER).exists() and (target.parent / "checkpoint-2" / MARKER).exists()

    again = subprocess.run(cli(*SFT, f"output_root={tmp_path}"), cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert "checkpoint-4 is incomplete" in log and "resuming from step 2" in log, log[-3000:]
    stage = stage_dir(run_dir)
    done = json.loads((stage / "stage.json").read_text())["result"]
    assert done["steps"] == 8
    history = json.loads((stage / "log_history.json").read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 8 and done["train_loss"] == pytest.approx(sum(losses) / 8, rel=1e-6)
    assert (run_dir / "final" / "model.safetensors").exists()
    for ckpt in (stage / "checkpoints").glob("checkpoint-*"):  # resumable checkpoints generate with the cache too
        for name in ("config.json", "generation_config.json"):
            assert json.loads((ckpt / name).read_text())["use_cache"] is True, (ckpt, name)


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.e2e
def test_a_full_disk_is_one_line_and_the_same_command_resumes_after_space_is_freed(small_disk):
    env = {**os.environ, "REASONTRAIN_CHECKPOINT_DELAY": "1"}
    run_dir = small_disk / "sft" / "seed0"
    proc = subprocess.Popen(cli(*SFT, f"output_root={small_disk}"), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    filler = small_disk / "filler"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if list(run_dir.glob("sft-*/checkpoints/checkpoint-2/" + MARKER)):
            # Fill the disk while checkpoint-4 is about to be written.
            with open(filler, "wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                except OSError:
                    pass
            break
        time.sleep(0.01)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err[-3000:]
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("reasontrain: error:")]
    assert len(lines) == 1 and "disk full while writing" in lines[0] and str(run_dir) in lines[0], err[-3000:]
    assert "MiB free" in lines[0] and "Traceback" not in err

    filler.unlink()
    again = subprocess.run(cli(*SFT, f"output_root={small_disk}"), cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from step 2" in again.stdout + again.stderr
    assert json.loads((stage_dir(run_dir) / "stage.json").read_text())["result"]["steps"] == 8
