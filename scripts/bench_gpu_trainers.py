"""Trainer throughput on one GPU: our SFT and preference trainers against TRL's on the same batches, in bf16,
on a randomly initialised model of Qwen2.5-0.5B's shape. `scripts/gpu_check.sh` runs it.

    python scripts/bench_gpu_trainers.py --trainer sft --steps 20
    python scripts/bench_gpu_trainers.py --trainer preference --steps 20
    python scripts/bench_gpu_trainers.py --trainer sft --shape tiny --device cpu --steps 2   # smoke run (tests)

Every example has exactly `--prompt-tokens` + `--completion-tokens` tokens (the character-level tokenizer makes
one token per character), so the tokens per step are known exactly. After `--warmup` steps, `--steps` optimizer
steps are timed (the device synchronised at both ends). Printed per trainer: tokens/s on the GPU (prompt and
response tokens of every sequence trained on; a preference pair counts both sequences), model TFLOP/s and MFU =
6 x parameters x tokens/s over the GPU's dense bf16 peak. The reference model's forward in DPO is not counted as
useful work, so DPO's MFU understates the device's load by about a third.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

# Dense bf16 peak of the GPUs this is likely to meet, in FLOP/s (vendor datasheets, SXM parts).
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12}

SHAPES = {
    # Qwen2.5-0.5B: 24 layers, hidden 896, 14 query / 2 key-value heads, MLP 4864, vocab 151,936, tied embeddings.
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768,
                         rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True),
    # The same architecture at a size that trains in seconds on a CPU (the smoke test).
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                 num_key_value_heads=1, vocab_size=128, max_position_embeddings=1024, rope_theta=10000.0,
                 rms_norm_eps=1e-6, tie_word_embeddings=True),
}


def build_model(shape: str, tokenizer, seed: int = 0):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(**SHAPES[shape], bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, use_cache=False)
    return Qwen2ForCausalLM(config)


def exact_text(rng, length: int) -> str:
    """Arithmetic solution text cut to exactly `length` characters (one token each)."""
    from reasontrain.data.arith import ArithDifficulty, generate

    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < length:
        parts += [p["solution"] for p in generate(8, rng.randrange(10**9), ArithDifficulty())]
    return "\n".join(parts)[:length]


def build_data(n: int, prompt_tokens: int, completion_tokens: int, seed: int = 0) -> list[dict]:
    """`n` rows of prompt / chosen / rejected text, each exactly the given number of characters."""
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt = "Q: " + exact_text(rng, prompt_tokens - 7) + "\nA: "
        rows.append({"prompt": prompt, "chosen": exact_text(rng, completion_tokens - 1),
                     "rejected": exact_text(rng, completion_tokens - 1)})  # + EOS = completion_tokens
    return rows


class _Timer:
    """A TrainerCallback that times the optimizer steps after the warm-up, synchronising the device."""

    def __init__(self, warmup: int, sync):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == warmup:
                    sync()
                    timer.start = time.perf_counter()
                timer.last_step = state.global_step
                sync()
                timer.end = time.perf_counter()

        self.callback = Callback()
        self.start = self.end = None
        self.last_step = 0


def time_trainer(make, warmup: int, sync) -> float:
    """Seconds per optimizer step over the steps after the warm-up."""
    timer = _Timer(warmup, sync)
    trainer = make()
    trainer.add_callback(timer.callback)
    trainer.train()
    steps = timer.last_step - warmup
    if steps <= 0 or timer.start is None:
        raise RuntimeError(f"no timed steps: ran {timer.last_step} with {warmup} warm-up steps")
    return (timer.end - timer.start) / steps


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trainer", choices=["sft", "preference"], required=True)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-0.5b")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8, help="sequences (SFT) or pairs (preference) per step")
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--completion-tokens", type=int, default=768)
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak, if not known")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)

    import torch
    from datasets import Dataset

    from reasontrain.data.pairs import tokenize_pair
    from reasontrain.models.tiny import build_tokenizer

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("bench_gpu_trainers: --device cuda but torch sees no GPU (use --device cpu for a smoke run)")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else next(
        (v for k, v in PEAK_BF16.items() if k in name), None) if cuda else None

    tok = build_tokenizer()
    base = build_model(args.shape, tok)
    params = sum(p.numel() for p in base.parameters())
    total_steps = args.warmup + args.steps
    rows = build_data(args.batch * total_steps, args.prompt_tokens, args.completion_tokens)
    seq = args.prompt_tokens + args.completion_tokens
    common = dict(output_dir=os.path.join("/tmp", f"bench_gpu_{args.trainer}"), max_steps=total_steps,
                  per_device_train_batch_size=args.batch, gradient_accumulation_steps=1, learning_rate=1e-5,
                  lr_scheduler_type="constant", report_to=[], save_strategy="no", logging_steps=10**6,
                  disable_tqdm=True, bf16=cuda, use_cpu=not cuda, max_length=seq + 8, seed=0,
                  dataloader_num_workers=0)
    results: dict[str, float] = {}
    if args.trainer == "sft":
        from trl import SFTConfig, SFTTrainer

        from reasontrain.trainers.sft import ReasonSFTTrainer

        data = Dataset.from_list([{"prompt": r["prompt"], "completion": r["chosen"] + tok.eos_token} for r in rows])
        config = lambda: SFTConfig(**common, completion_only_loss=True, packing=False)  # noqa: E731
        runs = {"TRL SFTTrainer": lambda: SFTTrainer(model=copy.deepcopy(base), args=config(), train_dataset=data,
                                                     processing_class=tok),
                "reasontrain SFT": lambda: ReasonSFTTrainer(model=copy.deepcopy(base), args=config(),
                                                            train_dataset=data, processing_class=tok)}
        tokens_per_step = args.batch * seq
    else:
        from trl import DPOConfig, DPOTrainer

        from reasontrain.trainers.preference import PreferenceTrainer

        strings = Dataset.from_list(rows)
        tokenized = []
        for r in rows:
            pair = tokenize_pair(tok, r["prompt"], r["chosen"], r["rejected"])
            # Token weights on (the cDPO / RISE path): a fixed non-trivial pattern over the rejected tokens.
            pair["chosen_weights"] = [1.0] * len(pair["chosen_ids"])
            pair["rejected_weights"] = [0.5 + (i % 3) * 0.5 for i in range(len(pair["rejected_ids"]))]
            tokenized.append(pair)
        pairs = Dataset.from_list(tokenized)
        config = lambda: DPOConfig(**common, beta=0.1)  # noqa: E731
        runs = {"TRL DPOTrainer": lambda: DPOTrainer(model=copy.deepcopy(base), ref_model=copy.deepcopy(base),
                                                     args=config(), train_dataset=strings, processing_class=tok),
                "reasontrain preference, token weights": lambda: PreferenceTrainer(
                    model=copy.deepcopy(base), ref_model=copy.deepcopy(base), args=config(), train_dataset=pairs,
                    processing_class=tok)}
        tokens_per_step = 2 * args.batch * seq
    for label, make in runs.items():
        results[label] = time_trainer(make, args.warmup, sync)
        if cuda:
            torch.cuda.empty_cache()

    peer = next(iter(results.values()))
    print(f"\n{args.trainer} on {name}: {args.shape} ({params / 1e6:.1f}M parameters, random init), "
          f"{'bf16 autocast' if cuda else 'fp32'}, batch {args.batch} x {seq} tokens, {args.steps} timed steps\n")
    print("| trainer | s/step | tokens/s/GPU | model TFLOP/s | MFU | ratio to TRL |\n|---|---|---|---|---|---|")
    report = {"device": name, "shape": args.shape, "parameters": params, "trainer": args.trainer, "rows": {}}
    for label, sec in results.items():
        tps = tokens_per_step / sec
        flops = 6 * params * tps
        mfu = f"{flops / peak:.1%}" if peak else "n/a"
        print(f"| {label} | {sec:.3f} | {tps:,.0f} | {flops / 1e12:.1f} | {mfu} | {peer / sec:.2f} |")
        report["rows"][label] = {"seconds_per_step": sec, "tokens_per_second": tps,
                                 "mfu": flops / peak if peak else None, "ratio_to_trl": peer / sec}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
