"""Training speed of the preference trainer against TRL's DPOTrainer on the same tiny model, pairs and batch.

    python scripts/bench_preference.py [--steps 30] [--rounds 3] [--pairs 256] [--batch 8] [--rejected edit|other]

Each round times, one after the other: TRL DPOTrainer (frozen-copy reference), PreferenceTrainer with unit
weights, with real token weights, and with the reference log-probs cached on disk (second use of the cache).
Prints optimizer steps per second (median over rounds) and the ratios to TRL measured in the same run.

The rejected responses are RISE-style edits of the chosen solution (`--rejected edit`, the default: chosen and
rejected share the prompt and the start of the response) or another problem's solution (`--rejected other`, like
a sampled wrong answer: they share only the prompt). The preference trainer computes a shared prefix once.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


def build_pairs(tokenizer, n: int, rejected_kind: str = "edit"):
    import random

    from reasontrain.data.arith import ArithDifficulty, generate
    from reasontrain.data.errors import rule_edit
    from reasontrain.data.pairs import edit_token_weights, tokenize_pair

    rng = random.Random(0)
    strings, tokenized = [], []
    problems = generate(n, 5, ArithDifficulty())
    for i, p in enumerate(problems):
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": p["question"]}], tokenize=False,
                                               add_generation_prompt=True)
        if rejected_kind == "other":
            rejected = problems[(i + 1) % len(problems)]["solution"]
        else:
            edit = rule_edit(p["solution"], rng)
            rejected = edit.text if edit else p["solution"] + " 1"
        strings.append({"prompt": prompt, "chosen": p["solution"], "rejected": rejected})
        row = tokenize_pair(tokenizer, prompt, p["solution"], rejected)
        row["chosen_weights"], row["rejected_weights"] = edit_token_weights(row["chosen_ids"], row["rejected_ids"], 2.0)
        tokenized.append(row)
    return strings, tokenized


def timed(trainer) -> float:
    start = time.perf_counter()
    trainer.train()
    return trainer.state.global_step / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rejected", choices=("edit", "other"), default="edit")
    args = ap.parse_args()

    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from reasontrain.models.tiny import build_model, build_tokenizer
    from reasontrain.trainers.preference import PreferenceTrainer

    torch.manual_seed(0)
    tok = build_tokenizer()
    base = build_model(tok, 128, 4, 4, 512, 512, seed=0)
    strings, tokenized = build_pairs(tok, args.pairs, args.rejected)
    unweighted = [{k: v for k, v in r.items() if not k.endswith("_weights")} for r in tokenized]
    tmp = tempfile.mkdtemp()
    cache = os.path.join(tmp, "ref_cache")

    def config(**kw):
        return DPOConfig(output_dir=tmp, max_steps=args.steps, per_device_train_batch_size=args.batch,
                         report_to=[], use_cpu=True, bf16=False, save_strategy="no", logging_steps=10**6,
                         beta=0.1, learning_rate=1e-5, disable_tqdm=True, **kw)

    runs = {
        "trl DPOTrainer": lambda: DPOTrainer(model=copy.deepcopy(base), ref_model=copy.deepcopy(base), args=config(),
                                             train_dataset=Dataset.from_list(strings), processing_class=tok),
        "ours, weights off": lambda: PreferenceTrainer(model=copy.deepcopy(base), ref_model=copy.deepcopy(base),
                                                       args=config(), train_dataset=Dataset.from_list(unweighted),
                                                       processing_class=tok),
        "ours, weights on": lambda: PreferenceTrainer(model=copy.deepcopy(base), ref_model=copy.deepcopy(base),
                                                      args=config(), train_dataset=Dataset.from_list(tokenized),
                                                      processing_class=tok),
        "ours, weights on, cached reference": lambda: PreferenceTrainer(
            model=copy.deepcopy(base), args=config(precompute_ref_log_probs=True),
            train_dataset=Dataset.from_list(tokenized), processing_class=tok, ref_cache_dir=cache),
    }
    runs["ours, weights on, cached reference"]()  # fill the cache once, outside the timing
    speeds: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(args.rounds):
        for name, make in runs.items():
            speeds[name].append(timed(make()))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in speeds.items()), flush=True)

    peer = statistics.median(speeds["trl DPOTrainer"])
    print(f"\n{args.steps} steps x {args.rounds} rounds, batch {args.batch} pairs, rejected: {args.rejected}, "
          f"tiny Llama (0.8M), CPU threads {torch.get_num_threads()}\n")
    print("| trainer | steps/s (median) | ratio to TRL |\n|---|---|---|")
    for name, values in speeds.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.2f} | {med / peer:.2f} |")


if __name__ == "__main__":
    main()
