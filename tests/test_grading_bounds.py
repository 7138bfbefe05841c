"""Grading is bounded end to end: pathological answers finish within the timeout + 1 s through `grade` and
`grade_many` (the calling process's own checks are linear; everything else runs in a killable worker), and
`grade_many(deadline=)` ends the whole call on time, counting what it could not grade as "timeout".

The time limits asserted here are correctness bounds (a hang or a quadratic pass fails them by minutes), not speed
benchmarks: worker start-up is excluded by waiting for ready workers before each timed call."""

import time

import pytest

from reasontrain.grading import REASONS, Verdict, grade, grade_many, shutdown
from reasontrain.grading.grader import _cheap_verdict, _options
from reasontrain.grading.timeouts import WorkerPool

TIMEOUT = 1.0
SLACK = 1.0
N = 100_000
PATHOLOGICAL = {
    "text nested 20k deep": r"\boxed{" + r"\text{" * 20_000 + "5" + "}" * 20_000 + "}",
    "textbf nested 20k deep, unboxed": r"\textbf{" * 20_000 + "x" + "}" * 20_000,
    "tower of exponents": r"\boxed{2^{2^{2^{2^{2^{2}}}}}}",
    "huge factorial": r"\boxed{1000000!}",
    "100k characters of prose": "Let me think. " * (N // 14) + "so it is five",
    "100k digits": "1" * N,
    "100k spaces inside a box": r"\boxed{1" + " " * N + "2}",
    "100k math openers": "\\(" * (N // 2),
    "100k dollar signs": "$" * N,
    "unclosed frac": r"\frac{1}{",
    "unclosed box": r"\boxed{",
    "unclosed box, 50k open braces": r"The answer is $\boxed{\frac{1}{" + "{" * 50_000,
}
GOLDS = ("5", r"$x \ge 5$")  # a bare gold, and a gold written as text (read by math-verify too)


def _ready(workers: int) -> None:
    """Wait until `workers` grading workers are started, so the timed call measures grading only."""
    grade_many([rf"\boxed{{\sqrt{{{i + 2}}}}}" for i in range(workers)], ["1"] * workers, workers=workers,
               progress=False, timeout=120)


@pytest.mark.parametrize("name", PATHOLOGICAL)
def test_calling_process_checks_are_linear(name):
    """The checks made before any worker is involved (extraction, cleaning, string and number comparison) take
    well under a second on 100k characters, as answer and as gold."""
    opts = _options({})
    text = PATHOLOGICAL[name]
    for response, gold in [(text, "5"), ("5", text), (text, text)]:
        start = time.monotonic()
        _cheap_verdict(response, gold, False, opts)
        assert time.monotonic() - start < SLACK, (name, len(response), len(gold))


@pytest.mark.parametrize("name", PATHOLOGICAL)
def test_pathological_answer_ends_within_timeout(name):
    text = PATHOLOGICAL[name]
    for gold in GOLDS:
        _ready(1)
        start = time.monotonic()
        v = grade(text, gold, timeout=TIMEOUT)
        assert time.monotonic() - start < TIMEOUT + SLACK, (name, gold, "grade")
        assert isinstance(v, Verdict) and v.reason in REASONS
        _ready(2)
        start = time.monotonic()
        [w] = grade_many([text], [gold], timeout=TIMEOUT, workers=2, progress=False)
        assert time.monotonic() - start < TIMEOUT + SLACK, (name, gold, "grade_many")
        assert w.reason == v.reason or "timeout" in (v.reason, w.reason)
    assert not grade(text, "7", timeout=TIMEOUT).correct


def test_deep_text_nesting_is_read():
    assert grade(PATHOLOGICAL["text nested 20k deep"], "5").correct


def test_deadline_ends_the_whole_call():
    towers = [rf"\boxed{{{k}^{{{k}^{{{k}^{{{k}^{{{k}}}}}}}}}}}" for k in range(3, 9)] + [rf"\boxed{{{10 ** k}!}}"
                                                                                    for k in range(5, 9)]
    responses = towers + ["#### 5", r"\boxed{\frac{1}{2}}"]
    golds = ["5"] * len(towers) + ["5", "0.5"]
    _ready(2)
    start = time.monotonic()
    verdicts = grade_many(responses, golds, timeout=60, deadline=1.5, workers=2, progress=False)
    assert time.monotonic() - start < 1.5 + SLACK
    assert len(verdicts) == len(responses)
    assert [v.reason for v in verdicts[:len(towers)]] == ["timeout"] * len(towers)
    assert verdicts[-2] == Verdict(True, "correct", "5") and verdicts[-1].correct  # decided without a worker


def test_deadline_counts_worker_start_up():
    shutdown()  # no started worker: the deadline passes while they start
    start = time.monotonic()
    verdicts = grade_many([r"\boxed{\sqrt{8}}", "#### 4"], [r"2\sqrt{2}", "4"], deadline=0.3, progress=False)
    assert time.monotonic() - start < 0.3 + SLACK
    assert [v.reason for v in verdicts] == ["timeout", "correct"]
    with pytest.raises(ValueError):
        grade_many(["1"], ["1"], deadline=0, progress=False)


def test_worker_pool_deadline():
    pool = WorkerPool()
    try:
        pool.map("math:sqrt", [(1,)], timeout=60)  # started
        start = time.monotonic()
        out = pool.map("time:sleep", [(0,), (30,), (30,), (30,)], timeout=60, workers=2,
                       deadline=time.monotonic() + 1.0)
        assert time.monotonic() - start < 1.0 + SLACK
        assert out[0].status == "ok" and [o.status for o in out[1:]] == ["timeout"] * 3
    finally:
        pool.close()
