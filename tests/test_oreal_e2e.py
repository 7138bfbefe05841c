"""recipe=oreal through the real CLI on a tiny budget, and resume after SIGKILL: a run killed mid-training and
started again with the same command ends with the same per-step metrics and weights as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT

# One-operation problems with small numbers: a briefly SFT-trained tiny model solves some, so groups are mixed.
TINY = [
    "model=tiny", "start.sft=true",
    "model.tiny.hidden_size=32", "model.tiny.num_layers=1", "model.tiny.num_heads=2", "model.tiny.intermediate_size=64",
    "data.arith.train.size=256", "data.arith.train.min_steps=1", "data.arith.train.max_steps=1",
    "data.arith.train.max_start=4", "data.arith.train.max_operand=3",
    "data.arith.test.size=8", "data.arith.hard.size=8",
    "start.train.max_steps=40", "start.train.global_batch_size=16", "start.train.micro_batch_size=16",
    "online.prompts_per_step=8", "online.samples_per_prompt=4", "oreal.actor_freeze_steps=1", "online.policy.warmup=1",
    "online.rebalance.max_prompts=16", "online.rebalance.samples=4", "online.rebalance.repeats=[2,1,1,1,0]",
    "generation.max_new_tokens=48", "train.micro_batch_size=4", "train.global_batch_size=4",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
TIMING = ("time/", "tokens_per_s/")


def cli(*args):
    return [sys.executable, "-m", "reasontrain.cli", "recipe=oreal", *TINY, *args]


def run(*args, timeout=300):
    proc = subprocess.run(cli(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def metrics_rows(stage):
    return [json.loads(line) for line in (stage / "metrics.jsonl").read_text().splitlines()]


def without_timing(rows):
    return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in rows]


@pytest.mark.e2e
def test_oreal_recipe_end_to_end(tmp_path):
    from transformers import AutoModelForCausalLM

    proc = run("online.steps=3", "online.save_every=2", f"output_root={tmp_path}", "tracking=wandb")
    run_dir = tmp_path / "oreal" / "seed0"
    assert "| test |" in proc.stdout and f"outputs: {run_dir}" in proc.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 3 and 0 <= metrics["after"]["test"]["pass@1"] <= 1
    stage = next(run_dir.glob("oreal-*"))
    rows = metrics_rows(stage)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[0]["actor_frozen"] and "loss/positive" not in rows[0]
    for key in ("pass_rate", "kept_fraction", "rm/loss", "rm/accuracy", "response_length", "truncation_rate",
                "time/generate", "time/train", "tokens_per_s/generate"):
        assert all(key in r for r in rows if r["kept"] or not key.startswith("rm/")), key
    assert any(r["kept"] for r in rows), rows
    assert sorted(p.name for p in (stage / "checkpoints").iterdir()) == ["step-2", "step-3"]
    rebalance = json.loads(next(run_dir.glob("rebalance-*/stage.json")).read_text())["result"]
    assert rebalance["pool"] == 16 and rebalance["rebalanced"]
    AutoModelForCausalLM.from_pretrained(run_dir / "final")
    assert list((run_dir / "wandb").glob("offline-run-*"))


@pytest.mark.e2e
def test_sigkill_then_same_command_continues_like_an_uninterrupted_run(tmp_path):
    from safetensors.torch import load_file

    common = ["online.steps=8", "online.save_every=1", "online.save_total_limit=8", "eval.before=false"]
    # Two output roots: under one, the second run would reuse the first one's finished stage (the stage index).
    run(*common, f"output_root={tmp_path / 'a'}", "run_name=whole")
    whole = next((tmp_path / "a" / "oreal" / "whole").glob("oreal-*"))
    common.append(f"output_root={tmp_path}")

    args = cli(*common, "run_name=killed")
    proc = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 240
    try:
        while not list((tmp_path / "oreal" / "killed").glob("oreal-*/checkpoints/step-2/state.json")):
            assert proc.poll() is None and time.time() < deadline, "run ended before its second checkpoint"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed = next((tmp_path / "oreal" / "killed").glob("oreal-*"))
    assert not (killed / "stage.json").exists(), "killed too late: the stage had finished"
    done_before = len(metrics_rows(killed))
    assert done_before < 8

    again = run(*common, "run_name=killed")
    assert "oreal: resuming from step" in again.stdout + again.stderr
    assert without_timing(metrics_rows(killed)) == without_timing(metrics_rows(whole))
    a, b = load_file(str(whole / "final" / "model.safetensors")), load_file(str(killed / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    ra = load_file(str(whole / "checkpoints" / "step-8" / "rm" / "model.safetensors"))
    rb = load_file(str(killed / "checkpoints" / "step-8" / "rm" / "model.safetensors"))
    assert all((ra[k] == rb[k]).all() for k in ra)


@pytest.mark.e2e
def test_resume_path_without_a_checkpoint_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    for path, message in ((tmp_path / "missing", "does not exist"), (tmp_path / "empty", "holds no checkpoint")):
        proc = subprocess.run(cli(f"online.resume={path}", f"output_root={tmp_path}/out"), cwd=ROOT, env=ENV,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "out").glob("oreal/seed0/data-*"))  # it failed before any stage ran
