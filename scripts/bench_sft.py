"""Training speed of the SFT trainer against a bare PyTorch loop and TRL's SFTTrainer, in one run.

    python scripts/bench_sft.py [--steps 40] [--warmup 5] [--rounds 3] [--examples 512] [--batch 8]

Every trainer trains the shipped tiny-base model (with the Masked Thought `<mask>` token added, so all runs share
one model) on the same arith prompt/completion records, one micro-batch per optimizer step (8 padded examples, or
2 packed rows of 512 tokens, about 6 examples). Per round, for each
layout (padded batches, and packed padding-free rows with `train.packing=true`):
- `bare loop`: forward (the model's own loss), backward, AdamW step, zero_grad, over the very batches our trainer's
  dataloader yields (collated once before timing);
- `trl SFTTrainer`: TRL's trainer with the same SFTConfig;
- `ours`: `ReasonSFTTrainer` as `stages/train_sft.py` builds it, without and with Masked Thought noise.
Steps/s is measured after `--warmup` steps (the fixed cost of `train()` is left out), on the wall clock and on this
process's CPU clock (steadier when other jobs share the cores); the table shows the medians over rounds and the
ratios ours/bare (target >= 1/1.1 = 0.91) and ours/TRL measured in the same run.
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


def make_cfg(args, packing: bool, max_rate: float):
    from omegaconf import OmegaConf

    from reasontrain.config import RootConfig

    cfg = OmegaConf.structured(RootConfig(recipe="sft"))
    cfg.train.max_steps = args.steps
    cfg.train.global_batch_size = cfg.train.micro_batch_size = args.packed_batch if packing else args.batch
    cfg.train.lr = 1e-4
    cfg.train.logging_steps = 10
    cfg.train.save_steps = 10**6
    cfg.train.packing = packing
    cfg.train.max_length = args.max_length
    cfg.masked_thought.max_rate = max_rate
    cfg.masked_thought.ramp_fraction = 0.0  # full rate from the first step: the noise costs its most
    return cfg


class StepClock:
    """A TrainerCallback that notes wall and process CPU time at the end of every optimizer step."""

    def __init__(self):
        from transformers import TrainerCallback

        times = self.times = []

        class _Clock(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                times.append((time.perf_counter(), time.process_time()))

        self.callback = _Clock()


def steps_per_second(times: list[tuple[float, float]], warmup: int) -> tuple[float, float]:
    """(wall, CPU) steps per second after the first `warmup` steps. The CPU clock counts only this process, so it
    is the steadier one on a machine shared with other jobs (every run here is one thread, no dataloader workers)."""
    n = len(times) - warmup
    return tuple(n / (times[-1][i] - times[warmup - 1][i]) for i in (0, 1))


def bare_loop(model, batches, lr: float, warmup: int) -> tuple[float, float]:
    """Forward with the model's own loss, backward, AdamW (the trainer's fused implementation), zero_grad."""
    import torch

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, fused=True)
    times = []
    for batch in batches:
        model(**batch, use_cache=False).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append((time.perf_counter(), time.process_time()))
    return steps_per_second(times, warmup)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--examples", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8, help="examples per step, padded")
    ap.add_argument("--packed-batch", type=int, default=2,
                    help="rows of --max-length tokens per step, packed (2 x 512 holds about 6 examples)")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--only", default="", help="comma-separated run names to time (default: all)")
    args = ap.parse_args()

    import torch
    import transformers
    from trl import SFTTrainer

    from reasontrain.config import asset_path
    from reasontrain.data.arith import ArithDifficulty, generate
    from reasontrain.models.loading import add_mean_initialized_token, load_pretrained
    from reasontrain.stages.train_sft import build_sft_dataset, build_sft_trainer

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    base, tok = load_pretrained(asset_path("tiny-base"))
    mask_id = add_mean_initialized_token(base, tok, "<mask>")
    records = generate(args.examples, 0, ArithDifficulty())
    cfgs = {(p, r): make_cfg(args, p, r) for p in (False, True) for r in (0.0, 0.2)}
    dataset, _ = build_sft_dataset(records, cfgs[False, 0.0], tok)
    tmp = tempfile.mkdtemp()

    def ours(packing: bool, rate: float):
        cfg = cfgs[packing, rate]
        return build_sft_trainer(cfg, copy.deepcopy(base), tok, dataset, tmp, mask_token_id=mask_id)

    def trl(packing: bool):
        trainer = ours(packing, 0.0)  # only for its SFTConfig
        return SFTTrainer(model=copy.deepcopy(base), args=trainer.args, train_dataset=dataset,
                          processing_class=tok)

    # The batches our trainer's dataloader yields for the timed steps, collated once.
    layouts = {}
    for packing in (False, True):
        loader = ours(packing, 0.0).get_train_dataloader()
        batches = []
        while len(batches) < args.steps:
            batches.extend({k: v for k, v in b.items()} for b in loader)
        layouts[packing] = batches[: args.steps]
    tokens = {p: statistics.mean(int((b["labels"] != -100).sum()) for b in bs) for p, bs in layouts.items()}

    def timed(make):
        clock = StepClock()
        trainer = make()
        trainer.add_callback(clock.callback)
        trainer.train()
        assert trainer.state.global_step == args.steps
        return steps_per_second(clock.times, args.warmup)

    runs = {}
    for packing, label in ((False, "padded"), (True, "packed")):
        runs[f"{label}: bare loop"] = (lambda p=packing: bare_loop(copy.deepcopy(base), layouts[p], 1e-4,
                                                                  args.warmup))
        runs[f"{label}: trl SFTTrainer"] = lambda p=packing: timed(lambda: trl(p))
        runs[f"{label}: ours"] = lambda p=packing: timed(lambda: ours(p, 0.0))
        runs[f"{label}: ours, Masked Thought 0.2"] = lambda p=packing: timed(lambda: ours(p, 0.2))
    if args.only:
        keep = args.only.split(",")
        runs = {k: v for k, v in runs.items() if any(s in k for s in keep)}

    speeds: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(args.rounds):
        # Alternate the order, so that a slow spell of the machine does not always hit the same runs.
        for name in names if r % 2 == 0 else names[::-1]:
            speeds[name].append(runs[name]())
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1][0]:.2f}" for k, v in speeds.items()), flush=True)

    print(f"\n{args.steps} steps ({args.warmup} warm-up) x {args.rounds} rounds, micro-batch {args.batch} padded rows or "
          f"{args.packed_batch} packed rows of {args.max_length} tokens, "
          f"tiny-base Llama (0.8M), CPU threads {torch.get_num_threads()}; completion tokens per step: "
          f"padded {tokens[False]:.0f}, packed {tokens[True]:.0f}\n")
    print("| layout | trainer | steps/s wall | steps/s CPU | ours/bare wall | ours/bare CPU | ours/TRL wall "
          "| ours/TRL CPU |\n|---|---|---|---|---|---|---|---|")
    med = {name: [statistics.median(v[i] for v in values) for i in (0, 1)] for name, values in speeds.items()}
    for name, (wall, cpu) in med.items():
        label, trainer = name.split(": ", 1)
        cells = [f"{wall:.2f}", f"{cpu:.2f}"]
        for peer in ("bare loop", "trl SFTTrainer"):
            ref = med.get(f"{label}: {peer}")
            ok = trainer.startswith("ours") and ref
            cells += [f"{wall / ref[0]:.2f}" if ok else "", f"{cpu / ref[1]:.2f}" if ok else ""]
        print(f"| {label} | {trainer} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
