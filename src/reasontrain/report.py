"""The end of every run: `metrics.json`, `report.md`, a plot, and the result table printed to the terminal."""

from __future__ import annotations

import json
from pathlib import Path


def result_table(before: dict | None, after: dict, metric: str = "pass@1") -> str:
    """A markdown table of `metric` per split, before and after training; a column counts the problems left out
    (ungradable gold, over-long prompt) when a split has any, since pass@1 is over the others."""
    skipped = {split: sum(m.get("skipped", {}).values()) for split, m in after.items()}
    extra = any(skipped.values())
    lines = [f"| split | before {metric} | after {metric} | change |" + (" graded / skipped |" if extra else ""),
             "|---|---|---|---|" + ("---|" if extra else "")]
    for split, m in after.items():
        a = m.get(metric)
        b = (before or {}).get(split, {}).get(metric)
        fmt = lambda x: "n/a" if x is None else f"{100 * x:.1f}%"  # noqa: E731
        delta = "n/a" if a is None or b is None else f"{100 * (a - b):+.1f}"
        tail = f" {m.get('num_problems', 'n/a')} / {skipped[split]} |" if extra else ""
        lines.append(f"| {split} | {fmt(b)} | {fmt(a)} | {delta} |{tail}")
    return "\n".join(lines)


def plot_run(path: Path, log_history: list[dict], before: dict | None, after: dict) -> None:
    """Training loss by step (left) and pass@1 before/after per split (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    pts = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    if pts:
        ax1.plot(*zip(*pts), marker=".")
    ax1.set(title="training loss", xlabel="optimizer step", ylabel="loss")
    splits = list(after)
    xs = range(len(splits))
    if before:
        ax2.bar([x - 0.2 for x in xs], [100 * before.get(s, {}).get("pass@1", 0) for s in splits], 0.4,
                label="before")
    ax2.bar([x + (0.2 if before else 0) for x in xs], [100 * after[s].get("pass@1", 0) for s in splits],
            0.4, label="after")
    ax2.set_xticks(list(xs), splits)
    ax2.set(title="greedy pass@1 (%)", ylim=(0, 100))
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(run_dir: Path, recipe: str, config: dict, before: dict | None, after: dict, train: dict | None,
                 log_history: list[dict], wall_seconds: float, sections: list[str] | None = None,
                 extra_metrics: dict | None = None) -> str:
    """Write metrics.json, report.md and plot.png into `run_dir`; return the result table.

    A method adds its own markdown `sections` (before the config) and `extra_metrics` (top-level keys).
    """
    table = result_table(before, after)
    metrics = {"recipe": recipe, "before": before, "after": after, "train": train,
               "wall_seconds": round(wall_seconds, 1), **(extra_metrics or {})}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_run(run_dir / "plot.png", log_history, before, after)
    train_line = ""
    if train:
        unit = "examples" if "examples" in train else "pairs" if "pairs" in train else None
        seen = f" on {train[unit]} {unit}" if unit else ""
        train_line = (f"Training: {train.get('steps')} optimizer steps{seen}, "
                      f"final train loss {train.get('train_loss', float('nan')):.4f}.\n\n")
    (run_dir / "report.md").write_text(
        f"# {recipe}\n\n{table}\n\n{train_line}Wall time {wall_seconds:.0f} s.\n\n![plot](plot.png)\n\n"
        + "".join(s.rstrip() + "\n\n" for s in sections or ()) +
        f"## Config\n\n```json\n{json.dumps(config, indent=2)}\n```\n")
    return table
