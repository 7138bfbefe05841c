"""Seeded generator of multi-step arithmetic word problems: the embedded task of every recipe.

Solutions are written one operation per line ("Step 1: 7 + 5 = 12") and end in the fixed line "#### N", so a
wrong answer is almost always a subtle miscalculation in one step: the error RISE, cDPO and OREAL target.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

NAMES = ("Ann", "Bob", "Cal", "Dee", "Eve", "Fay", "Gus", "Hal", "Ivy", "Jon")
ITEMS = ("apples", "books", "coins", "eggs", "pens", "cards", "shells", "stamps")

# One short sentence per operation; several wordings so the model must read, not pattern-match one template.
TEMPLATES = {
    "+": ("{name} gets {n} more.", "{name} finds {n} more.", "{name} buys {n} more."),
    "-": ("{name} gives away {n}.", "{name} loses {n}.", "{name} sells {n}."),
    "x": ("{name} ends up with {n} times as many.", "The pile grows {n} times."),
}
ANSWER_PREFIX = "#### "


@dataclass(frozen=True)
class ArithDifficulty:
    """The knobs of one split: how many operations and how big the numbers get."""

    min_steps: int = 2
    max_steps: int = 4
    max_start: int = 9
    max_operand: int = 5
    max_factor: int = 3
    max_value: int = 20


def _apply(op: str, a: int, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "x":
        return a * b
    raise ValueError(f"unknown operation {op!r}")


def _pick_step(rng: random.Random, value: int, d: ArithDifficulty) -> tuple[str, int]:
    """Choose an operation and operand that keep the running value in [0, max_value]."""
    options = []
    if value + 1 <= d.max_value:
        options.append("+")
    if value >= 1:
        options.append("-")
    if value >= 1 and value * 2 <= d.max_value:
        options.append("x")
    op = rng.choice(options)
    if op == "+":
        return op, rng.randint(1, min(d.max_operand, d.max_value - value))
    if op == "-":
        return op, rng.randint(1, min(d.max_operand, value))
    return op, rng.randint(2, max(2, min(d.max_factor, d.max_value // value)))


def make_problem(rng: random.Random, d: ArithDifficulty) -> dict:
    """One problem record: question, step-by-step solution, integer answer and the operations used."""
    name, items = rng.choice(NAMES), rng.choice(ITEMS)
    value = rng.randint(2, d.max_start)
    sentences = [f"{name} has {value} {items}."]
    steps, ops = [], []
    for i in range(rng.randint(d.min_steps, d.max_steps)):
        op, n = _pick_step(rng, value, d)
        new = _apply(op, value, n)
        sentence = rng.choice(TEMPLATES[op]).format(name=name, n=n)
        sentences.append(sentence)
        # One equation per step, no restated sentence: with one token per character, restating the question
        # costs the tiny model most of its training budget (it learns to copy text before it learns to compute).
        steps.append(f"Step {i + 1}: {value} {op} {n} = {new}")
        ops.append(op)
        value = new
    sentences.append(f"How many {items} now?")
    return {
        "question": " ".join(sentences),
        "solution": "\n".join(steps) + f"\n{ANSWER_PREFIX}{value}",
        "answer": str(value),
        "num_steps": len(steps),
        "ops": "".join(ops),
    }


def generate(n: int, seed: int, difficulty: ArithDifficulty, exclude: set[str] | None = None,
             id_prefix: str = "arith") -> list[dict]:
    """`n` distinct problems from `seed`, skipping any question in `exclude` (to keep splits disjoint)."""
    rng = random.Random(seed)
    seen = set(exclude or ())
    out: list[dict] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise RuntimeError(f"arith: could only make {len(out)} distinct problems of {n} requested; "
                               "widen the difficulty ranges or ask for fewer")
        p = make_problem(rng, difficulty)
        if p["question"] in seen:
            continue
        seen.add(p["question"])
        p["id"] = f"{id_prefix}-{len(out)}"
        out.append(p)
    return out


# The pretraining corpus of `tiny-base`: arithmetic text that never uses the solution format ("Step N: ...",
# "#### N"), so the base can read and compute but has not seen the answers it is later fine-tuned to write.
_NARRATION = {
    "+": ("That makes {a} + {b} = {c}.", "Now {a} + {b} = {c}.", "So {a} plus {b} is {c}."),
    "-": ("That leaves {a} - {b} = {c}.", "Now {a} - {b} = {c}.", "So {a} minus {b} is {c}."),
    "x": ("That makes {a} x {b} = {c}.", "Now {a} x {b} = {c}.", "So {a} times {b} is {c}."),
}
_FACT = ("{a} {op} {b} = {c}", "{a} {op} {b} is {c}")


def _facts(rng: random.Random, d: ArithDifficulty) -> str:
    """Unrelated number facts within the task's ranges, e.g. `7 + 5 = 12; 3 x 4 = 12; 9 - 4 = 5`."""
    out = []
    for _ in range(rng.randint(4, 8)):
        value = rng.randint(0, d.max_value)
        if value == 0:
            value = 1
        op, n = _pick_step(rng, value, d)
        out.append(rng.choice(_FACT).format(a=value, op=op, b=n, c=_apply(op, value, n)))
    return "; ".join(out)


def _chain(rng: random.Random, d: ArithDifficulty) -> str:
    """A running computation written as one line, e.g. `6 - 4 = 2, 2 + 3 = 5, 5 x 2 = 10`."""
    value = rng.randint(2, d.max_start)
    parts = []
    for _ in range(rng.randint(d.min_steps, d.max_steps + 1)):
        op, n = _pick_step(rng, value, d)
        new = _apply(op, value, n)
        parts.append(f"{value} {op} {n} = {new}")
        value = new
    return ", ".join(parts)


def _story(problem: dict) -> str:
    """A word problem told as a story with the computation inline (another phrasing than the solutions)."""
    rng = random.Random(problem["question"])
    sentences = problem["question"].split(". ")
    lines = problem["solution"].splitlines()[:-1]
    out = [sentences[0] + "."]
    for sentence, line in zip(sentences[1:], lines):
        m = _EQUATION.search(line)
        a, op, b, c = m.group(1), m.group(2), m.group(3), m.group(4)
        out.append(sentence.rstrip(".") + ". " + rng.choice(_NARRATION[op]).format(a=a, b=b, c=c))
    items = problem["question"].rsplit("How many ", 1)[1].split()[0]
    name = sentences[0].split()[0]
    out.append(f"In the end {name} has {problem['answer']} {items}.")
    return " ".join(out)


def pretrain_corpus(n: int, seed: int, difficulty: ArithDifficulty, exclude: set[str] | None = None,
                    id_prefix: str = "arith-pretrain") -> list[dict]:
    """`n` pretraining documents, each a number-facts line, a running computation and a story, in random order.

    Stories are told from generated problems whose questions are not in `exclude` (the evaluation splits).
    Records carry the document in `text` (and the question its story tells in `story_of`) but no `question`:
    SFT on them trains on the whole text.
    """
    rng = random.Random(seed)
    problems = generate(n, seed + 7919, difficulty, exclude=exclude, id_prefix="story")
    out = []
    for i, problem in enumerate(problems):
        pieces = [_facts(rng, difficulty), _chain(rng, difficulty), _story(problem)]
        rng.shuffle(pieces)
        out.append({"id": f"{id_prefix}-{i}", "text": "\n".join(pieces), "story_of": problem["question"]})
    return out


_EQUATION = re.compile(r"(\d+) ([-+x]) (\d+) = (\d+)$")


def check_solution(record: dict) -> bool:
    """Recompute every step of a solution; True when each line and the final answer are right."""
    value = None
    for line in record["solution"].splitlines():
        if line.startswith(ANSWER_PREFIX):
            return value is not None and int(line[len(ANSWER_PREFIX):]) == value == int(record["answer"])
        m = _EQUATION.search(line)
        if m is None:
            return False
        a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        if (value is not None and a != value) or _apply(op, a, b) != c:
            return False
        value = c
    return False
