"""The command line: config validation before any work, one-line errors, and multirun."""

import subprocess
import sys
import time

import pytest
from conftest import ROOT

pytestmark = pytest.mark.cli


def run_cli(*args, cwd=None, timeout=120):
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "reasontrain.cli", *args], cwd=cwd or ROOT, capture_output=True,
                          text=True, timeout=timeout)
    return proc, time.time() - start


@pytest.mark.parametrize("override,expected", [
    ("train.lrr=1e-4", "Key 'lrr' not in 'TrainConfig'"),
    ("train.lr=fast", "train.lr"),
    ("masked_thought.noise=blur", "masked_thought.noise"),
    ("model.tiny.num_layers=2.5", "model.tiny.num_layers"),
    ("modle=tiny", "modle"),
    ("rise.editor=rulez", "rise.editor"),
    ("rise.error_types=[swap,swapp]", "rise.error_types"),
])
def test_typos_and_bad_types_fail_before_any_work(override, expected, tmp_path):
    proc, _ = run_cli("recipe=sft", override, f"output_root={tmp_path}")
    assert proc.returncode != 0
    assert expected in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir()), "nothing may run before the config is valid"


def test_unknown_recipe_is_one_clear_line():
    proc, _ = run_cli("recipe=rsie")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown recipe 'rsie'" in lines[0] and "masked_thought" in lines[0]


def test_missing_recipe_and_unknown_variant():
    proc, _ = run_cli()
    assert proc.returncode == 2 and "no recipe given" in proc.stderr
    proc, _ = run_cli("recipe=sft/nope")
    assert proc.returncode == 2 and "has no variant 'nope'" in proc.stderr


def test_missing_data_file_is_one_clear_line(tmp_path):
    proc, _ = run_cli("recipe=sft", "data=gsm8k", f"data.files.train.path={tmp_path}/nope.jsonl",
                      f"output_root={tmp_path}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(f"data.files.train.path does not exist: {tmp_path}/nope.jsonl")
    assert "Traceback" not in proc.stderr


def test_a_batch_size_below_one_fails_at_start_up(tmp_path):
    proc, _ = run_cli("recipe=sft", "train.global_batch_size=0", f"output_root={tmp_path}")
    assert proc.returncode == 2 and "train.global_batch_size=0" in proc.stderr and "at least 1" in proc.stderr


@pytest.mark.parametrize("override", ["train.max_steps=0", "train.epochs=0", "online.steps=0"])
def test_zero_training_steps_fail_at_start_up(override, tmp_path):
    recipe = "recipe=oreal" if override.startswith("online") else "recipe=sft"
    proc, _ = run_cli(recipe, override, f"output_root={tmp_path}")
    assert proc.returncode == 2 and override.split("=")[0] in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not any(tmp_path.rglob("data-*"))


def test_recipe_overlay_and_cli_override_order():
    proc, _ = run_cli("recipe=masked_thought", "masked_thought.max_rate=0.2", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    assert "max_rate: 0.2" in proc.stdout and "noise: mask_token" in proc.stdout
    proc, _ = run_cli("recipe=sft/llama2-7b-gsm8k", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    assert "name: gsm8k" in proc.stdout and "gsm8k/train.jsonl" in proc.stdout and "epochs: 3" in proc.stdout


def test_every_recipe_file_opens_with_its_launch_command():
    for path in (ROOT / "recipes").glob("*/*.yaml"):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# Launch"), path
        assert "reasontrain" in path.read_text().split("\n\n")[0] or "reasontrain.cli" in path.read_text(), path


def test_vllm_backend_without_vllm_is_a_clear_error(tmp_path):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    proc, _ = run_cli("recipe=sft", "generation=vllm", f"output_root={tmp_path}")
    assert proc.returncode == 2 and "generation=vllm needs vLLM" in proc.stderr


def test_importing_the_package_never_imports_vllm():
    code = ("import sys, reasontrain.cli, reasontrain.generation, reasontrain.evaluation, "
            "reasontrain.stages.train_sft; assert 'vllm' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_rewrite_keeps_flags_before_all_overrides():
    from reasontrain.cli import rewrite_argv

    out = rewrite_argv(["train.lr=1", "-m", "recipe=sft", "seed=2", "--cfg", "job"])
    assert out[:3] == ["-m", "--cfg", "job"]
    assert out[3:6] == ["+recipes/sft@_global_=tiny-arith", "recipe=sft", "variant=tiny-arith"]
    assert out[-2:] == ["train.lr=1", "seed=2"]


def test_every_recipe_composes_into_the_typed_schema(monkeypatch):
    """Each overlay loads against the dataclass schema (a typo or a wrong type in any recipe file fails here), and
    every batch it trains with can be shared by 2 processes (`torchrun --nproc_per_node 2` runs it as is)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from reasontrain.cli import CONFIG_DIR, available_recipes, rewrite_argv
    from reasontrain.config import register_configs
    from reasontrain.methods.checks import check_training

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for name, variants in available_recipes().items():
            for variant in variants:
                overrides = rewrite_argv([f"recipe={name}/{variant}"])
                cfg = compose(config_name="config", overrides=overrides)
                resolved = OmegaConf.to_container(cfg, resolve=True)
                assert resolved["recipe"] == name and resolved["variant"] == variant
                monkeypatch.setenv("WORLD_SIZE", "2")
                for key in ("train", "start.train", "cdpo.sft_train"):
                    check_training(OmegaConf.select(cfg, key), key)
                monkeypatch.delenv("WORLD_SIZE")


def resolved_config(*args) -> dict:
    import yaml

    proc, _ = run_cli(*args, "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def value(cfg: dict, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def test_rise_paper_overlays_carry_the_released_hyperparameters():
    # Checked key by key: a substring such as "lr: 5.0e-07" would also be satisfied by online.policy.lr.
    cfg = resolved_config("recipe=rise/qwen2-7b-instruct")
    expected = {"preference.beta": 0.4, "train.lr": 5e-7, "train.epochs": 8.0, "train.global_batch_size": 128,
                "train.warmup": 0.1, "train.lr_scheduler": "cosine", "distributed.name": "zero3",
                "data.files.train.path": "xinlai/Math-Step-DPO-10K", "rise.editor": "self",
                "rise.edits_per_question": 1, "sample.temperature": 0.2}
    assert {k: value(cfg, k) for k in expected} == expected
    llama = resolved_config("recipe=rise/llama-3.1-8b-instruct")
    assert value(llama, "rise.edits_per_question") == 3 and "Llama-3.1-8B" in value(llama, "model.path")


def test_help_lists_every_recipe_with_its_launch_command_then_the_groups():
    from reasontrain.cli import DEFAULT_VARIANT, available_recipes

    proc, _ = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for name, variants in available_recipes().items():
        for variant in variants:
            label = name if variant == DEFAULT_VARIANT else f"{name}/{variant}"
            line = next((l for l in out.splitlines() if l.split()[:1] == [label]), None)
            assert line is not None and len(line.split()) > 2, f"{label} not listed with a description"
            assert f"recipe={label}" in out, f"no launch command for {label}"
    assert "recipe: ???" not in out
    assert out.index("Recipes") < out.index("== Config groups") and "model: " in out and "distributed: " in out


def test_the_card_command_is_the_users_command_line_back():
    from reasontrain.cli import command_from_overrides, rewrite_argv

    assert command_from_overrides(rewrite_argv(["recipe=sft/tiny-base", "train.lr=1e-3", "data.eval_splits=[a,b]"])) \
        == "reasontrain recipe=sft/tiny-base train.lr=1e-3 'data.eval_splits=[a,b]'"
    assert command_from_overrides(rewrite_argv(["recipe=dpo", "seed=2"]), world_size=2) == \
        "torchrun --nproc_per_node 2 -m reasontrain.cli recipe=dpo seed=2"
