"""The table of a Hydra multirun sweep, scored on the validation split (the split tuning choices are made on).

    reasontrain -m recipe=dpo train.lr=1e-5,3e-5,1e-4 preference.beta=0.1,0.3 data.eval_splits=[validation]
    python scripts/sweep_table.py outputs/dpo/multirun-seed0 [--split validation] [--out sweep.md]

One row per job: the overrides it swept, greedy pass@1 before and after on the split, the change, and the run's
wall time; rows sorted best first. Jobs that did not finish (no metrics.json) are listed as such, never dropped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def swept_overrides(job_dir: Path) -> dict[str, str]:
    """key=value overrides of one job that vary across the sweep (read from Hydra's .hydra/overrides.yaml)."""
    import yaml

    items = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    return dict(item.split("=", 1) for item in items if "=" in item and not item.startswith(("+recipes", "hydra.")))


def sweep_rows(sweep_dir: Path, split: str) -> list[dict]:
    jobs = sorted((d for d in Path(sweep_dir).iterdir() if (d / ".hydra").is_dir()), key=lambda d: d.name)
    if not jobs:
        raise SystemExit(f"{sweep_dir}: no Hydra job folders (is this a multirun folder?)")
    overrides = {d.name: swept_overrides(d) for d in jobs}
    varying = sorted({k for o in overrides.values() for k in o
                      if len({oo.get(k) for oo in overrides.values()}) > 1})
    rows = []
    for d in jobs:
        row = {"job": d.name, **{k: overrides[d.name].get(k, "") for k in varying}}
        metrics_file = d / "metrics.json"
        if metrics_file.exists():
            m = json.loads(metrics_file.read_text())
            if split not in m["after"]:
                raise SystemExit(f"{d}: split {split!r} was not evaluated (have {sorted(m['after'])})")
            row["after"] = 100 * m["after"][split]["pass@1"]
            if m.get("before") and split in m["before"]:
                row["before"] = 100 * m["before"][split]["pass@1"]
            row["wall_seconds"] = m.get("wall_seconds")
        rows.append(row)
    rows.sort(key=lambda r: -r.get("after", -1.0))
    return rows, varying


def markdown(rows: list[dict], varying: list[str], split: str) -> str:
    head = ["job", *varying, f"{split} before", f"{split} after", "change", "wall s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "after" not in r:
            cells = [r["job"], *[r[k] for k in varying], "not finished", "", "", ""]
        else:
            before = r.get("before")
            cells = [r["job"], *[r[k] for k in varying], "" if before is None else f"{before:.1f}",
                     f"{r['after']:.1f}", "" if before is None else f"{r['after'] - before:+.1f}",
                     f"{r['wall_seconds']:.0f}" if r.get("wall_seconds") else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep_dirs", nargs="+", type=Path)
    ap.add_argument("--split", default="validation")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    tables = []
    for d in args.sweep_dirs:
        rows, varying = sweep_rows(d, args.split)
        tables.append(f"`{d}`\n\n" + markdown(rows, varying, args.split))
    text = "\n\n".join(tables)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
