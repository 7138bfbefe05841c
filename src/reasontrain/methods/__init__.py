"""Methods: each module reads as its paper's pipeline (`run`) and says which values it cannot take (`validate`).

`METHODS` maps the config's `method` to its module; `validate` and `run` dispatch on it.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from reasontrain.config import Method
from reasontrain.methods import cdpo, dpo, evaluate, grpo, oreal, rft, rise, rloo, sft
from reasontrain.methods.checks import check_common

METHODS: dict[Method, ModuleType] = {
    Method.sft: sft, Method.dpo: dpo, Method.rise: rise, Method.cdpo: cdpo, Method.oreal: oreal,
    Method.grpo: grpo, Method.rloo: rloo, Method.rft: rft, Method.eval: evaluate,
}


def validate(cfg) -> None:
    """Every start-up check of this config, before any model or data loads (raises `ConfigError`)."""
    check_common(cfg)
    METHODS[Method(cfg.method)].validate(cfg)


def run(cfg, run_dir: Path, tracker) -> dict:
    return METHODS[Method(cfg.method)].run(cfg, run_dir, tracker)
