"""The typed config: every closed choice is an enum that fails on a bad value naming its key, one optimizer block
type serves every trained model, and each method's `validate` rejects what types cannot."""

import dataclasses
import typing

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from reasontrain.config import ConfigError, OptimizerConfig, RootConfig, TrainConfig
from reasontrain.methods import METHODS, validate


def cfg_for(method: str, **values):
    cfg = OmegaConf.structured(RootConfig(recipe=method))
    cfg.method = method
    for key, value in values.items():
        OmegaConf.update(cfg, key, value)
    return cfg


@pytest.mark.parametrize("key,bad", [
    ("preference.loss_mode", "bogus"), ("oreal.reward_shaping", "ppo"), ("rise.editor", "rulez"),
    ("cdpo.token_weights", "some"), ("train.lr_scheduler", "cosin"), ("data.prompt_format", "chatml"),
    ("model.dtype", "fp8"), ("grpo.loss_type", "ppo"), ("online.policy.lr_scheduler", "step"),
])
def test_a_bad_choice_fails_while_composing_and_names_its_key(key, bad):
    with pytest.raises(ValidationError) as e:
        OmegaConf.merge(OmegaConf.structured(RootConfig), OmegaConf.from_dotlist([f"{key}={bad}"]))
    assert key.split(".")[-1] in str(e.value)


def test_list_entries_are_checked_too():
    for key, bad in (("rise.error_types", "[swap,swapp]"), ("data.grading.extractors", "[boxed,boxd]")):
        with pytest.raises(ValidationError):
            OmegaConf.merge(OmegaConf.structured(RootConfig), OmegaConf.from_dotlist([f"{key}={bad}"]))


def test_no_plain_string_field_is_a_closed_choice():
    """The string fields that remain are open (names, paths, texts); a new choice list must be an enum."""
    open_strings = {"recipe", "variant", "run_name", "output_root", "stage_dir", "name", "path", "system_prompt",
                    "instruction", "prefill", "mask_token", "hub_config", "hub_split", "question_field",
                    "answer_field", "solution_field", "meta_fields", "files", "train_split", "eval_splits", "splits",
                    "breakdown", "stop", "final_markers", "chosen_blacklist", "edit_blacklist", "target_modules",
                    "project", "entity", "group", "tags", "deepspeed_config", "resume"}

    def walk(cls, seen):
        for f in dataclasses.fields(cls):
            stack = [typing.get_type_hints(cls)[f.name]]
            while stack:  # through Optional[...], list[...], dict[...]
                hint = stack.pop()
                if dataclasses.is_dataclass(hint):
                    if hint not in seen:
                        seen.add(hint)
                        yield from walk(hint, seen)
                elif hint is str:
                    yield f.name
                else:
                    stack.extend(typing.get_args(hint))

    assert set(walk(RootConfig, set())) <= open_strings


def test_one_optimizer_block_serves_every_trained_model():
    cfg = OmegaConf.structured(RootConfig)
    for key in ("train", "start.train", "cdpo.sft_train", "online.policy", "oreal.rm"):
        block = OmegaConf.select(cfg, key)
        assert isinstance(OmegaConf.to_object(block), OptimizerConfig), key
    assert issubclass(TrainConfig, OptimizerConfig)


def test_every_method_registers_a_validate_beside_its_runner():
    for method, module in METHODS.items():
        assert callable(module.validate) and callable(module.run), method
        validate(cfg_for(method.value))  # the schema's defaults are valid for every method


@pytest.mark.parametrize("method,values,message", [
    ("sft", {"train.min_lr": 1.0}, "train.min_lr"),
    ("sft", {"train.min_lr": 1e-6, "train.lr_scheduler": "linear"}, "has no end value"),
    ("sft", {"masked_thought.max_rate": 1.0}, "masked_thought.max_rate"),
    ("dpo", {"preference.beta": 0.0}, "preference.beta"),
    ("dpo", {"preference.reference": "lora"}, "model.lora.enabled"),
    ("dpo", {"start.sft": True, "start.train.max_steps": 0}, "start.train.max_steps"),
    ("rise", {"rise.error_types": []}, "rise.error_types"),
    ("cdpo", {"cdpo.gamma": -1.0}, "cdpo.gamma"),
    ("rft", {"rft.max_per_question": 0}, "rft.max_per_question"),
    ("oreal", {"oreal.rm.min_lr": 1.0}, "oreal.rm.min_lr"),
    ("grpo", {"online.samples_per_prompt": 1}, "at least 2"),
    ("rloo", {"online.policy.lr": 0.0}, "online.policy.lr"),
])
def test_each_method_rejects_what_types_cannot(method, values, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        validate(cfg_for(method, **values))


def test_the_cli_has_no_per_method_code_and_nothing_imports_it():
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "reasontrain"
    cli = (src / "cli.py").read_text()
    assert "cfg.method ==" not in cli and "def validate" not in cli
    importers = [p.name for p in src.rglob("*.py") if p.name != "cli.py" and "reasontrain.cli" in p.read_text()]
    assert not importers, importers
