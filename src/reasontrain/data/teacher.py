"""An imperfect teacher for the arithmetic task: the solutions `tiny-instruct` is fine-tuned to imitate.

A real instruct model learned from human and model-written solutions that contain mistakes, so its samples of
one question disagree and pass@k sits well above pass@1: the gap that DPO, RFT, GRPO and OREAL turn into greedy
accuracy. A model fine-tuned on clean, unlimited arithmetic either solves a problem type or it does not, and no
preference or RL method has anything to learn from it. The teacher writes each training solution with three
kinds of mistake that human solution writers make, each drawn from one seeded generator per problem:

- a **carry slip** (the subtle computational error): an addition whose result crosses ten (a < 10 <= a + b) is
  written one too low, more often than not (`carry_rate` 0.6), so greedy decoding of a model that imitates the
  teacher makes it too. It is what RISE's injected miscalculations and cDPO's critical tokens are about.
- **stopping early** (the structural error): on problems with at least `stop_min_steps` operations the teacher
  writes `stop_after` steps and gives that value as the answer, more often than not (`stop_rate` 0.6).
- **diffuse slips**: any other step's result is off by 1..`slip_max` with probability `slip_rate` (0.1); rare
  enough that greedy decoding does not make them, so they only show up in samples.

A mistake is only written where the counts of the rest of the problem, computed from it, stay at 0 or more (a
slip that would lead to "-1 apples" goes up instead; such a carry slip is not made): solutions stay in the task's
format, and the rates move by well under a point.

Later steps always continue from the written value, as a person's do. The record's `answer` stays the true one:
only the `solution` the model is trained on is the teacher's. Every choice is recorded on the record
(`teacher`), and `summarize` counts them for the data stage's summary.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from reasontrain.data.arith import ANSWER_PREFIX, _apply

_STEP = re.compile(r"^Step (\d+): (\d+) ([-+x]) (\d+) = (\d+)$")


@dataclass(frozen=True)
class TeacherModel:
    """The teacher's error model (the typed config is `reasontrain.config.TeacherConfig`)."""

    slip_rate: float = 0.1
    slip_max: int = 2
    carry_rate: float = 0.6
    stop_rate: float = 0.6
    stop_min_steps: int = 4
    stop_after: int = 3
    seed: int = 0


def is_carry(op: str, a: int, b: int) -> bool:
    """An addition whose result crosses ten: the step the teacher's carry slip applies to."""
    return op == "+" and a < 10 <= a + b


def parse_steps(solution: str) -> list[tuple[str, int]]:
    """[(op, operand), ...] of a clean solution, and its first value as ("=", start)."""
    steps: list[tuple[str, int]] = []
    for line in solution.splitlines():
        if line.startswith(ANSWER_PREFIX):
            break
        m = _STEP.match(line)
        if m is None:
            raise ValueError(f"not a solution step: {line!r}")
        if not steps:
            steps.append(("=", int(m.group(2))))
        steps.append((m.group(3), int(m.group(4))))
    return steps


def _stays_counts(value: int, rest: list[tuple[str, int]]) -> bool:
    """Whether the remaining steps, computed exactly from `value`, keep every count at 0 or more. A teacher
    does not write a mistake that would leave a negative number of apples later on."""
    if value < 0:
        return False
    for op, b in rest:
        value = _apply(op, value, b)
        if value < 0:
            return False
    return True


def write_solution(record: dict, model: TeacherModel) -> dict:
    """A copy of `record` with the teacher's solution and its choices under `teacher`.

    The generator is seeded from the teacher's seed and the question, so a problem gets the same solution in
    every run and the choices do not depend on which other problems are in the split."""
    rng = random.Random(f"{model.seed}:{record['question']}")
    (_, value), *ops = parse_steps(record["solution"])
    long = len(ops) >= model.stop_min_steps
    stop = long and rng.random() < model.stop_rate
    lines, carry_steps, carry_slips, slips, other_steps = [], 0, 0, 0, 0
    todo = ops[:model.stop_after] if stop else ops
    for i, (op, b) in enumerate(todo, start=1):
        true = _apply(op, value, b)
        written, rest = true, todo[i:]
        if is_carry(op, value, b):
            carry_steps += 1
            if rng.random() < model.carry_rate and _stays_counts(true - 1, rest):
                written, carry_slips = true - 1, carry_slips + 1
        else:
            other_steps += 1
            if rng.random() < model.slip_rate:
                delta = rng.randint(1, model.slip_max)
                down = rng.random() < 0.5 and _stays_counts(true - delta, rest)
                written, slips = (true - delta if down else true + delta), slips + 1
        lines.append(f"Step {i}: {value} {op} {b} = {written}")
        value = written
    lines.append(f"{ANSWER_PREFIX}{value}")
    choices = {"long": long, "stopped_early": stop, "carry_steps": carry_steps, "carry_slips": carry_slips,
               "other_steps": other_steps, "slips": slips, "correct": str(value) == str(record["answer"])}
    return {**record, "solution": "\n".join(lines), "teacher": choices}


def summarize(records: list[dict]) -> dict:
    """Counts of the teacher's choices over a split, with its accuracy by number of operations."""
    rows = [r for r in records if "teacher" in r]
    if not rows:
        return {}
    t = [r["teacher"] for r in rows]
    by_steps: dict[str, list[int]] = {}
    for r in rows:
        by_steps.setdefault(str(r["num_steps"]), []).append(int(r["teacher"]["correct"]))
    return {
        "problems": len(rows),
        "correct": sum(x["correct"] for x in t),
        "clean": sum(not (x["stopped_early"] or x["carry_slips"] or x["slips"]) for x in t),
        "stopped_early": sum(x["stopped_early"] for x in t),
        "long_problems": sum(x["long"] for x in t),
        "carry_steps": sum(x["carry_steps"] for x in t),
        "carry_slips": sum(x["carry_slips"] for x in t),
        "other_steps": sum(x["other_steps"] for x in t),
        "slips": sum(x["slips"] for x in t),
        "accuracy_by_steps": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_steps.items())},
    }


def describe(s: dict) -> str:
    """One line of `summarize`'s counts, for the log."""
    by_steps = ", ".join(f"{k} ops {100 * v:.0f}%" for k, v in s["accuracy_by_steps"].items())
    return (f"{s['correct']}/{s['problems']} correct ({by_steps}); {s['clean']} untouched; stopped early on "
            f"{s['stopped_early']}/{s['long_problems']} long problems; carry slips {s['carry_slips']}/"
            f"{s['carry_steps']} carry steps; other slips {s['slips']}/{s['other_steps']} steps")
