"""Generated tokens/s of the HF generation backend against plain batched `model.generate`, in one run.

    python scripts/bench_generation.py [--prompts 64] [--batch 64] [--max-new-tokens 160] [--n 8] [--rounds 2]

Model: the shipped tiny-instruct (src/reasontrain/assets/tiny-instruct). Prompts: arith test problems rendered
with the chat template, as the recipes render them. Four cases: greedy and n-sample at temperature 1.0, each
without and with stop strings. The peer is `model.generate` on the same prompts, batch size and max_new_tokens
with the KV cache on: `do_sample=True` (full distribution: top_k=0, top_p=1) for the sampling cases, its own
`stop_strings` for the stop cases. Tokens are counted the same way for both: the ids each row generated before
it finished (EOS excluded). Each case is timed `--rounds` times, alternating the two, and the best time counts.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

MODEL = Path(__file__).resolve().parents[1] / "src" / "reasontrain" / "assets" / "tiny-instruct"
STOP = ("\n\n", "Q:")  # the few-shot formats' answer ends; cut tiny-instruct's answers rarely, checked every step


def arith_prompts(tokenizer, n: int) -> list[str]:
    from omegaconf import OmegaConf

    from reasontrain.config import DataConfig
    from reasontrain.data.formats import render_prompt
    from reasontrain.data.tasks import arith_splits

    data = OmegaConf.structured(DataConfig())
    data.arith.test.size = n
    return [render_prompt(r, data, tokenizer) for r in arith_splits(data, ("test",))["test"]][:n]


def generated_tokens(ids: list[int], eos: int, pad: int) -> int:
    """Ids before the first EOS or padding (a finished row is padded from then on)."""
    for i, t in enumerate(ids):
        if t in (eos, pad):
            return i
    return len(ids)


def run_ours(model, tokenizer, prompts, params, batch):
    from reasontrain.generation.hf import generate

    out = generate(model, tokenizer, prompts, params, batch_size=batch, progress=False)
    return sum(c.num_tokens for row in out for c in row), [[c.text for c in row] for row in out]


def run_plain(model, tokenizer, prompts, params, batch):
    import torch

    from reasontrain.generation.base import cut_at_stop

    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    tokens, texts = 0, []
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    kwargs = dict(max_new_tokens=params.max_new_tokens, pad_token_id=pad, eos_token_id=eos, use_cache=True,
                  num_return_sequences=params.n)
    if params.greedy:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
    if params.stop:
        kwargs.update(stop_strings=list(params.stop), tokenizer=tokenizer)
    try:
        with torch.no_grad():
            for start in range(0, len(prompts), batch):
                enc = tokenizer(prompts[start:start + batch], return_tensors="pt", padding=True,
                                add_special_tokens=False)
                seqs = model.generate(**enc, **kwargs)[:, enc.input_ids.shape[1]:].tolist()
                for ids in seqs:
                    k = generated_tokens(ids, eos, pad)
                    tokens += k
                    texts.append(cut_at_stop(tokenizer.decode(ids[:k], skip_special_tokens=True), params.stop)[0])
    finally:
        tokenizer.padding_side = side
    return tokens, texts


def timed(fn, *args):
    t0 = time.perf_counter()
    tokens, texts = fn(*args)
    return tokens, time.perf_counter() - t0, texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64, help="prompts per generate call (generation.batch_size)")
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--n", type=int, default=8, help="samples per prompt in the sampling cases")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasontrain.generation.base import SamplingParams

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForCausalLM.from_pretrained(MODEL).eval()
    prompts = arith_prompts(tokenizer, args.prompts)
    cases = {
        "greedy": SamplingParams(max_new_tokens=args.max_new_tokens),
        "greedy + stop": SamplingParams(max_new_tokens=args.max_new_tokens, stop=STOP),
        f"n={args.n}, T=1.0": SamplingParams(n=args.n, temperature=1.0, max_new_tokens=args.max_new_tokens),
        f"n={args.n}, T=1.0 + stop": SamplingParams(n=args.n, temperature=1.0, max_new_tokens=args.max_new_tokens,
                                                    stop=STOP),
    }
    print(f"tiny-instruct, {len(prompts)} arith test prompts, batch {args.batch}, max_new_tokens "
          f"{args.max_new_tokens}, stop {STOP!r}, torch threads {torch.get_num_threads()}, best of {args.rounds}\n")
    rows = []
    for name, params in cases.items():
        best = {"ours": None, "plain": None}
        for _ in range(args.rounds):
            for who, fn in (("ours", run_ours), ("plain", run_plain)):
                tokens, secs, texts = timed(fn, model, tokenizer, prompts, params, args.batch)
                if best[who] is None or secs < best[who][1]:
                    best[who] = (tokens, secs, texts)
        ours, plain = (best[k][0] / best[k][1] for k in ("ours", "plain"))
        same = ""
        if params.greedy:  # greedy must pick the same tokens as plain generate
            flat = [t for row in best["ours"][2] for t in row]
            same = "same" if flat == [t for t in best["plain"][2]] else "DIFFERENT"
        rows.append((name, best["ours"][0], best["plain"][0], ours, plain, ours / plain, same))
    print("| case | tokens (ours / plain) | ours tok/s | plain generate tok/s | ours / plain | greedy texts |")
    print("|---|---|---|---|---|---|")
    for name, t_ours, t_plain, ours, plain, ratio, same in rows:
        print(f"| {name} | {t_ours} / {t_plain} | {ours:,.0f} | {plain:,.0f} | {ratio:.2f}x | {same} |")


if __name__ == "__main__":
    main()
