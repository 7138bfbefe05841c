"""vLLM sampling for GPUs. Imported only when `generation.backend=vllm`; install with the `vllm` extra."""

from __future__ import annotations

from reasontrain.generation.base import Completion, SamplingParams, sample_seed


def load_engine(model_path: str, gen_cfg, seed: int, dtype: str = "auto"):
    try:
        from vllm import LLM
    except ImportError as e:
        raise RuntimeError("generation.backend=vllm needs vLLM: pip install -e '.[vllm]'") from e
    return LLM(model=model_path, seed=seed, dtype=dtype, gpu_memory_utilization=gen_cfg.gpu_memory_utilization,
               tensor_parallel_size=gen_cfg.tensor_parallel_size)


def generate(engine, prompts: list[str], params: SamplingParams, first_index: int = 0) -> list[list[Completion]]:
    """As the HF backend: each prompt's samples are seeded by its index in the whole list (`first_index` is
    the index of `prompts[0]`), so sharding does not change them."""
    from vllm import SamplingParams as VSampling

    sps = [VSampling(n=params.n, temperature=params.temperature, top_p=params.top_p if not params.greedy else 1.0,
                     max_tokens=params.max_new_tokens, stop=list(params.stop) or None,
                     seed=sample_seed(params.seed, first_index + i)) for i in range(len(prompts))]
    results = engine.generate(prompts, sps, use_tqdm=True)
    return [[Completion(o.text, "length" if o.finish_reason == "length" else "stop", len(o.token_ids),
                        tuple(o.token_ids)) for o in r.outputs] for r in results]
