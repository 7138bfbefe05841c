"""Run recipes over several seeds and report greedy pass@1 per split as mean ± std (and each seed).

Free form: any recipes, each optionally with its own overrides (quote the entry; the whole entry labels its row):

    python scripts/seed_sweep.py --recipes sft masked_thought --seeds 0 1 2 [-- extra overrides]
    python scripts/seed_sweep.py --recipes dpo "dpo preference.nll_weight=1.0" rise --seeds 0 1 2

The results table of the README: every recipe against its paper's baseline, on the same start, data and budget,
3 seeds, with a markdown table (`results.md`, gain over the start) and a bar chart with error bars (`results.png`):

    python scripts/seed_sweep.py --suite paper --seeds 0 1 2 --report docs/results

Groups can run apart (two at once, one thread each) and be combined without rerunning anything:

    python scripts/seed_sweep.py --suite paper --groups instruct --out instruct.json
    python scripts/seed_sweep.py --suite paper --groups base --out base.json
    python scripts/seed_sweep.py --merge instruct.json base.json --report docs/results

OREAL against the online-RL baselines every RL user compares with (GRPO, RLOO), on the same start, prompt pool,
rollout budget and trainer:

    python scripts/seed_sweep.py --suite online --seeds 0 1 2 --report docs/results-online

`{seed}` in any override becomes the run's seed. Runs of one group and seed share `stage_dir=<root>/<group>/seed{seed}/
stages`, so recipes that share stages (DPO and RISE: sampling, grading and the full pairs; cDPO and its weights-1 ablation:
the pairs and the contrastive models) reuse them, which is what makes the comparison "on the same pairs". Each run
is an ordinary `reasontrain` command, so a repeated sweep reuses every finished run. Rows with a starting-model
evaluation add a start row per group.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

# The paper comparisons (issue #12): each group shares a start; the first entry after the start is the paper's
# method, then its baselines. Entries are "<recipe> [overrides]"; the label is what the table shows.
PAPER_SUITE = {
    "instruct": {
        "start": "tiny-instruct",
        "runs": [
            ("DPO (RISE's baseline)", "dpo"),
            ("RISE", "rise"),
            # the ablation at its own lr, tuned on validation like cDPO's (1e-5 / 3e-5 / 1e-4: 90.7 / 80.7 / 33.0)
            ("DPO on cDPO's pairs, weights 1", "cdpo cdpo.token_weights=none train.lr=1e-5"),
            ("cDPO", "cdpo"),
            ("RFT (OREAL's baseline)", "rft"),
            ("GRPO", "grpo"),
            ("RLOO", "rloo"),
            # the ablation at its own tuned lr (1e-5 / 3e-5 / 1e-4: 82.0 / 94.0 / 88.7 on validation)
            ("OREAL without the token RM", "oreal oreal.token_rm=false online.policy.lr=3e-5"),
            # diagnosis: the ablation differs in the RM and in keeping all B x K responses; this row keeps OREAL's pairs
            ("OREAL without the token RM, OREAL's pairs",
             "oreal oreal.token_rm=false oreal.select=pairs online.policy.lr=3e-5"),
            ("OREAL", "oreal"),
        ],
    },
    "base": {
        "start": "tiny-base",
        "runs": [
            # both at the epochs chosen on validation (bash scripts/tune_tiny.sh base: 10 / 20 epochs gave SFT
            # 12.0 / 64.7, Masked Thought 28.7 / 80.7); the recipes' own defaults are shorter demos (5 minutes)
            ("SFT (Masked Thought's baseline)", "sft train.epochs=20"),
            ("Masked Thought", "masked_thought train.epochs=20"),
        ],
    },
}
# OREAL next to GRPO and RLOO on the shared online trainer: same start, prompt pool (rebalancing), rollouts and steps.
ONLINE_SUITE = {
    "online": {
        "start": "tiny-instruct",
        "runs": [
            ("OREAL", "oreal"),
            ("GRPO", "grpo"),
            ("RLOO", "rloo"),
        ],
    },
}
SUITES = {"paper": PAPER_SUITE, "online": ONLINE_SUITE}
# Paper orderings the table checks: (better, worse) by label; the start of each group is "start:<group>".
ORDERINGS = [
    ("RISE", "DPO (RISE's baseline)"),
    ("cDPO", "DPO on cDPO's pairs, weights 1"),
    ("OREAL", "RFT (OREAL's baseline)"),
    ("OREAL", "OREAL without the token RM"),
    ("OREAL", "GRPO"),
    ("OREAL", "RLOO"),
    ("Masked Thought", "SFT (Masked Thought's baseline)"),
]
META = ("wall_seconds", "critical_share")
MIN_GAIN = 5.0  # points: the gain over the start a recipe must show (and more than twice the larger seed std)


def run_one(entry: str, seed: int, output_root: str, overrides: list[str]) -> dict:
    """One `reasontrain` run; returns its metrics.json plus the wall time."""
    name, *own = entry.split()
    extra = [o.replace("{seed}", str(seed)) for o in (*overrides, *own)]
    cmd = [sys.executable, "-m", "reasontrain.cli", f"recipe={name}", f"seed={seed}", f"output_root={output_root}",
           *extra]
    print("$", "reasontrain", " ".join(cmd[3:]), flush=True)
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{entry} seed {seed} failed:\n{proc.stderr[-2000:]}")
    run_dir = Path(proc.stdout.split("outputs: ")[1].split()[0])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["wall_seconds_total"] = round(time.time() - start, 1)
    return metrics


def collect(metrics: dict) -> dict:
    row = {split: m["pass@1"] for split, m in metrics["after"].items()}
    row["wall_seconds"] = metrics["wall_seconds_total"]
    critical = (metrics.get("critical_tokens") or {}).get("top_at_or_right_after_first_wrong_number")
    if critical is not None:
        row["critical_share"] = critical
    return row


def summarize(results: dict[str, dict[int, dict]]) -> dict:
    """{label: {split: {mean, std, per_seed}}} in percent."""
    summary = {}
    for label, per_seed in results.items():
        splits = [k for k in next(iter(per_seed.values())) if k not in META]
        summary[label] = {}
        for s in splits:
            vals = [100 * r[s] for r in per_seed.values()]
            summary[label][s] = {"mean": statistics.mean(vals),
                                 "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "per_seed": vals}
        walls = [r["wall_seconds"] for r in per_seed.values() if "wall_seconds" in r]
        if walls:
            summary[label]["wall_seconds"] = statistics.mean(walls)
        shares = [100 * r["critical_share"] for r in per_seed.values() if "critical_share" in r]
        if shares:
            summary[label]["critical_share"] = shares
    return summary


def markdown_table(summary: dict, splits: list[str], starts: dict[str, str] | None = None) -> str:
    """Mean ± std per split; with `starts` ({label: start label}) also the mean gain over the start and whether
    it exceeds twice the larger seed std."""
    head = ["method", *[f"{s} (mean ± std)" for s in splits]]
    if starts:
        head += [f"{s} gain over start" for s in splits]
    head += ["per seed (" + " / ".join(splits) + ")"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, row in summary.items():
        cells = [label] + [f"{row[s]['mean']:.1f} ± {row[s]['std']:.1f}" for s in splits]
        if starts:
            base = summary.get(starts.get(label, ""))
            for s in splits:
                if base is None or label == starts.get(label):
                    cells.append("")
                    continue
                gain = row[s]["mean"] - base[s]["mean"]
                noise = 2 * max(row[s]["std"], base[s]["std"])
                cells.append(f"{gain:+.1f}" + (" ✓" if gain >= MIN_GAIN and gain > noise else ""))
        per_seed = "; ".join("/".join(f"{row[s]['per_seed'][i]:.1f}" for s in splits)
                             for i in range(len(row[splits[0]]["per_seed"])))
        cells.append(per_seed)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def orderings(summary: dict, splits: list[str]) -> list[str]:
    """Each paper ordering, judged on the first split (test); the others are shown beside it. A gap within twice
    the larger seed std is said to be within the noise."""
    out = []
    for better, worse in ORDERINGS:
        if better in summary and worse in summary:
            b, w = summary[better], summary[worse]
            verdicts = [f"{s}: {b[s]['mean'] - w[s]['mean']:+.1f}" for s in splits]
            gap, noise = b[splits[0]]["mean"] - w[splits[0]]["mean"], 2 * max(b[splits[0]]["std"], w[splits[0]]["std"])
            verdict = ("holds" if gap > noise else "holds within the seed noise" if gap > 0 else "does not hold")
            out.append(f"- {better} > {worse}: {verdict} on {splits[0]} ({', '.join(verdicts)}; "
                       f"2 x std {noise:.1f})")
    return out


def bar_chart(path: Path, summary: dict, splits: list[str]) -> None:
    """Grouped bars of mean pass@1 per split with ±1 std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(summary)
    width = 0.8 / len(splits)
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(labels)), 4.5))
    for i, s in enumerate(splits):
        xs = [j + (i - (len(splits) - 1) / 2) * width for j in range(len(labels))]
        ax.bar(xs, [summary[lb][s]["mean"] for lb in labels], width, yerr=[summary[lb][s]["std"] for lb in labels],
               capsize=3, label=s)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="greedy pass@1 (%)", title="mean ± std over seeds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_suite(suite: dict, seeds: list[int], output_root: str, overrides: list[str],
              collect_only: bool = False) -> tuple[dict, dict]:
    """Run every group of `suite`; returns (results by label and seed, {label: its start's label}). With
    `collect_only`, nothing runs: the finished runs' metrics are read back and missing ones are listed."""
    results, starts = {}, {}
    for group, spec in suite.items():
        start_label = f"{spec['start']} (start)"
        for label, entry in spec["runs"]:
            for seed in seeds:
                slug = "".join(c if c.isalnum() else "-" for c in entry).strip("-")
                where = [f"stage_dir={output_root}/{group}/seed{seed}/stages",
                         f"hydra.run.dir={output_root}/{group}/seed{seed}/{slug}"]
                if collect_only:
                    done = Path(output_root) / group / f"seed{seed}" / slug / "metrics.json"
                    if not done.exists():
                        print(f"  {label} seed {seed}: not finished ({done.parent})", flush=True)
                        continue
                    m = json.loads(done.read_text())
                    m["wall_seconds_total"] = m.get("wall_seconds")
                else:
                    m = run_one(entry, seed, output_root, [*overrides, *where])
                results.setdefault(label, {})[seed] = collect(m)
                if m.get("before"):
                    results.setdefault(start_label, {})[seed] = {
                        s: v["pass@1"] for s, v in m["before"].items()}
                print(f"  {label} seed {seed}: {results[label][seed]}", flush=True)
            starts[label] = start_label
        starts[start_label] = start_label
    # Starts first within their group, as the table reads top-down.
    ordered = {}
    for group, spec in suite.items():
        start_label = f"{spec['start']} (start)"
        if start_label in results:
            ordered[start_label] = results[start_label]
        for label, _ in spec["runs"]:
            if label in results:
                ordered[label] = results[label]
    return ordered, starts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", nargs="+", default=None, help="free-form entries (default: sft masked_thought)")
    ap.add_argument("--suite", choices=sorted(SUITES), default=None, help="the README's results tables")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--splits", nargs="+", default=["test", "hard"], help="splits the table shows")
    ap.add_argument("--output-root", default="outputs/results")
    ap.add_argument("--report", default=None, help="write results.md, results.png and results.json here")
    ap.add_argument("--out", default=None, help="write the summary as JSON here")
    ap.add_argument("--groups", nargs="+", default=None, help="only these groups of the suite (e.g. instruct)")
    ap.add_argument("--merge", nargs="+", type=Path, default=None,
                    help="no runs: combine the --out JSON files of earlier sweeps (e.g. one per group) into one table")
    ap.add_argument("--collect", action="store_true",
                    help="no runs: read back the suite's finished runs under --output-root (missing ones are listed)")
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    args = ap.parse_args()

    if args.merge:
        results, starts = {}, {}
        for path in args.merge:
            part = json.loads(path.read_text())
            for label, per_seed in part["results"].items():  # a label may come in parts (seeds run apart)
                results.setdefault(label, {}).update({int(seed): r for seed, r in per_seed.items()})
            starts.update(part.get("starts") or {})
    elif args.suite:
        suite = SUITES[args.suite]
        if args.groups:
            unknown = set(args.groups) - set(suite)
            if unknown:
                sys.exit(f"--groups: {sorted(unknown)} not in suite {args.suite!r} (groups: {sorted(suite)})")
            suite = {g: spec for g, spec in suite.items() if g in args.groups}
        results, starts = run_suite(suite, args.seeds, args.output_root, args.overrides, args.collect)
    else:
        results, starts = {}, None
        for entry in args.recipes or ["sft", "masked_thought"]:
            for seed in args.seeds:
                m = run_one(entry, seed, args.output_root, args.overrides)
                results.setdefault(entry, {})[seed] = collect(m)
                if m.get("before"):
                    results.setdefault("start", {}).setdefault(seed, {s: v["pass@1"] for s, v in m["before"].items()})
                print(f"  {entry} seed {seed}: {results[entry][seed]}", flush=True)
        if "start" in results:
            results = {"start": results.pop("start"), **results}
            starts = {label: "start" for label in results}
    summary = summarize(results)
    table = markdown_table(summary, args.splits, starts)
    checks = orderings(summary, args.splits)
    print("\n" + table + ("\n\n" + "\n".join(checks) if checks else ""))
    if args.report:
        out = Path(args.report)
        out.mkdir(parents=True, exist_ok=True)
        seeds = ", ".join(map(str, args.seeds))
        (out / "results.md").write_text(
            f"Greedy pass@1 (%), seeds {seeds}. ✓: the mean gain over the start is at least {MIN_GAIN:.0f} points and "
            "exceeds twice the larger seed std.\n\n"
            + table + "\n\n" + "\n".join(checks) + "\n")
        bar_chart(out / "results.png", summary, args.splits)
        (out / "results.json").write_text(json.dumps({"results": results, "summary": summary, "starts": starts},
                                                     indent=2))
        print(f"\nwrote {out / 'results.md'}, {out / 'results.png'}")
    if args.out:
        Path(args.out).write_text(json.dumps({"results": results, "summary": summary, "starts": starts}, indent=2))


if __name__ == "__main__":
    main()
