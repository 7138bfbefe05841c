"""Answers per second of the grader on real data, against plain math-verify measured in the same run.

Workloads: MATH-500 solutions vs their answers and GSM8K test solutions vs their answers (what a correct model
writes: mostly decided by the cheap checks), MATH-500 answers paired with each other (every pair distinct and
needing the symbolic check), and 8 "samples" per MATH-500 problem whose answers are other problems' answers (the
shape of pass@k / RL grading: one gold, many different answers). Methods: `grade` called serially, `grade_many`
with N workers, and the peer `math_verify.verify(parse(gold), parse(response))` called serially in the main thread
with math-verify's own (signal) timeouts.

    python scripts/bench_grading.py --workers 1,2 --repeat 3 [--cold-peer] [--only pairs,samples]

`--cold-peer` also times math-verify in a fresh process per run: the grader's workers are started fresh for every
run, so their parser meets each answer shape for the first time, while the in-process peer has met them before.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from reasontrain.grading import grade, grade_many, shutdown
from reasontrain.grading.grader import default_workers

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
# Verdicts (one reason letter per answer) of every workload in `verdict_workloads`, recorded with the grader as it
# was before it was made faster; `--record` rewrites it, the bench and tests/test_grading_verdicts.py compare with it.
RECORDED = ROOT / "tests" / "data" / "grading_verdicts.json"


def load(data: Path, limit: int) -> dict[str, tuple[list[str], list[str]]]:
    def rows(relative):
        with (data / relative).open() as f:
            return [json.loads(line) for line in f if line.strip()][:limit]

    math = rows("math500/test.jsonl")
    gsm = rows("gsm8k/test.jsonl")
    answers = [r["answer"] for r in math]
    boxed = [f"The answer is $\\boxed{{{a}}}$." for a in answers]
    problems = min(len(answers), 100)
    samples = [(boxed[(i + k) % problems], answers[i]) for i in range(problems) for k in range(1, 9)]
    return {
        "MATH-500 solutions": ([r["solution"] for r in math], answers),
        "GSM8K solutions": ([r["answer"] for r in gsm], [r["answer"].split("####")[-1].strip() for r in gsm]),
        "MATH-500 answer pairs": (boxed[1::2], answers[0::2][:len(boxed[1::2])]),
        "MATH-500 8 samples/gold": ([s for s, _ in samples], [g for _, g in samples]),
    }


RESTYLES = {
    "minerva": lambda a: f"Final Answer: The final answer is ${a}$. I hope it is correct.",
    "dfrac, no spaces": lambda a: "\\boxed{" + a.replace("\\frac", "\\dfrac").replace(" ", "") + "}",
    "answer is, boxed": lambda a: f"So the answer is $\\boxed{{ {a} }}$.",
}
# Rewritings that only the symbolic check can match (or tell apart, where they make no sense for the answer).
SYMBOLIC_RESTYLES = {
    "plus zero": lambda a: f"\\boxed{{0 + {a}}}",
    "halved double": lambda a: f"\\boxed{{\\frac{{2({a})}}{{2}}}}",
}


def verdict_workloads(data: Path) -> dict[str, tuple[list[str], list[str]]]:
    """The timed workloads plus wider ones whose verdicts are recorded, to show a speed-up changed no verdict:
    every MATH-500 answer against 8 other problems' answers, and every answer restyled as a model might write it."""
    workloads = load(data, 100_000)
    answers = [json.loads(line)["answer"] for line in (data / "math500/test.jsonl").open() if line.strip()]
    n = len(answers)
    pairs = [(f"\\boxed{{{answers[(i + k) % n]}}}", answers[i]) for k in range(1, 9) for i in range(n)]
    workloads["MATH-500 answers vs 8 others"] = ([r for r, _ in pairs], [g for _, g in pairs])
    restyled = [(style(a), a) for style in (*RESTYLES.values(), *SYMBOLIC_RESTYLES.values()) for a in answers]
    workloads["MATH-500 answers restyled"] = ([r for r, _ in restyled], [g for _, g in restyled])
    return workloads


# One letter per reason, so a recorded workload is one short string.
CODES = {"correct": "c", "wrong": "w", "no_answer": "n", "gold_unparseable": "g", "timeout": "t", "truncated": "r"}


def verdict_codes(verdicts) -> str:
    return "".join(CODES[v.reason] for v in verdicts)


def record(data: Path) -> None:
    recorded = {}
    for name, (responses, golds) in verdict_workloads(data).items():
        codes = verdict_codes(grade_many(responses, golds, workers=default_workers(), progress=False))
        recorded[name] = {"n": len(codes), "reasons": codes}
        print(f"{name}: {len(codes)} verdicts, {codes.count('c')} correct")
    RECORDED.parent.mkdir(parents=True, exist_ok=True)
    RECORDED.write_text(json.dumps(recorded, indent=0) + "\n")
    shutdown()


def peer(responses: list[str], golds: list[str]) -> list[bool]:
    from math_verify import parse, verify

    # The grader's shortcuts live only in its worker processes: this process runs math-verify as published.
    assert "reasontrain.grading.fast_paths" not in sys.modules
    return [bool(verify(parse(f"${g}$"), parse(r))) for r, g in zip(responses, golds)]


_PEER_COLD = """
import json, logging, sys, time
logging.getLogger("math_verify").setLevel(logging.ERROR)
from math_verify import parse, verify
responses, golds = json.load(open(sys.argv[1]))
start = time.perf_counter()
ok = [bool(verify(parse(f"${g}$"), parse(r))) for r, g in zip(responses, golds)]
print(time.perf_counter() - start, sum(ok))
"""


def peer_cold(responses: list[str], golds: list[str], repeat: int) -> float:
    """Best time of the peer in a fresh process per run (imports not timed): math-verify's parser starts with empty
    prediction tables, as each of our fresh workers does. In this process the peer has already met the same answer
    shapes (earlier runs and workloads), which makes its in-process time a warm one."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([responses, golds], f)
    best = float("inf")
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", _PEER_COLD, f.name], capture_output=True, text=True, check=True)
        best = min(best, float(out.stdout.split()[0]))
    Path(f.name).unlink()
    return best


def timed(fn, repeat: int = 1, setup=None) -> tuple[float, list]:
    """Best wall time of `repeat` runs of `fn` (each after `setup`), and the last run's result. The best run is the
    one least disturbed by other processes on the machine; every method, the peer included, gets the same."""
    best = float("inf")
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def fresh_workers(n: int) -> float:
    """Replace the workers with `n` new, started ones; seconds it took.

    Start-up is paid once per process lifetime, not per answer, so it is kept out of the timings; fresh workers
    also keep one method's parse cache from speeding up the next.
    """
    shutdown()
    start = time.perf_counter()
    # Distinct pairs, so that every worker gets one (identical pairs are checked once).
    grade_many([rf"\boxed{{\sqrt{{{i}}}}}" for i in range(2 * n)], ["2"] * (2 * n), workers=n, progress=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts for grade_many")
    parser.add_argument("--limit", type=int, default=100_000, help="at most this many rows per file")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=1, help="best of this many runs per method (workers fresh each)")
    parser.add_argument("--cold-peer", action="store_true",
                        help="also time the peer in a fresh process per run (cold parser tables, like fresh workers)")
    parser.add_argument("--only", default="", help="comma-separated substrings: time only the workloads named so")
    parser.add_argument("--record", action="store_true",
                        help=f"grade every verdict workload and write the verdicts to {RECORDED.relative_to(ROOT)}")
    args = parser.parse_args()
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    if args.record:
        record(args.data)
        return
    recorded = json.loads(RECORDED.read_text()) if RECORDED.exists() else {}
    worker_counts = [int(w) for w in args.workers.split(",") if w]

    cold = fresh_workers(max(worker_counts))
    table, agreement = [], []
    only = [o.strip() for o in args.only.split(",") if o.strip()]
    for name, (responses, golds) in load(args.data, args.limit).items():
        if only and not any(o.lower() in name.lower() for o in only):
            continue
        n = len(responses)
        peer_s, peer_ok = timed(lambda: peer(responses, golds), args.repeat)
        cold_s = peer_cold(responses, golds, args.repeat) if args.cold_peer else float("nan")
        rows = [("math_verify serial (peer)", peer_s, sum(peer_ok))]
        s, ok = timed(lambda: [grade(r, g, timeout=args.timeout).correct for r, g in zip(responses, golds)],
                      args.repeat, setup=lambda: fresh_workers(1))
        rows.append(("grade serial", s, sum(ok)))
        for w in worker_counts:
            s, vs = timed(lambda: grade_many(responses, golds, workers=w, timeout=args.timeout, progress=False),
                          args.repeat, setup=lambda: fresh_workers(w))
            rows.append((f"grade_many workers={w}", s, sum(v.correct for v in vs)))
            if name in recorded and len(vs) == recorded[name]["n"]:
                differ = sum(a != b for a, b in zip(verdict_codes(vs), recorded[name]["reasons"]))
                agreement.append(f"{name}, workers={w}: {differ} of {len(vs)} verdicts differ from the recorded ones")
        for method, seconds, correct in rows:
            table.append((name, n, method, seconds, n / seconds, correct, peer_s / seconds, cold_s / seconds))

    print(f"\nworker start-up (cold, {max(worker_counts)} workers): {cold:.2f} s\n")
    header = (f"{'workload':26} {'n':>5}  {'method':26} {'seconds':>8} {'answers/s':>10} {'correct':>8} {'vs peer':>7}"
              f" {'vs cold peer':>12}")
    print(header)
    print("-" * len(header))
    for name, n, method, seconds, rate, correct, ratio, cold_ratio in table:
        print(f"{name:26} {n:5d}  {method:26} {seconds:8.2f} {rate:10.1f} {correct:8d} {ratio:6.1f}x {cold_ratio:11.1f}x")
    print("\nvs peer: math-verify in this process, warm (it has parsed these answers' shapes in its earlier runs);"
          "\nvs cold peer: math-verify in a fresh process per run, cold like the grader's fresh workers (--cold-peer).")
    print("\n" + "\n".join(agreement or ["no recorded verdicts to compare with (--limit set, or no record)"]))
    shutdown()


if __name__ == "__main__":
    main()
