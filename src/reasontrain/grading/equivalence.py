"""Symbolic equivalence of two cleaned answers with math-verify (sets, intervals, matrices, radicals, expressions).

These functions have no time bound of their own: math-verify's signal-based timeouts are switched off because they only
work in a main thread. Call them through `reasontrain.grading.timeouts`, which runs them in a killable worker process.

Importing this module (only grading workers do) installs two shortcuts into math-verify that leave every verdict as it
was and make the check several times cheaper (`fast_paths.py`): LaTeX is parsed with ANTLR's two-stage strategy, and
the simplification of `a - b` is skipped when `a - b` is nonzero at a point.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from reasontrain.grading.fast_paths import install, warm_parser

# math-verify warns once that its timeout is disabled; here the worker process is the timeout.
logging.getLogger("math_verify").setLevel(logging.ERROR)
install()

_CONFIG = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())


@lru_cache(maxsize=4096)
def parsed(answer: str) -> tuple:
    """math-verify's reading of one answer; the whole string is the answer, so it is boxed before parsing."""
    return tuple(parse("\\boxed{" + answer + "}", extraction_config=_CONFIG, parsing_timeout=None))


def symbolic_equal(predicted: str, gold: str, strict: bool = True) -> bool:
    """Whether math-verify finds `predicted` equivalent to `gold`; False when either cannot be parsed."""
    g = parsed(gold)
    p = parsed(predicted) if g else ()  # an unreadable gold matches nothing: the answer need not be parsed
    if not g or not p:
        return False
    return bool(verify(list(g), list(p), strict=strict, timeout_seconds=None))


def warm_up() -> None:
    """Pay math-verify's one-time set-up (parser construction, sympy caches, the parser's prediction cache for common
    answer shapes) before the first real answer."""
    symbolic_equal("\\frac{\\sqrt{2}}{2}", "(0, 1]")
    warm_parser(lambda answer: parsed(answer))
    parsed.cache_clear()
