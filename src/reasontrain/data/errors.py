"""Rule-based injection of subtle errors into one solution step (RISE's `editor=rule`).

The same error types as RISE's self-editing prompts, applied programmatically to a span of step text: change one
number, change related numbers, a wrong substitution, a dropped term, a changed operator, swapped terms. Each
edit touches a few characters and leaves the rest of the step as it was. Arithmetic of the form `a op b = c` is
recomputed after an edit of its left side, so the step stays locally plausible (the error is the edit itself).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

ERROR_TYPES = ("change_value", "change_multi_value", "wrong_sub", "del_term", "change_symbol", "swap")

_NUMBER = re.compile(r"(?<!Step )(?<![\w.])\d+(?:\.\d+)?(?!\w|\.\d)")  # step indices are not values
# A simple binary equation: a op b = c, with the operators the embedded task and GSM8K-style text use.
_EQUATION = re.compile(r"(?<![\w.])(\d+) ?([-+x*×/]) ?(\d+) ?= ?(\d+)(?![\w.])")
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "x": lambda a, b: a * b, "*": lambda a, b: a * b,
        "×": lambda a, b: a * b, "/": lambda a, b: a // b if b and a % b == 0 else None}


@dataclass(frozen=True)
class Edit:
    error_type: str
    text: str  # the edited span


def candidate_types(span: str) -> list[str]:
    """Error types that apply to `span`, following RISE's rules (numbers present, an equation present)."""
    numbers = _NUMBER.findall(span)
    types = []
    if numbers:  # RISE's prompt uses this type for spans with exactly one number; any number can be changed
        types.append("change_value")
    if len(numbers) > 1:
        types.append("change_multi_value")
    if "=" in span and _EQUATION.search(span):
        types += ["wrong_sub", "del_term", "change_symbol", "swap"]
    return types


def _perturb(value: str, rng: random.Random) -> str:
    n = float(value) if "." in value else int(value)
    for _ in range(20):
        delta = rng.choice([1, 2, 3, 4, 5, 9, 10])
        new = n + delta if rng.random() < 0.5 or n - delta < 0 else n - delta
        if new != n:
            return f"{new:g}" if isinstance(new, float) else str(new)
    return str(n + 1)


def _compute(a: int, op: str, b: int) -> int | None:
    value = _OPS[op](a, b)
    return value if value is not None and value >= 0 else None


def _replace_equation(span: str, m: re.Match, a: int, op: str, b: int, c: int) -> str:
    return span[:m.start()] + f"{a} {op} {b} = {c}" + span[m.end():]


def inject(span: str, error_type: str, rng: random.Random) -> str | None:
    """`span` with one error of `error_type`, or None when that type cannot change this span."""
    if error_type == "change_value" or error_type == "change_multi_value":
        matches = list(_NUMBER.finditer(span))
        if not matches:
            return None
        # Prefer numbers inside a calculation: changing a number the calculation does not use is no error.
        in_eq = [x for x in matches if any(e.start() <= x.start() < e.end() for e in _EQUATION.finditer(span))]
        m = rng.choice(in_eq or matches)
        new = _perturb(m.group(0), rng)
        if error_type == "change_value":
            return span[:m.start()] + new + span[m.end():]
        # Related values: every occurrence of the chosen number changes together.
        return _NUMBER.sub(lambda x: new if x.group(0) == m.group(0) else x.group(0), span)

    eqs = list(_EQUATION.finditer(span))
    if not eqs:
        return None
    m = rng.choice(eqs)
    a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
    if error_type == "wrong_sub":
        # A wrong value is substituted for an operand; the arithmetic after it is right.
        if rng.random() < 0.5:
            a = int(_perturb(str(a), rng))
        else:
            b = int(_perturb(str(b), rng))
        new_c = _compute(a, op, b)
    elif error_type == "del_term":
        # The second term is dropped from the calculation: the result is the first term carried over.
        new_c = a
    elif error_type == "change_symbol":
        op = rng.choice([o for o in ("+", "-", "x") if o != op])
        new_c = _compute(a, op, b)
    elif error_type == "swap":
        if op in ("+", "x", "*", "×"):
            return None  # swapping the terms of a commutative operation is not an error
        a, b = b, a
        new_c = _compute(a, op, b)
    else:
        raise ValueError(f"unknown error type {error_type!r}; known: {ERROR_TYPES}")
    if new_c is None or new_c == c and error_type != "del_term":
        return None
    if error_type == "del_term":
        if a == c:
            return None
        return span[:m.start()] + f"{a} {op} {b} = {new_c}" + span[m.end():]
    return _replace_equation(span, m, a, op, b, new_c)


def rule_edit(span: str, rng: random.Random, allowed: tuple[str, ...] = ERROR_TYPES) -> Edit | None:
    """One error of a type chosen uniformly among those that apply (RISE's random mix), or None."""
    types = [t for t in candidate_types(span) if t in allowed]
    rng.shuffle(types)
    for t in types:
        edited = inject(span, t, rng)
        if edited is not None and edited != span:
            return Edit(t, edited)
    return None


def levenshtein(a: str, b: str) -> int:
    """Character edit distance (for RISE's minimal-edit filter)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]
