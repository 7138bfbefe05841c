"""The GPU check's pieces that run anywhere: the trainer benchmark on a tiny Qwen2 shape on CPU, the script's syntax.

The check itself (`scripts/gpu_check.sh`) needs a GPU; this keeps its Python side from rotting in between.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess

import pytest

from conftest import ROOT

pytestmark = pytest.mark.e2e


def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu_trainers", ROOT / "scripts" / "bench_gpu_trainers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("trainer,peer", [("sft", "TRL SFTTrainer"), ("preference", "TRL DPOTrainer")])
def test_trainer_benchmark_runs_ours_and_trl_on_the_same_batches(trainer, peer, tmp_path):
    out = tmp_path / "result.json"
    report = bench().main(["--trainer", trainer, "--shape", "tiny", "--device", "cpu", "--steps", "2", "--warmup", "1",
                           "--batch", "2", "--prompt-tokens", "24", "--completion-tokens", "40", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    rows = report["rows"]
    assert set(rows) == {peer, next(k for k in rows if k.startswith("reasontrain"))}
    assert rows[peer]["ratio_to_trl"] == 1.0
    assert all(r["tokens_per_second"] > 0 for r in rows.values())


def test_exact_lengths_make_token_counts_exact():
    from reasontrain.models.tiny import build_tokenizer

    tok = build_tokenizer()
    row = bench().build_data(1, 64, 128)[0]
    assert len(tok(row["prompt"], add_special_tokens=False).input_ids) == 64
    assert len(tok(row["chosen"], add_special_tokens=False).input_ids) == 127  # + EOS = 128


def test_gpu_check_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu_check.sh")]).returncode == 0
