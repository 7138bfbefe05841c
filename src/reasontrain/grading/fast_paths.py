"""Two shortcuts inside math-verify that give the verdicts it gives without them, at a fraction of the cost.

1. Two-stage parsing. latex2sympy's ANTLR parser predicts in full-context LL mode, which it cannot cache and which is
   most of the time spent parsing an answer. ANTLR's documented strategy is to parse in SLL mode first (cached,
   context-free prediction) and only on a syntax error parse again in LL mode: an SLL parse that succeeds is the parse
   tree LL would give (ANTLR's PredictionMode.SLL contract), so the result is unchanged.
2. A witness before simplification. math-verify's last resort for two expressions is `simplify(a - b) == 0`, the
   costliest step of a comparison. When `a - b`, built only from arithmetic and elementary functions, evaluates at one
   point (satisfying its symbols' assumptions) to a number clearly away from zero, it is not identically zero, so
   simplification, which preserves values, cannot reduce it to zero: the answer is "not equal" either way. Anything
   else (matrices, sets, unknown functions, values near zero, evaluation failures) takes math-verify's own path.

Nothing here evaluates model text: both shortcuts act on math-verify's sympy objects, inside a grading worker.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import sympy
from antlr4.atn.PredictionMode import PredictionMode
from latex2sympy2_extended import latex2sympy2
from math_verify import grader as mv_grader

_installed = False


class _TwoStageParser:
    """Stands in for latex2sympy's parser, whose only use is `.math()`: SLL first, LL on a syntax error."""

    def __init__(self, make: Callable):
        self._make = make

    def math(self):
        parser = self._make()
        parser._interp.predictionMode = PredictionMode.SLL
        try:
            return parser.math()
        except Exception:  # latex2sympy's error listener raises on the first syntax error; LL decides for real
            return self._make().math()


# Nodes whose value at a point evalf computes reliably; any other node (integrals, sums, undefined functions,
# piecewise, floor, unevaluated percentages ...) sends the pair to simplification as before.
_EVALUABLE = (sympy.Symbol, sympy.Number, sympy.NumberSymbol, sympy.core.numbers.ImaginaryUnit, sympy.Add,
              sympy.Mul, sympy.Pow, sympy.exp, sympy.log, sympy.sin, sympy.cos, sympy.tan, sympy.cot, sympy.sec,
              sympy.csc, sympy.asin, sympy.acos, sympy.atan, sympy.sinh, sympy.cosh, sympy.tanh, sympy.Abs)
# Generic points: positive, not integers, unrelated to each other (no symbol takes another's value).
_POINT = tuple(sympy.Rational(p, q) for p, q in ((37, 29), (53, 31), (61, 23), (71, 43), (89, 47), (97, 41),
                                                    (103, 59), (113, 67), (127, 61), (139, 73)))
_CLEARLY_NONZERO = 1e-8


def _value_fits(symbol: sympy.Symbol, value: sympy.Rational) -> bool:
    """The value has every property the symbol is assumed to have (real, positive, not integer ...)."""
    return all(getattr(value, "is_" + key) == known for key, known in symbol.assumptions0.items())


def nonzero_somewhere(difference: sympy.Basic) -> bool:
    """True only if `difference` is provably not identically zero: its value at a generic point is clearly nonzero."""
    if not isinstance(difference, sympy.Expr):
        return False
    if any(not isinstance(node, _EVALUABLE) for node in sympy.preorder_traversal(difference)):
        return False
    symbols = sorted(difference.free_symbols, key=sympy.default_sort_key)
    if len(symbols) > len(_POINT) or any(not _value_fits(s, v) for s, v in zip(symbols, _POINT)):
        return False
    try:
        value = difference.xreplace(dict(zip(symbols, _POINT))).evalf(30, strict=True)
        number = complex(value)
    except Exception:  # noqa: BLE001 - precision exhausted, not a number, overflow: no witness, no shortcut
        return False
    return math.isfinite(number.real) and math.isfinite(number.imag) and abs(number) > _CLEARLY_NONZERO


def _symbolic_eq_with_witness(a, b) -> bool:
    try:
        if isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr) and nonzero_somewhere(a - b):
            return False
    except Exception:  # noqa: BLE001 - building a - b failed: let math-verify handle (and catch) it
        pass
    return _ORIGINAL_SYMBOLIC_EQ(a, b)


_ORIGINAL_SYMBOLIC_EQ = mv_grader.sympy_symbolic_eq
_ORIGINAL_CREATE_PARSER = latex2sympy2._Latex2Sympy.create_parser


def _create_two_stage_parser(self, latex_str: str) -> _TwoStageParser:
    return _TwoStageParser(lambda: _ORIGINAL_CREATE_PARSER(self, latex_str))


def install() -> None:
    """Put both shortcuts in place for this process (a grading worker); idempotent."""
    global _installed
    if not _installed:
        latex2sympy2._Latex2Sympy.create_parser = _create_two_stage_parser
        mv_grader.sympy_symbolic_eq = _symbolic_eq_with_witness
        _installed = True


# Common answer shapes, parsed once at worker start so SLL prediction is cached before the first real answer.
WARM_UP_ANSWERS = (
    r"\frac{\sqrt{2}}{2}", r"-\frac{7}{3}", r"\dfrac{9}{4}", r"0.75", r"2\sqrt{3} - 1", r"\sqrt[3]{4}", r"3 + 4i",
    r"\frac{a+b}{2}", r"x^2 + 2x - 3", r"3x^3-2", r"(x-1)(x+3)", r"k + 1", r"2^{10}", r"10^{5}", r"e^{2}", r"|x|",
    r"\pi^2", r"12\pi", r"\frac{\pi}{6}", r"\cos \theta", r"\sin 30^\circ", r"\tan^{-1} 2", r"\log_2 8", r"5!",
    r"\binom{10}{3}", r"1010_2", r"1 \pm \sqrt{5}", r"\infty", r"\emptyset",
    r"(0, 1]", r"[-3, \infty)", r"(-\infty, 2) \cup (5, \infty)", r"(1, -2)", r"(3, \frac{\pi}{4}, 7)",
    r"\{1, 2, 3\}", r"\frac{1}{2}, \frac{3}{4}", r"-2, 1, 3", r"\begin{pmatrix} 1 \\ -2 \end{pmatrix}",
    r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"y = 2x + 1", r"x \in [0, 5]", r"x > 3", r"-2 \le x < 1",
    r"a_n = 2^n", r"\text{(A)}", r"\text{even}", r"f(x) = x^2", r"\$1.50", r"50\%", r"10^\circ",
)


def warm_parser(parse_one: Callable[[str], object]) -> None:
    for answer in WARM_UP_ANSWERS:
        parse_one(answer)
