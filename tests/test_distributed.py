"""Distributed training on CPU: real torchrun launches of 2 processes under DeepSpeed ZeRO-2/3 (gloo), compared
with one process at the same global batch (Masked Thought, sampling and grading, the preference trainer, OREAL);
the Slurm launcher on a faked 2-node allocation; a crash on one rank.

Tolerances (measured in brackets): per-step training loss within 1e-4 absolute of the one-process run (<= 1e-6);
final weights within 1e-3 absolute, at learning rates up to 1e-2 (<= 5e-5). Sampled and graded datasets are
byte-identical. Run only these with `python -m pytest -q -m distributed`. DeepSpeed compiles its CPU
communication op once per checkout into .cache/torch_extensions (about a minute on 2 cores); later launches reuse it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.distributed

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
       "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false", "DS_ACCELERATOR": "cpu",
       "TORCH_EXTENSIONS_DIR": str(ROOT / ".cache" / "torch_extensions")}
LOSS_TOL = 1e-4
WEIGHT_TOL = 1e-3

# Masked Thought (SFT with input noise) on a very small budget: 4 optimizer steps of a global batch of 8, micro-batch
# 2, so 1 process accumulates 4 micro-batches per step and 2 processes accumulate 2 each.
SFT = ["recipe=masked_thought", "model=tiny", "model.tiny.hidden_size=32", "model.tiny.num_layers=1", "model.tiny.num_heads=2",
       "model.tiny.intermediate_size=64", "data.arith.train.size=64", "data.arith.test.size=8",
       "data.arith.hard.size=8", "train.max_steps=4", "train.global_batch_size=8", "train.micro_batch_size=2",
       "train.logging_steps=1", "generation.max_new_tokens=24", "eval.before=false"]
# Sampling + grading + three preference-trainer variants (tests/distributed_worker.py): global batch 4, micro 1.
PREFERENCE = ["model=tiny", "model.tiny.hidden_size=32", "model.tiny.num_layers=1", "model.tiny.num_heads=2",
              "model.tiny.intermediate_size=64", "data.arith.train.size=32", "data.arith.test.size=4",
              "data.arith.hard.size=4", "start.sft=false", "sample.max_questions=6", "sample.n=2",
              "sample.temperature=1.0", "generation.max_new_tokens=16", "train.max_steps=3",
              "train.global_batch_size=4", "train.micro_batch_size=1", "train.logging_steps=1", "train.lr=1e-2",
              "train.warmup=0"]


def run(cmd: list[str], timeout: int = 400, env: dict | None = None, check: bool = True):
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env or ENV)
    if check:
        assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    return proc


def torchrun(*args: str, nproc: int = 2) -> list[str]:
    """A single-node torchrun command line; `--standalone` picks a free rendezvous port."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "reasontrain.cli", *args]


def losses(stage: Path) -> list[float]:
    return [h["loss"] for h in json.loads((stage / "log_history.json").read_text()) if "loss" in h]


def assert_same_curve(one: list[float], two: list[float]) -> float:
    assert len(one) == len(two) > 0
    diff = max(abs(a - b) for a, b in zip(one, two))
    assert diff <= LOSS_TOL, (one, two)
    return diff


def assert_same_weights(one: Path, two: Path) -> None:
    """Both folders load with from_pretrained (HF format, LoRA merged) and hold the same weights."""
    from transformers import AutoModelForCausalLM

    assert (two / "model.safetensors").exists() and not (two / "adapter_config.json").exists()
    a = AutoModelForCausalLM.from_pretrained(one).state_dict()
    b = AutoModelForCausalLM.from_pretrained(two).state_dict()
    assert a.keys() == b.keys()
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert diff <= WEIGHT_TOL, diff


# -- global batch semantics -------------------------------------------------------------------------------------

@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_global_batch_is_the_same_for_any_number_of_processes(world, monkeypatch):
    from omegaconf import OmegaConf

    from reasontrain.config import RootConfig
    from reasontrain.trainers.args import common_training_kwargs

    cfg = OmegaConf.structured(RootConfig(recipe="sft"))
    cfg.train.global_batch_size, cfg.train.micro_batch_size = 64, 4
    cfg.distributed.deepspeed_config = "zero3.json"
    monkeypatch.setenv("WORLD_SIZE", str(world))
    kw = common_training_kwargs(cfg, "/tmp/unused")
    assert kw["per_device_train_batch_size"] == 4
    assert kw["gradient_accumulation_steps"] * world * kw["per_device_train_batch_size"] == 64
    assert kw["deepspeed"].endswith("configs/distributed/zero3.json")
    assert kw["ddp_timeout"] == 30 * 60
    cfg.train.micro_batch_size = 48  # 64 is no multiple of 48 x world: the largest micro-batch that divides it
    kw = common_training_kwargs(cfg, "/tmp/unused")
    assert kw["per_device_train_batch_size"] == min(32, 64 // world)
    assert kw["gradient_accumulation_steps"] * world * kw["per_device_train_batch_size"] == 64


def test_the_micro_batch_is_a_performance_knob():
    from reasontrain.trainers.args import BatchSizeError, batch_layout

    assert batch_layout(16, 16, 2) == (8, 1)  # the tiny recipes under torchrun --nproc_per_node 2
    assert batch_layout(64, 48, 1) == (32, 2) and batch_layout(10, 4, 1) == (2, 5) and batch_layout(12, 5, 2) == (3, 2)
    with pytest.raises(BatchSizeError, match="not a multiple of the 4 processes"):
        batch_layout(6, 6, 4)


def test_deepspeed_configs_take_their_batch_values_from_the_training_config():
    for name in ("zero2", "zero3", "zero3_offload"):
        ds = json.loads((ROOT / "configs" / "distributed" / f"{name}.json").read_text())
        for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                    "gradient_clipping"):
            assert ds[key] == "auto", (name, key)
        if ds["zero_optimization"]["stage"] == 3:
            assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


# -- sampling seeds ----------------------------------------------------------------------------------------------

def test_samples_do_not_depend_on_sharding_or_batch_size(tokenizer, tiny_model):
    from reasontrain.distributed import shard, shard_start
    from reasontrain.generation.base import SamplingParams
    from reasontrain.generation.hf import generate

    prompts = [f"Q: {i} + {i}\nA: " for i in range(7)]
    params = SamplingParams(n=3, temperature=1.0, top_p=0.9, max_new_tokens=10, seed=5)
    whole = generate(tiny_model, tokenizer, prompts, params, batch_size=7, progress=False)
    for world in (2, 3):
        parts = [generate(tiny_model, tokenizer, shard(prompts, r, world), params, batch_size=2, progress=False,
                          first_index=shard_start(len(prompts), r, world)) for r in range(world)]
        assert [[c.text for c in row] for part in parts for row in part] == [[c.text for c in row] for row in whole]
    other_seed = generate(tiny_model, tokenizer, prompts, SamplingParams(**{**params.__dict__, "seed": 6}),
                          batch_size=7, progress=False)
    assert [c.text for row in other_seed for c in row] != [c.text for row in whole for c in row]


def test_seeded_sampler_draws_from_the_tempered_top_p_distribution():
    import torch

    from reasontrain.generation.hf import _SeededSampler

    probs, n = torch.tensor([0.5, 0.3, 0.15, 0.05]), 20000
    uniforms = torch.rand(n, 1, generator=torch.Generator().manual_seed(0))
    for temperature, top_p, expected in ((1.0, 1.0, probs), (1.0, 0.8, torch.tensor([0.625, 0.375, 0, 0])),
                                         (0.5, 1.0, probs**2 / (probs**2).sum())):
        out = _SeededSampler(uniforms, 0, temperature, top_p)(torch.zeros(n, 0, dtype=torch.long),
                                                              probs.log().repeat(n, 1))
        freq = torch.bincount(out.argmax(-1), minlength=4).float() / n
        assert torch.allclose(freq, expected, atol=0.015), (temperature, top_p, freq)


# -- SFT / Masked Thought ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sft_single(tmp_path_factory) -> Path:
    """The one-process run every distributed SFT run is compared with."""
    out = tmp_path_factory.mktemp("sft-single")
    run(cli(*SFT, f"output_root={out}"))
    return out / "masked_thought" / "seed0"


def test_masked_thought_under_zero3_matches_one_process(sft_single, tmp_path):
    start = time.time()
    proc = run(torchrun("-m", "reasontrain.cli", *SFT, "distributed=zero3", f"output_root={tmp_path}"))
    seconds = time.time() - start
    run_dir = tmp_path / "masked_thought" / "seed0"
    diff = assert_same_curve(losses(next(sft_single.glob("masked_thought-*"))),
                             losses(next(run_dir.glob("masked_thought-*"))))
    assert_same_weights(sft_single / "final", run_dir / "final")
    print(f"\nZeRO-3, 2 processes: {seconds:.1f} s wall, largest loss difference {diff:.2e}")
    # The distributed evaluation gathered every problem, in order, and rank 0 alone wrote the report.
    preds = [json.loads(line) for line in next(run_dir.glob("eval-final-*/test.predictions.jsonl")).open()]
    data = [json.loads(line) for line in next(run_dir.glob("data-*/test.jsonl")).open()]
    assert [p["id"] for p in preds] == [d["id"] for d in data]
    assert proc.stdout.count("outputs: ") == 1
    # Clean logs: INFO lines from rank 0 only, and ZeRO-3's per-step deprecation warnings once per rank (they
    # used to repeat at every collective: thousands of lines per run).
    log = proc.stdout + proc.stderr
    assert log.count("stage masked_thought: running") == 1, log[-3000:]
    assert log.count("FutureWarning") <= 2 * 2, log[-3000:]


def free_port(low: int, high: int) -> int:
    """A port in [low, high) that nothing listens on right now."""
    import random

    for port in random.Random().sample(range(low, high), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in [{low}, {high})")


def test_slurm_launcher_on_two_faked_nodes_under_zero2(sft_single, tmp_path):
    """slurm/launch.sh as srun would start it on 2 nodes x 1 GPU: two launchers, Slurm variables faked, both
    nodes on this machine, c10d rendezvous on the first node of the list."""
    port = free_port(20000, 40000)
    job_id = port - 20000 + 20000 * 7  # launch.sh derives the port: 20000 + job id % 20000
    procs = []
    for node in (0, 1):
        env = {**ENV, "SLURM_JOB_ID": str(job_id), "SLURM_JOB_NODELIST": "127.0.0.1,127.0.0.2", "SLURM_NNODES": "2",
               "SLURM_NODEID": str(node), "SLURM_GPUS_ON_NODE": "1"}
        procs.append(subprocess.Popen(["bash", str(ROOT / "slurm" / "launch.sh"), *SFT, "distributed=zero2",
                                       f"output_root={tmp_path}"], cwd=tmp_path, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outs = [p.communicate(timeout=400) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-4000:]
    assert f"rendezvous 127.0.0.1:{port}" in outs[0][1] and "node 1/2, 1 processes" in outs[1][1]
    run_dir = tmp_path / "masked_thought" / "seed0"
    assert_same_curve(losses(next(sft_single.glob("masked_thought-*"))), losses(next(run_dir.glob("masked_thought-*"))))
    assert_same_weights(sft_single / "final", run_dir / "final")


# -- sampling, grading and the preference trainer -------------------------------------------------------------

def worker(out: Path, *overrides: str, nproc: int = 1) -> dict:
    script = str(ROOT / "tests" / "distributed_worker.py")
    cmd = torchrun(script, str(out), *overrides, nproc=nproc) if nproc > 1 else [sys.executable, script, str(out),
                                                                                  *overrides]
    run(cmd)
    return json.loads((out / "result.json").read_text())


@pytest.fixture(scope="module")
def preference_single(tmp_path_factory) -> dict:
    return worker(tmp_path_factory.mktemp("pref-single"), *PREFERENCE)


@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_sampling_grading_and_preference_trainer_match_one_process(zero, preference_single, tmp_path):
    two = worker(tmp_path, *PREFERENCE, f"distributed={zero}", nproc=2)
    # Sampling is seeded per prompt and sample, so 2 ranks write the same dataset as 1; grading is split too.
    for key in ("samples", "graded"):
        assert Path(two[key]).read_bytes() == Path(preference_single[key]).read_bytes(), key
    assert set(two["runs"]) == {"copy", "cached_lora", "lora_ref"}
    for name, one_run in preference_single["runs"].items():
        two_run = two["runs"][name]
        assert two_run["summary"]["steps"] == 3 and two_run["summary"]["pairs"] == 12
        assert_same_curve(one_run["loss"], two_run["loss"])
        assert one_run["loss"][-1] != one_run["loss"][0]  # it trained
        assert_same_weights(Path(one_run["final"]), Path(two_run["final"]))
    assert two["runs"]["cached_lora"]["summary"]["reference_cache_hit"] is False


# -- OREAL (online RL: policy, token reward model and reference, each its own DeepSpeed engine) ---------------

OREAL = ["recipe=oreal", "model=tiny", "start.sft=true", "model.tiny.hidden_size=32", "model.tiny.num_layers=1", "model.tiny.num_heads=2",
         "model.tiny.intermediate_size=64", "data.arith.train.size=256", "data.arith.train.min_steps=1",
         "data.arith.train.max_steps=1", "data.arith.train.max_start=4", "data.arith.train.max_operand=3",
         "data.arith.test.size=8", "data.arith.hard.size=8", "start.train.max_steps=40",
         "start.train.global_batch_size=16", "start.train.micro_batch_size=8", "online.prompts_per_step=8",
         "online.samples_per_prompt=4", "oreal.actor_freeze_steps=1", "online.policy.warmup=1",
         "online.rebalance.max_prompts=16", "online.rebalance.samples=4", "online.rebalance.repeats=[2,1,1,1,0]",
         "generation.max_new_tokens=48", "train.micro_batch_size=2", "train.global_batch_size=4", "online.steps=3",
         "eval.before=false"]


# GRPO with a KL term, so its frozen reference runs under ZeRO-2 too.
GRPO = ["recipe=grpo", *[a for a in OREAL if not a.startswith(("recipe=", "oreal."))], "online.kl_coef=0.01"]


@pytest.mark.parametrize("method,args", [("oreal", OREAL), ("grpo", GRPO)])
def test_online_rl_under_zero2_matches_one_process(method, args, tmp_path):
    run(cli(*args, f"output_root={tmp_path / 'one'}"))
    run(torchrun("-m", "reasontrain.cli", *args, "distributed=zero2", f"output_root={tmp_path / 'two'}"))
    one, two = (tmp_path / name / method / "seed0" for name in ("one", "two"))
    rows = [[json.loads(line) for line in next(d.glob(f"{method}-*/metrics.jsonl")).read_text().splitlines()]
            for d in (one, two)]
    assert len(rows[0]) == len(rows[1]) == 3
    for a, b in zip(*rows):
        assert a["kept"] == b["kept"] and a["pass_rate"] == b["pass_rate"]  # same samples, same verdicts
        for key in ("rm/loss", "loss/policy", "loss/positive", "loss/negative", "loss/pg", "kl"):
            assert (key in a) == (key in b)
            if key in a:
                assert abs(a[key] - b[key]) <= LOSS_TOL, (key, a[key], b[key])
    assert any("loss/policy" in r for r in rows[0])
    assert_same_weights(one / "final", two / "final")


# -- failures ------------------------------------------------------------------------------------------------

def test_a_crash_on_one_rank_ends_the_job_with_its_error(tmp_path):
    """Rank 1 fails as the training stage starts while rank 0 enters training and waits on it: torchrun stops
    rank 0, the job exits non-zero with rank 1's error, and the stage is not marked done."""
    start = time.time()
    proc = run(torchrun("-m", "reasontrain.cli", *SFT, f"output_root={tmp_path}"), check=False, timeout=300,
               env={**ENV, "REASONTRAIN_FAIL_STAGE": "masked_thought:1"})
    assert proc.returncode != 0
    assert time.time() - start < 240
    out = proc.stdout + proc.stderr
    assert "injected failure in stage masked_thought on rank 1" in out
    assert "rank      : 1" in out  # torchrun's failure summary names the rank that failed first
    run_dir = tmp_path / "masked_thought" / "seed0"
    stage = next(run_dir.glob("masked_thought-*"))
    assert not (stage / "stage.json").exists() and not (stage / "final").exists()
    assert (next(run_dir.glob("data-*")) / "stage.json").exists()  # stages every rank finished stay done


# -- the KV cache in saved checkpoints (issue #15) --------------------------------------------------------------

def test_a_trained_final_has_the_kv_cache_on(sft_single):
    """Training turns the cache off; the saved final/ turns it back on in both files (the ZeRO-3 gathered save
    goes through the same helper: tests/test_kv_cache.py)."""
    for name in ("config.json", "generation_config.json"):
        assert json.loads((sft_single / "final" / name).read_text())["use_cache"] is True, name
