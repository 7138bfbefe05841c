"""Run recipes over several seeds and print greedy pass@1 per split as mean ± std (and each seed).

    python scripts/seed_sweep.py --recipes sft masked_thought --seeds 0 1 2 [-- extra overrides]
    python scripts/seed_sweep.py --recipes cdpo "cdpo preference.loss_mode=per_position" \
        "cdpo cdpo.token_weights=none" rft --seeds 0 1 2 -- model.path=<a trained start> start.sft=false

A recipe entry may carry its own overrides after the name (quote it); the whole entry labels its row. `{seed}` in
any override becomes the run's seed, e.g. `model.path=outputs/sft/seed{seed}/final start.sft=false` starts every
seed from that seed's SFT model, and `hydra.run.dir=outputs/pref/seed{seed}` lets recipes that share stages
(dpo and rise: sampling, grading, full pairs) reuse them. Runs with a
starting-model evaluation add a `start` row (seeds whose start differs are averaged like any row); cDPO runs add
the share of rejected solutions whose top-weighted token is at or right after the first wrong number.
Each run is an ordinary `reasontrain` command, so finished runs are reused when the sweep is repeated.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", nargs="+", default=["sft", "masked_thought"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--output-root", default="outputs")
    ap.add_argument("--out", default=None, help="write the summary as JSON here")
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    args = ap.parse_args()

    results: dict = {}
    starts: dict = {}
    for recipe in args.recipes:
        name, *own = recipe.split()
        for seed in args.seeds:
            start = time.time()
            extra = [o.replace("{seed}", str(seed)) for o in (*args.overrides, *own)]
            cmd = [sys.executable, "-m", "reasontrain.cli", f"recipe={name}", f"seed={seed}",
                   f"output_root={args.output_root}", *extra]
            print("$", " ".join(cmd[2:]), flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{recipe} seed {seed} failed:\n{proc.stderr[-2000:]}")
            run_dir = Path(proc.stdout.split("outputs: ")[1].split()[0])
            metrics = json.loads((run_dir / "metrics.json").read_text())
            results.setdefault(recipe, {})[seed] = {
                split: m["pass@1"] for split, m in metrics["after"].items()} | {
                "wall_seconds": round(time.time() - start, 1)}
            critical = (metrics.get("critical_tokens") or {}).get("top_at_or_right_after_first_wrong_number")
            if critical is not None:
                results[recipe][seed]["critical_share"] = critical
            if metrics.get("before") and seed not in starts:
                starts[seed] = {split: m["pass@1"] for split, m in metrics["before"].items()}
            print(f"  {recipe} seed {seed}: {results[recipe][seed]}", flush=True)

    if starts:
        results = {"start": starts, **results}
    splits = [k for k in next(iter(next(iter(results.values())).values()))
              if k not in ("wall_seconds", "critical_share")]
    print("\n| recipe | " + " | ".join(f"{s} pass@1 (mean ± std)" for s in splits) + " | per seed |")
    print("|---|" + "---|" * len(splits) + "---|")
    summary = {}
    for recipe, per_seed in results.items():
        cells, summary[recipe] = [], {}
        for s in splits:
            vals = [100 * r[s] for r in per_seed.values()]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            summary[recipe][s] = {"mean": statistics.mean(vals), "std": sd, "per_seed": vals}
            cells.append(f"{statistics.mean(vals):.1f} ± {sd:.1f}")
        seeds = "; ".join(f"{seed}: " + "/".join(f"{100 * r[s]:.1f}" for s in splits) for seed, r in per_seed.items())
        shares = [100 * r["critical_share"] for r in per_seed.values() if "critical_share" in r]
        if shares:
            summary[recipe]["critical_share"] = shares
            seeds += f" (top token at/right after the first wrong number: {', '.join(f'{s:.0f}%' for s in shares)})"
        print(f"| {recipe} | " + " | ".join(cells) + f" | {seeds} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"results": results, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
