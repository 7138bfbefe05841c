"""`grade` and `grade_many`: the verdict on a response against a gold answer, cheap checks first, then math-verify.

String and exact-number matches are decided in the calling process, by regular expressions and passes that take time
linear in the text (20,000 nested `\\text{}` or 100k characters of junk cost milliseconds). Answers that need a
symbolic comparison, and answers our extraction may have read wrong (a phrase, a bare last number, one of several
boxes, none), go to a worker process under a hard timeout, where math-verify compares our reading and, for the latter,
also reads the response (and a gold written as text) its own way. Model output is parsed only by math-verify's own
parser inside that worker, never evaluated. `grade_many(deadline=)` bounds a whole batch.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from fractions import Fraction

from reasontrain.grading.extract import (DEFAULT_EXTRACTORS, EXTRACTORS, after_final_marker, count_boxes,
                                        extract_with_source, gold_answer)
from reasontrain.grading.normalize import Number, clean, comparison_key, is_text, parse_number
from reasontrain.grading.timeouts import Outcome, symbolic_pool

REASONS = ("correct", "wrong", "no_answer", "gold_unparseable", "timeout", "truncated")
# No real final answer is this long; longer ones are wrong without spending a symbolic check on them.
MAX_ANSWER_CHARS = 4000
# Named, not imported: the calling process never needs math-verify or sympy, only the workers do.
_JUDGE = "reasontrain.grading.equivalence:judge"
# Characters of a response's end that math-verify's own extraction reads: its regular expressions take quadratic time
# on some junk (0.6 s for 4,000 characters of `\\(`), so they see no more than answers need.
MAX_READ_CHARS = 3_000
_MATH_DELIMITER = re.compile(r"(?<!\\)\$|\\[(\[]")
_MEANINGFUL = re.compile(r"\w|[^\x00-\x7f]")  # a letter, a digit, or a symbol such as ∅


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str  # one of REASONS
    predicted: str | None  # the extracted answer, as written in the response


@dataclass(frozen=True)
class GradeOptions:
    """Options accepted by `grade` and `grade_many` as keyword arguments.

    extractors: answer-extraction rules in priority order, from `EXTRACTORS` ("boxed", "hashes", "answer_is",
        "last_number"); e.g. `("hashes",)` accepts only GSM8K's `#### N`. They also choose what math-verify's own
        reading may use: boxes ("boxed"), anchored statements ("answer_is"), math spans and expressions anywhere
        ("last_number"); with `("hashes",)` alone it is never asked.
    final_markers: if given, only the text after the last of these markers (e.g. "</think>") is searched.
    rel_tol: relative tolerance for numbers; a gold written as an integer must be matched exactly.
    percent_scaling: also accept the gold x100 or /100 (OREAL's percentage rule); "50%" always matches "50".
    symbolic: compare with math-verify when the cheap checks do not decide; False = string and number checks only.
    strict: math-verify strict mode (variables matter; a set does not equal a tuple).
    timeout: hard limit in seconds on the symbolic check of one answer; overrunning gives reason "timeout".
    truncated_is_wrong: a response flagged truncated is wrong with reason "truncated" (OREAL's rule).
    """

    extractors: tuple[str, ...] = DEFAULT_EXTRACTORS
    final_markers: tuple[str, ...] = ()
    rel_tol: float = 1e-4
    percent_scaling: bool = False
    symbolic: bool = True
    strict: bool = True
    timeout: float = 5.0
    truncated_is_wrong: bool = False

    def __post_init__(self):
        object.__setattr__(self, "extractors", tuple(self.extractors))
        object.__setattr__(self, "final_markers", tuple(self.final_markers))
        unknown = set(self.extractors) - set(EXTRACTORS)
        if unknown or not self.extractors:
            raise ValueError(f"extractors must be a non-empty selection of {EXTRACTORS}, got {self.extractors}")
        if not self.timeout or self.timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        if self.rel_tol < 0:
            raise ValueError(f"rel_tol must be >= 0, got {self.rel_tol}")


_OPTION_NAMES = {f.name for f in fields(GradeOptions)}


def _options(options: dict) -> GradeOptions:
    unknown = set(options) - _OPTION_NAMES
    if unknown:
        raise TypeError(f"unknown grading options {sorted(unknown)}; known: {sorted(_OPTION_NAMES)}")
    return GradeOptions(**options)


@dataclass(frozen=True)
class _Pending:
    """An answer the cheap checks could not decide (or may have read wrong): goes to a worker, `args` for `judge`."""

    predicted: str | None  # our extracted answer, as written
    args: tuple  # (our cleaned answer or None, cleaned gold, strict, response or None, gold text or None, how)
    fallback: Verdict  # the verdict when the worker finds no equality and math-verify reads no other answer
    defer: bool = False  # math-verify's reading replaces ours (a math span before a bare last number)


def _close(a: Fraction, b: Fraction, rel_tol: float) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=rel_tol)
    except OverflowError:
        return False


def numbers_match(predicted: Number, gold: Number, rel_tol: float = 1e-4, percent_scaling: bool = False) -> bool:
    """Exact match, or within `rel_tol` unless the gold is written as an integer (12345 must not accept 12346)."""
    if predicted.value == gold.value:
        return True
    if not gold.integer_literal and _close(predicted.value, gold.value, rel_tol):
        return True
    if percent_scaling:
        return any(predicted.value == t or _close(predicted.value, t, rel_tol)
                   for t in (gold.value * 100, gold.value / 100))
    return False


def _ours(predicted: str | None, gold_clean: str, opts: GradeOptions) -> Verdict | str:
    """Our verdict from the extracted answer, or its cleaned form when only the symbolic check can decide."""
    if predicted is None:
        return Verdict(False, "no_answer", None)
    cleaned = clean(predicted)
    if not cleaned:
        return Verdict(False, "wrong", predicted)
    if comparison_key(cleaned) == comparison_key(gold_clean):
        return Verdict(True, "correct", predicted)
    g, p = parse_number(gold_clean), parse_number(cleaned)
    if g is not None and p is not None:
        ok = numbers_match(p, g, opts.rel_tol, opts.percent_scaling)
        return Verdict(ok, "correct" if ok else "wrong", predicted)
    if not opts.symbolic or len(cleaned) > MAX_ANSWER_CHARS or is_text(gold_clean) or is_text(cleaned):
        return Verdict(False, "wrong", predicted)
    return cleaned


def _cheap_verdict(response: str, gold, truncated: bool, opts: GradeOptions) -> Verdict | _Pending:
    """Decide what string and number checks can; hand the rest to a worker.

    Our extraction is trusted when it found a single box or a `#### N`. When it found the answer in a phrase, as a
    bare last number, in one of several boxes, or not at all, or when the gold is written as text with math in it,
    a "correct" from these checks stands, and otherwise math-verify's own reading of the response (and of the gold)
    is asked in the worker: it joins boxes into sets, reads relations, matrices and decimal commas. A math span in a
    response without box or phrase is read by math-verify before a bare last number is believed.
    """
    gold = str(gold)
    target = gold_answer(gold)
    gold_clean = clean(target) if target is not None else ""
    if not _MEANINGFUL.search(gold_clean):  # empty, or only punctuation such as "." or "?"
        return Verdict(False, "gold_unparseable", None)
    if truncated and opts.truncated_is_wrong:
        return Verdict(False, "truncated", None)
    text = after_final_marker(str(response), opts.final_markers)
    predicted, source = extract_with_source(text, opts.extractors)
    ours = _ours(predicted, gold_clean, opts)
    how = ("boxed" in opts.extractors, "answer_is" in opts.extractors, "last_number" in opts.extractors)
    defer = opts.symbolic and source == "last_number" and _MATH_DELIMITER.search(text) is not None
    if isinstance(ours, Verdict) and (ours.correct and not defer):
        return ours
    rich_gold = "####" not in gold and (_MATH_DELIMITER.search(gold) is not None or count_boxes(gold) > 1)
    weak = source in (None, "answer_is", "last_number") or (source == "boxed" and count_boxes(text) > 1)
    if source in (None, "last_number") and parse_number(gold_clean) is not None and "\\" not in text \
            and _MATH_DELIMITER.search(text) is None:
        # Plain text and a numeric gold: math-verify's reading would evaluate a trailing expression ("... 1 + 4"
        # read as 5), which in plain-text reasoning is a step, not the answer. Our bare last number stands.
        weak = False
    cleaned = ours if isinstance(ours, str) else None
    if not (opts.symbolic and any(how) and (weak or rich_gold)):
        return ours if isinstance(ours, Verdict) else _Pending(predicted, (cleaned, gold_clean, opts.strict),
                                                                 Verdict(False, "wrong", predicted))
    fallback = ours if isinstance(ours, Verdict) else Verdict(False, "wrong", predicted)
    # The end of the response: where answers are, and a bound on what math-verify's regular expressions scan.
    args = (cleaned, gold_clean, opts.strict, text[-MAX_READ_CHARS:], gold if rich_gold else None, how)
    return _Pending(predicted, args, fallback, defer)


def _symbolic_verdict(pending: _Pending, outcome: Outcome) -> Verdict:
    if outcome.status in ("timeout", "died"):  # died: killed by the memory cap or a crash while computing
        return Verdict(False, "timeout", pending.predicted)
    if outcome.status != "ok":
        return Verdict(False, "wrong", pending.predicted)
    ok, seen = outcome.value
    shown = seen if (pending.defer or pending.predicted is None) and seen is not None else pending.predicted
    if ok:
        return Verdict(True, "correct", shown)
    if pending.defer and seen is not None and pending.predicted is not None and \
            comparison_key(clean(seen)) == comparison_key(clean(pending.predicted)):
        return pending.fallback  # math-verify read the same answer as ours: our tolerance for numbers stands
    if seen is not None and (pending.defer or not pending.fallback.correct):
        return Verdict(False, "wrong", shown)
    return pending.fallback


def grade(response: str, gold: str, truncated: bool = False, truncated_is_wrong: bool = False,
          **options) -> Verdict:
    """Grade one response against a gold answer (a bare answer, or a worked solution ending `#### N` / `\\boxed{}`).

    `options` are `GradeOptions` fields. An unparseable gold is never correct. Safe to call from any thread.
    """
    opts = _options({"truncated_is_wrong": truncated_is_wrong, **options})
    step = _cheap_verdict(response, gold, truncated, opts)
    if isinstance(step, Verdict):
        return step
    [outcome] = symbolic_pool().map(_JUDGE, [step.args], timeout=opts.timeout)
    return _symbolic_verdict(step, outcome)


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _size(args: tuple) -> int:
    return sum(len(a) for a in args if isinstance(a, str))


def grade_many(responses: Sequence[str], golds: Sequence[str], *, truncated: bool | Sequence[bool] = False,
               workers: int | None = None, timeout: float = 5.0, deadline: float | None = None,
               progress: bool = True, desc: str = "grading", **options) -> list[Verdict]:
    """Grade `responses[i]` against `golds[i]` for all i, symbolic checks in `workers` processes; results in order.

    `truncated` is one flag for all or one per response. Identical checks are run once. `options` are `GradeOptions`
    fields; `timeout` bounds each symbolic check. `deadline` bounds the whole call, in seconds from its start
    (worker start-up included): answers whose check has not finished by then get reason "timeout", like an answer
    whose own check overran. Safe to call from any thread.
    """
    from tqdm.auto import tqdm

    started = time.monotonic()
    if deadline is not None and not deadline > 0:
        raise ValueError(f"deadline must be a positive number of seconds, got {deadline!r}")
    if len(responses) != len(golds):
        raise ValueError(f"{len(responses)} responses but {len(golds)} gold answers")
    flags = [truncated] * len(responses) if isinstance(truncated, bool) else list(truncated)
    if len(flags) != len(responses):
        raise ValueError(f"{len(responses)} responses but {len(flags)} truncated flags")
    opts = _options({"timeout": timeout, **options})
    steps = [_cheap_verdict(r, g, t, opts) for r, g, t in zip(responses, golds, flags)]
    by_args: dict[tuple, list[int]] = {}
    for i, step in enumerate(steps):
        if isinstance(step, _Pending):
            by_args.setdefault(step.args, []).append(i)
    # Longest first: the costliest checks start early, so no worker is left finishing a long one while the other idles.
    checks = sorted(by_args, key=lambda args: -_size(args))
    verdicts: list[Verdict | None] = [s if isinstance(s, Verdict) else None for s in steps]
    with tqdm(total=len(steps), desc=desc, disable=not progress, dynamic_ncols=True) as bar:
        bar.update(len(steps) - sum(len(v) for v in by_args.values()))

        def on_done(j: int, outcome: Outcome) -> None:
            for i in by_args[checks[j]]:
                verdicts[i] = _symbolic_verdict(steps[i], outcome)
            bar.update(len(by_args[checks[j]]))

        symbolic_pool().map(_JUDGE, checks, timeout=opts.timeout, workers=workers or default_workers(),
                            on_done=on_done, affinity=[args[1] for args in checks],
                            deadline=None if deadline is None else started + deadline)
    return verdicts  # type: ignore[return-value]
