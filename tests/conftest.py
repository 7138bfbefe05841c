"""Shared fixtures: offline environment, the tiny model and tokenizer, paths to the real data files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

for key, value in {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "WANDB_MODE": "offline",
                   "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "DS_ACCELERATOR": "cpu"}.items():
    os.environ.setdefault(key, value)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tokenizer():
    from reasontrain.models.tiny import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tokenizer):
    from reasontrain.models.tiny import build_model

    return build_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                       max_position_embeddings=256, seed=0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"real benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA
