"""Answers per second of the grader on real data, against plain math-verify measured in the same run.

Workloads: MATH-500 solutions vs their answers and GSM8K test solutions vs their answers (what a correct model
writes: mostly decided by the cheap checks), MATH-500 answers paired with each other (every pair distinct and
needing the symbolic check), and 8 "samples" per MATH-500 problem whose answers are other problems' answers (the
shape of pass@k / RL grading: one gold, many different answers). Methods: `grade` called serially, `grade_many`
with N workers, and the peer `math_verify.verify(parse(gold), parse(response))` called serially in the main thread
with math-verify's own (signal) timeouts.

    python scripts/bench_grading.py --workers 1,2
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from reasontrain.grading import grade, grade_many, shutdown

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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


def peer(responses: list[str], golds: list[str]) -> list[bool]:
    from math_verify import parse, verify

    return [bool(verify(parse(f"${g}$"), parse(r))) for r, g in zip(responses, golds)]


def timed(fn) -> tuple[float, list[bool]]:
    start = time.perf_counter()
    correct = fn()
    return time.perf_counter() - start, correct


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
    args = parser.parse_args()
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    worker_counts = [int(w) for w in args.workers.split(",") if w]

    cold = fresh_workers(max(worker_counts))
    table = []
    for name, (responses, golds) in load(args.data, args.limit).items():
        n = len(responses)
        peer_s, peer_ok = timed(lambda: peer(responses, golds))
        rows = [("math_verify serial (peer)", peer_s, sum(peer_ok))]
        fresh_workers(1)
        s, ok = timed(lambda: [grade(r, g, timeout=args.timeout).correct for r, g in zip(responses, golds)])
        rows.append(("grade serial", s, sum(ok)))
        for w in worker_counts:
            fresh_workers(w)
            s, vs = timed(lambda: grade_many(responses, golds, workers=w, timeout=args.timeout, progress=False))
            rows.append((f"grade_many workers={w}", s, sum(v.correct for v in vs)))
        for method, seconds, correct in rows:
            table.append((name, n, method, seconds, n / seconds, correct, peer_s / seconds))

    print(f"\nworker start-up (cold, {max(worker_counts)} workers): {cold:.2f} s\n")
    header = f"{'workload':26} {'n':>5}  {'method':26} {'seconds':>8} {'answers/s':>10} {'correct':>8} {'vs peer':>7}"
    print(header)
    print("-" * len(header))
    for name, n, method, seconds, rate, correct, ratio in table:
        print(f"{name:26} {n:5d}  {method:26} {seconds:8.2f} {rate:10.1f} {correct:8d} {ratio:6.1f}x")
    shutdown()


if __name__ == "__main__":
    main()
