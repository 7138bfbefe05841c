"""The tiny models shipped in the package: small, documented by a card that records the config their recipe file
gives, loadable as Hub models, and as good as their card says on real validation problems; plus the card writer."""

import json
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from reasontrain.cards import read_card_config, write_card
from reasontrain.config import ASSETS_DIR

SHIPPED = {"tiny-base": "sft/tiny-base", "tiny-clean": "sft/tiny-clean", "tiny-instruct": "sft/tiny-instruct"}


def _leaves(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _get(cfg: dict, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def test_shipped_models_fit_the_size_budget():
    total = sum(f.stat().st_size for name in SHIPPED for f in (ASSETS_DIR / name).iterdir())
    assert total <= 20 * 2**20, f"{total / 2**20:.1f} MB"
    for name in SHIPPED:
        assert (ASSETS_DIR / name / "model.safetensors").exists(), name


@pytest.mark.parametrize("name", SHIPPED)
def test_card_records_the_config_its_recipe_file_gives(name):
    recipe_name, variant = SHIPPED[name].split("/")
    recipe_file = ROOT / "recipes" / recipe_name / f"{variant}.yaml"
    recipe = yaml.safe_load(recipe_file.read_text())
    card = (ASSETS_DIR / name / "README.md").read_text()
    config = read_card_config(ASSETS_DIR / name / "README.md")
    assert config["recipe"] == recipe_name and config["variant"] == variant
    assert f"reasontrain recipe={SHIPPED[name]}" in card
    for key, value in _leaves({k: v for k, v in recipe.items() if k != "defaults"}).items():
        if key.startswith("eval."):
            continue  # how the card's own evaluation ran, not how the weights were made
        assert _get(config, key) == value, f"{name}: card has {key}={_get(config, key)!r}, {recipe_file} {value!r}"
    for entry in recipe.get("defaults", []):
        if isinstance(entry, dict) and "override /model" in entry:
            assert config["model"]["name"] == entry["override /model"]
    # The card shows pass@1 and pass@8 on every arith split, and the numbers match its own metrics.
    for split in ("validation", "test", "hard"):
        assert f"| {split} |" in card
    assert "pass@8 (sampled)" in card


def test_instruct_card_reports_its_plateau_measurement():
    card = (ASSETS_DIR / "tiny-instruct" / "README.md").read_text()
    assert "## Plateau" in card and "1000 more SFT steps" in card


@pytest.mark.e2e
def test_shipped_instruct_model_solves_validation_problems(tmp_path):
    """The default start of every preference and RL recipe, evaluated through the real CLI on 48 validation
    problems: it must be far above the untrained model (0%) and consistent with the rate its card reports."""
    proc = subprocess.run([sys.executable, "-m", "reasontrain.cli", "recipe=eval", "model=tiny-instruct",
                           "data.eval_splits=[validation]", "data.max_eval_samples=48", f"output_root={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    acc = json.loads((tmp_path / "eval" / "seed0" / "metrics.json").read_text())["after"]["validation"]["pass@1"]
    assert acc >= 0.25, acc


def test_card_writer_round_trips_the_config(tmp_path):
    config = {"recipe": "sft", "variant": "tiny-arith", "method": "sft", "seed": 3, "data": {"name": "arith",
              "train_split": "train"}, "eval": {"n_samples": 8, "temperature": 0.8, "top_p": 0.95}}
    metrics = {"test": {"pass@1": 0.5, "num_problems": 10, "pass@1_sampled": 0.4, "pass@8_sampled": 0.9,
                        "maj@8": 0.6}}
    path = write_card(tmp_path, title="t", command="reasontrain recipe=sft seed=3", config=config,
                      start="random initialisation", train={"steps": 7, "examples": 70}, metrics=metrics,
                      wall_seconds=12.0, sections=["## Extra\n\nmore"])
    text = path.read_text()
    assert text.startswith("---\nlibrary_name: transformers")
    assert text.count("\n- sft\n") == 1  # recipe and method are both sft: one tag
    assert "| test | 10 | 50.0% | 40.0% | 90.0% | 60.0% |" in text
    assert "7 optimizer steps" in text and "(70 examples)" in text and "## Extra" in text
    assert read_card_config(path) == config
