"""Generation backends: prompts in, completions (with finish reasons) out, sharded across ranks."""

from __future__ import annotations

from reasontrain.config import GenerationBackend
from reasontrain.distributed import dist_info, gather_in_order, shard, shard_start
from reasontrain.generation.base import Completion, SamplingParams


def generate(model, tokenizer, prompts: list[str], params: SamplingParams, gen_cfg, desc: str = "generate",
             model_path: str | None = None) -> list[list[Completion]]:
    """Completions for `prompts` with the configured backend. Under torchrun each rank samples its own
    contiguous shard and the results are gathered back in prompt order on every rank. Each sample is seeded by
    its prompt's index in `prompts`, so any number of ranks writes the same completions."""
    rank, world = dist_info()
    local = shard(prompts, rank, world)
    first = shard_start(len(prompts), rank, world)
    backend = GenerationBackend(gen_cfg.backend).value
    if backend == "vllm":
        from reasontrain.generation import vllm_backend

        if model_path is None:
            raise ValueError("generation.backend=vllm needs a saved model folder to load")
        engine = vllm_backend.load_engine(model_path, gen_cfg, params.seed)
        outputs = vllm_backend.generate(engine, local, params, first_index=first)
    else:
        from reasontrain.generation import hf

        outputs = hf.generate(model, tokenizer, local, params, batch_size=gen_cfg.batch_size, desc=desc,
                              progress=rank == 0, first_index=first)
    return gather_in_order(outputs)


__all__ = ["Completion", "SamplingParams", "generate"]
