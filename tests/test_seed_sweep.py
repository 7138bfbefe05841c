"""The results table of scripts/seed_sweep.py: mean ± std, the gain mark (5 points and twice the seed std), the
paper orderings, and groups run apart then merged into one table."""

import importlib.util
import json
import subprocess
import sys

from conftest import ROOT

spec = importlib.util.spec_from_file_location("seed_sweep", ROOT / "scripts" / "seed_sweep.py")
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)


def _results():
    return {
        "tiny-instruct (start)": {0: {"test": 0.50, "hard": 0.05}, 1: {"test": 0.50, "hard": 0.05}},
        "DPO (RISE's baseline)": {0: {"test": 0.80, "hard": 0.05}, 1: {"test": 0.84, "hard": 0.07}},
        "RISE": {0: {"test": 0.56, "hard": 0.10}, 1: {"test": 0.52, "hard": 0.02}},
    }


def test_gain_is_marked_only_when_it_is_five_points_and_beyond_the_seed_noise():
    summary = sweep.summarize(_results())
    starts = {label: "tiny-instruct (start)" for label in summary}
    table = sweep.markdown_table(summary, ["test", "hard"], starts)
    dpo = next(line for line in table.splitlines() if line.startswith("| DPO"))
    rise = next(line for line in table.splitlines() if line.startswith("| RISE"))
    assert "82.0 ± 2.8" in dpo and "+32.0 ✓" in dpo
    assert "+4.0 |" in rise and "✓" not in rise.split("|")[4]  # +4 on test: under the 5-point bar
    checks = sweep.orderings(summary, ["test", "hard"])
    assert checks == ["- RISE > DPO (RISE's baseline): does not hold on test (test: -28.0, hard: +0.0; 2 x std 5.7)"]
    summary["RISE"]["test"].update(mean=84.0)
    assert "holds within the seed noise on test" in sweep.orderings(summary, ["test", "hard"])[0]
    summary["RISE"]["test"].update(mean=90.0, std=0.5)
    assert "RISE's baseline): holds on test" in sweep.orderings(summary, ["test", "hard"])[0]


def test_groups_run_apart_merge_into_one_report(tmp_path):
    results = _results()
    parts = []
    for i, labels in enumerate([["tiny-instruct (start)", "DPO (RISE's baseline)"], ["RISE"]]):
        part = {label: results[label] for label in labels}
        path = tmp_path / f"part{i}.json"
        path.write_text(json.dumps({"results": part, "starts": {label: "tiny-instruct (start)" for label in labels}}))
        parts.append(str(path))
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "seed_sweep.py"), "--merge", *parts,
                           "--report", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    md = (out / "results.md").read_text()
    assert "| RISE |" in md and "| DPO (RISE's baseline) |" in md and "RISE > DPO" in md
    assert (out / "results.png").stat().st_size > 0
    merged = json.loads((out / "results.json").read_text())
    assert set(merged["results"]) == set(results)
