"""Speed-ups of the grader changed no verdict: a spread of the recorded verdicts (tests/data/grading_verdicts.json,
made with the grader before it was optimised, by `scripts/bench_grading.py --record`) is graded again and compared.
The bench compares its whole timed workloads the same way."""

import importlib.util
import json
from pathlib import Path

import pytest

from reasontrain.grading import grade_many

ROOT = Path(__file__).resolve().parents[1]
PER_WORKLOAD = 120  # answers re-graded per workload: enough to cover every kind, still a few seconds in all


def _bench():
    spec = importlib.util.spec_from_file_location("bench_grading", ROOT / "scripts" / "bench_grading.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_verdicts_match_the_recorded_ones(shared_data):
    bench = _bench()
    recorded = json.loads(bench.RECORDED.read_text())
    workloads = bench.verdict_workloads(shared_data)
    assert set(workloads) == set(recorded)
    responses, golds, expected, where = [], [], [], []
    for name, (rs, gs) in workloads.items():
        codes = recorded[name]["reasons"]
        assert len(codes) == len(rs) == recorded[name]["n"], name
        # An even spread, plus every "correct" where that verdict is rare (other problems' answers that match).
        picked = set(range(0, len(rs), max(1, len(rs) // PER_WORKLOAD)))
        if codes.count("c") < 50:
            picked |= {i for i, c in enumerate(codes) if c == "c"}
        for i in sorted(picked):
            responses.append(rs[i])
            golds.append(gs[i])
            expected.append(codes[i])
            where.append((name, i))
    got = bench.verdict_codes(grade_many(responses, golds, workers=2, progress=False))
    differ = [(w, r, g, e, o) for w, r, g, e, o in zip(where, responses, golds, expected, got) if e != o]
    assert not differ, differ[:10]


def test_recorded_verdicts_cover_the_symbolic_workloads():
    recorded = json.loads((ROOT / "tests" / "data" / "grading_verdicts.json").read_text())
    for name in ("MATH-500 answer pairs", "MATH-500 8 samples/gold", "MATH-500 answers vs 8 others",
                 "MATH-500 answers restyled"):
        codes = recorded[name]["reasons"]
        assert len(codes) == recorded[name]["n"] and "c" in codes and "w" in codes, name
