"""Both recipes end to end on a very small budget, through the real CLI: train -> evaluate -> report, a final
model loadable with from_pretrained, finished stages reused on a second run, and wandb offline tracking."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT

SMALL = [
    "model=tiny", "model.tiny.hidden_size=32", "model.tiny.num_layers=1", "model.tiny.num_heads=2",
    "model.tiny.intermediate_size=64",
    "data.arith.train.size=64", "data.arith.test.size=8", "data.arith.hard.size=8",
    "train.max_steps=4", "train.global_batch_size=8", "train.micro_batch_size=4", "train.logging_steps=1",
    "generation.max_new_tokens=24",
]


def reasontrain(*args, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "reasontrain.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.e2e
@pytest.mark.parametrize("recipe", ["sft", "masked_thought"])
def test_recipe_runs_end_to_end_and_reuses_stages(recipe, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    proc = reasontrain(f"recipe={recipe}", *SMALL, f"output_root={tmp_path}", "tracking=wandb")
    run_dir = tmp_path / recipe / "seed0"
    assert f"outputs: {run_dir}" in proc.stdout
    assert "| test |" in proc.stdout and "| hard |" in proc.stdout

    metrics = json.loads((run_dir / "metrics.json").read_text())
    for split in ("test", "hard"):
        for when in ("before", "after"):
            assert 0.0 <= metrics[when][split]["pass@1"] <= 1.0
            assert metrics[when][split]["num_problems"] == 8
    assert metrics["train"]["steps"] == 4
    assert (run_dir / "report.md").read_text().startswith(f"# {recipe}")
    assert (run_dir / "plot.png").stat().st_size > 1000

    preds = [json.loads(line) for line in (next(run_dir.glob("eval-final-*")) / "test.predictions.jsonl").open()]
    assert len(preds) == 8
    assert {"prompt", "completion", "predicted", "correct", "reason", "finish_reason"} <= set(preds[0])

    card = (run_dir / "final" / "README.md").read_text()
    assert f"recipe={recipe}" in card and "## Evaluation" in card and "| test | 8 |" in card
    AutoTokenizer.from_pretrained(run_dir / "final")
    AutoModelForCausalLM.from_pretrained(run_dir / "final")
    history = json.loads(next(run_dir.glob(f"{recipe}-*/log_history.json")).read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 4
    mask_rates = [h.get("mask_rate", 0.0) for h in history if "loss" in h]
    if recipe == "masked_thought":
        assert mask_rates[0] == 0.0 and 0 < mask_rates[1] < mask_rates[-1] <= 0.4
    else:
        assert not any(mask_rates)

    # wandb ran offline inside the run folder and holds the run.
    assert list((run_dir / "wandb").glob("offline-run-*"))

    # The same command again reuses every finished stage.
    again = reasontrain(f"recipe={recipe}", *SMALL, f"output_root={tmp_path}")
    for stage in ("data", "init", "eval-start", recipe, "eval-final"):
        assert f"stage {stage}: reusing" in again.stderr + again.stdout
    assert json.loads((run_dir / "metrics.json").read_text())["after"] == metrics["after"]


@pytest.mark.e2e
def test_evaluate_a_checkpoint_with_pass_at_k(tmp_path, tokenizer, tiny_model):
    ckpt = tmp_path / "ckpt"
    tokenizer.save_pretrained(ckpt)
    tiny_model.save_pretrained(ckpt)
    proc = reasontrain("recipe=eval", f"model.path={ckpt}", "data.arith.test.size=6", "data.arith.hard.size=6",
                       "eval.n_samples=4", "eval.k=[1,2,4]", "generation.max_new_tokens=16",
                       f"output_root={tmp_path}/out")
    metrics = json.loads((tmp_path / "out" / "eval" / "seed0" / "metrics.json").read_text())["after"]
    for split in ("test", "hard"):
        m = metrics[split]
        assert {"pass@1", "pass@1_sampled", "pass@2_sampled", "pass@4_sampled", "maj@4"} <= set(m)
        assert m["pass@1_sampled"] <= m["pass@2_sampled"] <= m["pass@4_sampled"]
    assert "outputs:" in proc.stdout


@pytest.mark.e2e
def test_multirun_sweeps_a_training_value(tmp_path):
    proc = reasontrain("-m", "recipe=sft", *SMALL, "train.max_steps=2", "eval.before=false",
                       "train.lr=1e-4,3e-4", f"output_root={tmp_path}")
    jobs = sorted((tmp_path / "sft" / "multirun-seed0").iterdir())
    jobs = [j for j in jobs if j.is_dir() and (j / "metrics.json").exists()]
    assert len(jobs) == 2, proc.stdout
    import yaml

    lrs = sorted(float(o.split("=")[1]) for j in jobs
                 for o in yaml.safe_load((j / ".hydra" / "overrides.yaml").read_text()) if o.startswith("train.lr="))
    assert lrs == [1e-4, 3e-4]


@pytest.mark.e2e
def test_sweep_jobs_share_stages_through_stage_dir_and_the_table_reads_them(tmp_path):
    """A multirun over the DPO lr with one `stage_dir`: the second job reuses the first one's sampling, grading and
    pairs; each job still has its own metrics, final model and card; scripts/sweep_table.py ranks them on
    validation."""
    stages = tmp_path / "stages"
    proc = reasontrain("-m", "recipe=dpo", *DPO_SMALL, "data.arith.validation.size=8",
                       "data.eval_splits=[validation]", "train.lr=1e-4,3e-4", f"stage_dir={stages}",
                       f"output_root={tmp_path}")
    assert proc.stdout.count("stage sample: reusing") + proc.stderr.count("stage sample: reusing") == 1
    assert len(list(stages.glob("sample-*"))) == 1 and len(list(stages.glob("dpo-*"))) == 2
    sweep = tmp_path / "dpo" / "multirun-seed0"
    for job in ("0", "1"):
        assert (sweep / job / "metrics.json").exists() and (sweep / job / "final" / "README.md").exists()
        assert "validation" in json.loads((sweep / job / "metrics.json").read_text())["after"]
    table = subprocess.run([sys.executable, str(ROOT / "scripts" / "sweep_table.py"), str(sweep)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr
    assert "| job | train.lr | validation before | validation after |" in table.stdout
    assert table.stdout.count("\n| 0 |") + table.stdout.count("\n| 1 |") == 2


DPO_SMALL = [o for o in SMALL if not o.startswith(("train.", "generation.", "data.arith.train"))] + ["data.arith.train.size=128"] + [
    "start.sft=true", "start.train.max_steps=6", "start.train.global_batch_size=8",
    "start.train.micro_batch_size=8", "start.train.lr=3e-3", "sample.max_questions=32", "sample.n=8", "sample.temperature=1.0",
    "train.max_steps=2", "train.global_batch_size=4", "train.micro_batch_size=2", "train.logging_steps=1",
    "generation.max_new_tokens=40",
]


@pytest.mark.e2e
def test_dpo_recipe_end_to_end_with_reference_cache(tmp_path):
    reasontrain("recipe=dpo", *DPO_SMALL, f"output_root={tmp_path}")
    run_dir = tmp_path / "dpo" / "seed0"
    graded = [json.loads(line) for line in next(run_dir.glob("grade-*/graded.jsonl")).open()]
    assert len(graded) == 32 and all(len(r["correct"]) == 8 for r in graded)
    pairs_summary = json.loads(next(run_dir.glob("pairs-*/stage.json")).read_text())["result"]
    dpo_summary = json.loads(next(run_dir.glob("dpo-*/stage.json")).read_text())["result"]
    assert pairs_summary["pairs"] == dpo_summary["pairs"] >= 1, (pairs_summary, dpo_summary)
    assert sum(pairs_summary["skipped"].values()) + pairs_summary["pairs"] == 32
    assert dpo_summary["reference_cache_hit"] is False and dpo_summary["steps"] == 2
    assert list((tmp_path / ".ref_cache").glob("*.parquet"))
    # A new training setting over the same pairs reuses the cached reference log-probs.
    reasontrain("recipe=dpo", *DPO_SMALL, "train.lr=5e-5", f"output_root={tmp_path}")
    summaries = [json.loads(p.read_text())["result"] for p in run_dir.glob("dpo-*/stage.json")]
    assert sorted(s["reference_cache_hit"] for s in summaries) == [False, True]


@pytest.mark.e2e
@pytest.mark.parametrize("data,groups", [("gsm8k", set()), ("math500", {"by_subject", "by_level"})])
def test_evaluate_on_real_benchmark_files(data, groups, tmp_path, tokenizer, tiny_model, shared_data):
    ckpt = tmp_path / "ckpt"
    tokenizer.save_pretrained(ckpt)
    tiny_model.save_pretrained(ckpt)
    reasontrain("recipe=eval", f"model.path={ckpt}", f"data={data}", "data.max_eval_samples=5",
                "generation.max_new_tokens=8", f"output_root={tmp_path}/out")
    run_dir = tmp_path / "out" / "eval" / "seed0"
    m = json.loads((run_dir / "metrics.json").read_text())["after"]["test"]
    assert m["num_problems"] == 5 and groups <= set(m)
    rows = [json.loads(line) for line in next(run_dir.glob("eval-model-*/test.predictions.jsonl")).open()]
    assert len(rows) == 5 and all(r["reason"] in ("wrong", "no_answer", "correct") for r in rows)


@pytest.mark.e2e
def test_rise_recipe_end_to_end_reports_its_pairs(tmp_path):
    reasontrain("recipe=rise", *DPO_SMALL, f"output_root={tmp_path}")
    run_dir = tmp_path / "rise" / "seed0"
    mix = json.loads(next(run_dir.glob("mix-*/stage.json")).read_text())["result"]
    rise = json.loads(next(run_dir.glob("rise-*/stage.json")).read_text())["result"]
    # A few optimizer steps leave the policy writing noise, so its lucky "correct" samples rarely have steps to
    # edit (tests/test_rise_edits.py covers the edits on real solutions); the wiring is what is checked here.
    assert rise["pairs"] == mix["full"] + mix["edit"] >= 1, (mix, rise)
    stats = json.loads((run_dir / "metrics.json").read_text())["pairs"]["edit_stats"]
    assert stats["edit_pairs"] == mix["edit"]
    assert f"{mix['full']} full-solution pairs, {mix['edit']} error-injected" in (run_dir / "report.md").read_text()
    assert (run_dir / "final" / "config.json").exists()
