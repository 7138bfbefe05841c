"""Stage keys come from what a stage reads, inputs by content: a changed model or data file re-runs what depends on
it, an unchanged one is reused, and finished stages are found across recipes (reasontrain.stages.fingerprint)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from reasontrain.stages.base import run_stage, stage_key, stage_key_from
from reasontrain.stages.fingerprint import fingerprint


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REASONTRAIN_CACHE", str(tmp_path / "cache"))


def test_a_file_is_keyed_by_its_content_not_its_name(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"x": 1}\n')
    b.write_text('{"x": 1}\n')
    assert fingerprint(a) == fingerprint(b)
    before = fingerprint(a)
    a.write_text('{"x": 2}\n')
    assert fingerprint(a) != before
    assert fingerprint("Qwen/Qwen2-7B-Instruct") == "name:Qwen/Qwen2-7B-Instruct"


def test_a_model_folder_is_keyed_by_every_file_but_hidden_ones(tmp_path, tokenizer, tiny_model):
    tiny_model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    first = fingerprint(tmp_path / "m")
    (tmp_path / "m" / ".lock").write_text("pid 1")
    assert fingerprint(tmp_path / "m") == first
    import torch

    with torch.no_grad():
        next(tiny_model.parameters()).add_(1e-3)
    tiny_model.save_pretrained(tmp_path / "m")  # same names, shapes and sizes: only the bytes differ
    assert fingerprint(tmp_path / "m") != first


def test_outputs_of_a_finished_stage_are_named_by_the_stage(tmp_path):
    folder, _ = run_stage(tmp_path, "demo", {"k": 1}, lambda f: (f / "rows.jsonl").write_text("{}\n") and None)
    assert fingerprint(folder / "rows.jsonl") == f"stage:{folder.name}/rows.jsonl"
    assert fingerprint(folder) == f"stage:{folder.name}"


def test_the_key_holds_the_values_a_stage_reads():
    from omegaconf import OmegaConf

    from reasontrain.config import RootConfig

    cfg = OmegaConf.structured(RootConfig)
    base = stage_key_from(cfg, reads=("sample", "generation", "model.dtype", "seed"))
    for override in ("generation.stop=[STOP]", "generation.backend=vllm", "model.dtype=bfloat16", "sample.n=3"):
        other = OmegaConf.merge(cfg, OmegaConf.from_dotlist([override]))
        assert stage_key(stage_key_from(other, reads=("sample", "generation", "model.dtype", "seed"))) \
            != stage_key(base), override


def cli(*args, env=None):
    proc = subprocess.run([sys.executable, "-m", "reasontrain.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.e2e
def test_replacing_the_model_or_editing_the_data_reruns_what_depends_on_it(tmp_path, tokenizer, tiny_model):
    env = {**os.environ, "REASONTRAIN_CACHE": str(tmp_path / "cache")}
    model = tmp_path / "model"
    tiny_model.save_pretrained(model)
    tokenizer.save_pretrained(model)
    data = tmp_path / "test.jsonl"
    rows = [json.loads(line) for line in (ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl").open()][:4]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["recipe=eval", f"model.path={model}", "data=gsm8k", f"data.files.test.path={data}",
            "generation.max_new_tokens=4", f"output_root={tmp_path / 'out'}"]
    cli(*args, env=env)
    again = cli(*args, env=env)
    assert "stage data: reusing" in again and "stage eval-model: reusing" in again

    import torch
    from transformers import AutoModelForCausalLM

    replaced = AutoModelForCausalLM.from_pretrained(model)
    with torch.no_grad():
        next(replaced.parameters()).add_(1e-2)
    replaced.save_pretrained(model)
    out = cli(*args, env=env)
    assert "stage data: reusing" in out and "stage eval-model: running" in out

    data.write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    out = cli(*args, env=env)
    assert "stage data: running" in out and "stage eval-model: running" in out
    metrics = json.loads((tmp_path / "out" / "eval" / "seed0" / "metrics.json").read_text())
    assert metrics["after"]["test"]["num_problems"] == 3


@pytest.mark.e2e
def test_rise_after_dpo_reuses_the_samples_and_grades_dpo_computed(tmp_path):
    from test_recipes_e2e import DPO_SMALL

    cli("recipe=dpo", *DPO_SMALL, f"output_root={tmp_path}")
    out = cli("recipe=rise", *DPO_SMALL, f"output_root={tmp_path}")
    assert "stage sample: reusing" in out and "computed by another run" in out
    rise, dpo = tmp_path / "rise" / "seed0", tmp_path / "dpo" / "seed0"
    for stage in ("data", "sample", "grade", "eval-start"):
        link = next(rise.glob(f"{stage}-*"))
        assert link.is_symlink() and link.resolve() == next(dpo.glob(f"{stage}-*")).resolve()
    assert not next(rise.glob("rise-*")).is_symlink()  # its own training ran
