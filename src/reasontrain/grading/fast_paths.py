"""Shortcuts inside math-verify that give the verdicts it gives without them, at a fraction of the cost.

1. Two-stage parsing. latex2sympy's ANTLR parser predicts in full-context LL mode, which it cannot cache and which is
   most of the time spent parsing an answer. ANTLR's documented strategy is to parse in SLL mode first (cached,
   context-free prediction) and only on a syntax error parse again in LL mode: an SLL parse that succeeds is the parse
   tree LL would give (ANTLR's PredictionMode.SLL contract), so the result is unchanged.
   Refined per decision: SLL resolves the conflict of `atom_expr` (`x^2`: a superscript of the letter, or of the
   power around it) to an alternative that needs a subscript, so every answer with a letter raised to a power failed
   SLL and was parsed twice. The first stage therefore predicts that one decision in LL mode and every other in SLL
   mode. The contract holds decision by decision (an SLL prediction differing from LL's leads to a syntax error), so a
   first stage that succeeds still gives LL's tree, and one that fails is parsed again in LL mode as before. The LL
   predictions of that decision are memoized (`_LLMemo`), keyed by everything they read: the decision, the parser's
   rule stack and precedence, and the token types the prediction looked at.
2. A witness before simplification. math-verify's last resort for two expressions is `simplify(a - b) == 0`, the
   costliest step of a comparison. When `a - b`, built only from arithmetic and elementary functions, evaluates at one
   point (satisfying its symbols' assumptions) to a number clearly away from zero, it is not identically zero, so
   simplification, which preserves values, cannot reduce it to zero: the answer is "not equal" either way. Anything
   else (matrices, sets, unknown functions, values near zero, evaluation failures) takes math-verify's own path.

3. Numbers. latex2sympy reads each number literal with `sympy.Number(text)`, which runs sympy's expression parser
   (an `exec` of `from sympy import *` per call); a run of ASCII digits becomes `sympy.Integer(int(text))`, the value
   that parser gives, and other literals are memoized per text (sympy numbers are immutable).

Nothing here evaluates model text: the shortcuts act on math-verify's sympy objects and on the parser's predictions,
inside a grading worker.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import lru_cache

import sympy
from antlr4.atn.ParserATNSimulator import ParserATNSimulator
from antlr4.atn.PredictionMode import PredictionMode
from antlr4.atn.Transition import PredicateTransition
from latex2sympy2_extended import latex2sympy2
from math_verify import grader as mv_grader

_installed = False


def _rule_stack(ctx) -> tuple[int, ...]:
    """The invoking states from `ctx` up to the start rule: what LL prediction's full context is built from."""
    stack = []
    while ctx is not None and ctx.invokingState != -1:
        stack.append(ctx.invokingState)
        ctx = ctx.parentCtx
    return tuple(stack)


class _LLMemo:
    """LL predictions already made, per (decision, rule stack, precedence), each with the token types it read.

    An LL prediction is a deterministic function of the decision, the full rule stack, the precedence its precedence
    predicates compare with (the grammar has no other predicates: `_memo_is_sound`) and the tokens it reads, which it
    reads one after the other from the decision's position, each choice of reading on depending only on those before.
    So an earlier prediction whose tokens are a prefix of the current input is the prediction again."""

    MAX_KEYS = 50_000
    MAX_PER_KEY = 64

    def __init__(self):
        self.table: dict[tuple, list[tuple[tuple[int, ...], int]]] = {}
        self.hits = 0
        self.misses = 0

    def lookup(self, key: tuple, stream) -> int | None:
        for types, alt in self.table.get(key, ()):
            if all(stream.LA(k) == t for k, t in enumerate(types, 1)):
                self.hits += 1
                return alt
        self.misses += 1
        return None

    def store(self, key: tuple, types: tuple[int, ...], alt: int) -> None:
        if len(self.table) >= self.MAX_KEYS:
            self.table.clear()
        entries = self.table.setdefault(key, [])
        if len(entries) < self.MAX_PER_KEY:
            entries.append((types, alt))

    def clear(self) -> None:
        self.table.clear()
        self.hits = self.misses = 0


LL_MEMO = _LLMemo()


class _HybridSimulator(ParserATNSimulator):
    """ANTLR's prediction, in LL mode (memoized) for `ll_decisions` and SLL mode for every other decision."""

    ll_decisions: frozenset[int] = frozenset()
    memo: _LLMemo | None = None

    def adaptivePredict(self, input, decision, outerContext):
        if decision not in self.ll_decisions:
            self.predictionMode = PredictionMode.SLL
            return ParserATNSimulator.adaptivePredict(self, input, decision, outerContext)
        self.predictionMode = PredictionMode.LL
        if self.memo is None:
            return ParserATNSimulator.adaptivePredict(self, input, decision, outerContext)
        key = (decision, _rule_stack(outerContext), self.parser.getPrecedence())
        alt = self.memo.lookup(key, input)
        if alt is not None:
            return alt
        read: dict[int, int] = {}  # token index -> type, of every token the prediction looked at
        exact = [True]
        look_ahead = input.LA

        def recording_la(i: int) -> int:
            t = look_ahead(i)
            if i == 1:
                read[input.index] = t
            else:  # not used by ANTLR's simulator; if it ever is, this prediction is not memoized
                exact[0] = False
            return t

        input.LA = recording_la
        try:
            alt = ParserATNSimulator.adaptivePredict(self, input, decision, outerContext)
        finally:
            del input.LA
        if exact[0] and read:
            self.memo.store(key, tuple(read[i] for i in sorted(read)), alt)
        return alt


def _hybrid(parser, ll_decisions: frozenset[int]):
    sim = _HybridSimulator(parser, parser.atn, parser.decisionsToDFA, parser.sharedContextCache)
    sim.ll_decisions = ll_decisions
    sim.memo = LL_MEMO if _MEMO_IS_SOUND else None
    parser._interp = sim
    return parser


class _TwoStageParser:
    """Stands in for latex2sympy's parser, whose only use is `.math()`: SLL first (LL at the decisions where SLL is
    known to fail), all LL on a syntax error."""

    def __init__(self, make: Callable):
        self._make = make

    def math(self):
        parser = self._make()
        if _LL_DECISIONS is None:
            parser._interp.predictionMode = PredictionMode.SLL
        else:
            _hybrid(parser, _LL_DECISIONS)
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
_ORIGINAL_PARSE_NUMBER = latex2sympy2._Latex2Sympy.parse_number


def _grammar_facts() -> tuple[frozenset[int] | None, bool]:
    """The decisions of latex2sympy's `atom_expr` rule (None if the grammar has no such rule: plain SLL then), and
    whether the grammar's only semantic predicates are precedence predicates (so the LL memo's key is complete)."""
    try:
        from latex2sympy2_extended.gen.antlr4_9_3.PSParser import PSParser

        rule = PSParser.RULE_atom_expr
        atn = PSParser.atn
    except (ImportError, AttributeError):
        return None, False
    decisions = frozenset(d for d, state in enumerate(atn.decisionToState) if state.ruleIndex == rule)
    sound = not any(isinstance(t, PredicateTransition) for state in atn.states for t in state.transitions)
    return decisions or None, sound


_LL_DECISIONS, _MEMO_IS_SOUND = _grammar_facts()


def _create_two_stage_parser(self, latex_str: str) -> _TwoStageParser:
    return _TwoStageParser(lambda: _ORIGINAL_CREATE_PARSER(self, latex_str))


_DIGITS = re.compile(r"[0-9]+")
_MAX_FAST_DIGITS = 1000  # longer ones take sympy's path, which has its own rules for huge literals


@lru_cache(maxsize=4096)
def _number(text: str):
    return sympy.Number(text)


def _parse_number(self, text: str):
    """latex2sympy's `parse_number` (commas dropped, then `sympy.Number`), without sympy's parser for integers."""
    digits = text.replace(",", "")
    if len(digits) <= _MAX_FAST_DIGITS and _DIGITS.fullmatch(digits):
        return sympy.Integer(int(digits))
    if digits.isdigit():  # other Unicode digits: latex2sympy's own path, as it was
        return _ORIGINAL_PARSE_NUMBER(self, text)
    return _number(digits)


def install() -> None:
    """Put the shortcuts in place for this process (a grading worker); idempotent."""
    global _installed
    if not _installed:
        latex2sympy2._Latex2Sympy.create_parser = _create_two_stage_parser
        latex2sympy2._Latex2Sympy.parse_number = _parse_number
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
