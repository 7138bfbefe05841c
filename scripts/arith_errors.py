"""Where wrong answers on the embedded arithmetic task first go wrong, per split of a finished run.

    python scripts/arith_errors.py outputs/sft/seed0 [outputs/masked_thought/seed0 ...] [--eval final]
    python scripts/arith_errors.py results/instruct/seed*/* --table test   # one row per run name, mean over seeds

Each wrong prediction is compared step by step with the gold solution of its problem (from the run's data stage);
the first step that differs is classified: a wrong start value (step 1's first number), a wrong running value (a
later step's first number), a wrong operation, a wrong operand, a carry slip (an addition crossing ten written one
too low, the teacher's subtle mistake), another arithmetic slip (right inputs, wrong result), a malformed line, too
few or too many steps.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from pathlib import Path

from reasontrain.data.arith import _apply
from reasontrain.data.teacher import is_carry

_STEP = re.compile(r"Step \d+: (\d+) ([-+x]) (\d+) = (\d+)$")


def _steps(text: str) -> list[re.Match | None]:
    return [_STEP.match(line.strip()) for line in text.splitlines() if line.startswith("Step")]


def first_error(prediction: str, gold: str) -> str:
    """The class of the first step where `prediction` departs from the `gold` solution."""
    pred, ref = _steps(prediction), _steps(gold)
    for i, g in enumerate(ref):
        if i >= len(pred):
            return "too few steps"
        p = pred[i]
        if p is None:
            return "malformed step"
        a, op, b, c = p.groups()
        if a != g.group(1):
            return "wrong running value" if i else "wrong start value"
        if op != g.group(2):
            return "wrong operation"
        if b != g.group(3):
            return "wrong operand"
        if int(c) != _apply(op, int(a), int(b)):
            # tiny-instruct's teacher writes additions that cross ten one too low more often than not
            return "carry slip" if is_carry(op, int(a), int(b)) and int(c) == int(a) + int(b) - 1 else "arithmetic slip"
    return "too many steps" if len(pred) > len(ref) else "final line"


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open()]


def _logged_stage(run: Path, name: str) -> list[Path]:
    """The folder the run's log names for stage `name` (runs with `stage_dir` keep their stages elsewhere)."""
    log = run / "cli.log"
    if not log.exists():
        return []
    found = re.findall(rf"stage {re.escape(name)}: (?:running in|reusing) (\S+)", log.read_text(errors="replace"))
    return [Path(found[-1])] if found else []


def summarize(run: Path, label: str = "final") -> dict[str, dict]:
    data_dirs = sorted(run.glob("data-*")) or _logged_stage(run, "data")
    eval_dirs = (sorted(run.glob(f"eval-{label}-*"), key=lambda d: d.stat().st_mtime)
                 or _logged_stage(run, f"eval-{label}"))
    if not data_dirs or not eval_dirs:
        raise SystemExit(f"{run}: no data-* or eval-{label}-* stage folder (is it a finished arith run?)")
    out = {}
    for predictions in sorted(eval_dirs[-1].glob("*.predictions.jsonl")):
        split = predictions.name.split(".")[0]
        gold_path = data_dirs[0] / f"{split}.jsonl"
        if not gold_path.exists():
            continue
        gold = {r["id"]: r for r in _read(gold_path)}
        rows = _read(predictions)
        counts = collections.Counter(first_error(r["completion"], gold[r["id"]]["solution"])
                                     for r in rows if not r["correct"])
        out[split] = {"correct": sum(r["correct"] for r in rows), "total": len(rows), **dict(counts.most_common())}
    return out


def table(runs: list[Path], split: str) -> str:
    """A markdown table of `split`'s first-error classes: one row per run folder name (the runs of several seeds,
    `.../seed0/dpo`, `.../seed1/dpo`, share a name), each cell the mean count over those runs; the first row is the
    start, from the first run that evaluated it."""
    rows: dict[str, list[dict]] = {}
    for run in runs:
        if not (run / "cli.log").exists():
            continue  # not a run folder (e.g. a shared stages folder matched by a glob)
        if not rows:
            try:
                rows["start"] = [summarize(run, "start")[split]]
            except (SystemExit, KeyError):
                pass
        rows.setdefault(run.name, []).append(summarize(run, "final")[split])
    classes = sorted({k for rs in rows.values() for r in rs for k in r if k not in ("correct", "total")},
                     key=lambda k: -sum(r.get(k, 0) for rs in rows.values() for r in rs))
    lines = ["| run | runs | correct | " + " | ".join(classes) + " |", "|---" * (len(classes) + 3) + "|"]
    for name, rs in rows.items():
        cells = [f"{sum(r.get(k, 0) for r in rs) / len(rs):.1f}" for k in ("correct", *classes)]
        lines.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")
    total = next(iter(rows.values()))[0]["total"] if rows else 0
    head = f"First errors on {split} (mean count over the runs of each name, of {total} problems):"
    return head + "\n\n" + "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--eval", default="final", help="which evaluation: final (default) or start")
    ap.add_argument("--table", metavar="SPLIT", default=None,
                    help="print one markdown table for SPLIT instead: a row per run name, mean counts over seeds")
    args = ap.parse_args()
    if args.table:
        print(table(args.runs, args.table))
        return
    for run in args.runs:
        for split, counts in summarize(run, args.eval).items():
            print(f"{run} {split}: {json.dumps(counts)}")


if __name__ == "__main__":
    sys.exit(main())
