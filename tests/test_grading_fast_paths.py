"""The shortcuts the grading workers install into math-verify (reasontrain.grading.fast_paths) give the results
math-verify gives without them: two-stage parsing yields the same sympy objects as full LL parsing, and the numeric
witness only ever answers "not equal" for expressions that differ, leaving every equal pair to simplification."""

import pytest

pytest.importorskip("math_verify")

import sympy  # noqa: E402
from latex2sympy2_extended import latex2sympy2  # noqa: E402
from math_verify import parser as mv_parser  # noqa: E402

from reasontrain.grading import equivalence, fast_paths  # noqa: E402

ANSWERS = [
    r"\frac{\sqrt{3}}{3}", r"2\sqrt{2}", r"x^2+2x+1", "(x+1)^2", r"(-\infty,2)\cup(3,\infty)", r"\{1,2,3\}",
    r"(3, \frac{\pi}{2})", r"\begin{pmatrix} 0.2 \\ -3.6 \end{pmatrix}", "y=-2x", r"1 \pm \sqrt{19}", "6+9i",
    r"\cos \theta", r"x \in [-2,7]", r"\frac{a+b}{2}, a-b", r"\text{(B)}", r"10^{10^{10}}", r"f(x) = \log_2 x",
    r"\sqrt[3]{2} - 1", r"\dfrac{9}{4}\pi", r"2k+2", "p - q", r"-2 < x \le 5", r"\left(1, \frac{1}{2}\right]",
    r"\frac{1}{2", r"((", r"\sum_{k=1}^{n} k", r"\int_0^1 x dx", "3!", r"\binom{5}{2}", "4210_{5}",
]


def _parse_all() -> list[str]:
    out = []
    for answer in ANSWERS:
        mv_parser.parse_latex_cached.cache_clear()
        equivalence.parsed.cache_clear()
        out.append(repr([sympy.srepr(x) if isinstance(x, sympy.Basic) else str(x) for x in equivalence.parsed(answer)]))
    return out


def test_two_stage_parsing_gives_the_trees_of_full_ll_parsing(monkeypatch):
    assert latex2sympy2._Latex2Sympy.create_parser is fast_paths._create_two_stage_parser
    two_stage = _parse_all()
    monkeypatch.setattr(latex2sympy2._Latex2Sympy, "create_parser", fast_paths._ORIGINAL_CREATE_PARSER)
    assert _parse_all() == two_stage
    assert sum("EXC" in r or r == "[]" for r in two_stage) < len(ANSWERS)


x, y = sympy.symbols("x y", real=True)
EQUAL = [
    ((x + 1) ** 2, x ** 2 + 2 * x + 1),
    (sympy.sqrt(8), 2 * sympy.sqrt(2)),
    (sympy.sin(x) ** 2 + sympy.cos(x) ** 2, sympy.Integer(1)),
    (sympy.sqrt(2) + sympy.sqrt(3), sympy.sqrt(5 + 2 * sympy.sqrt(6))),
    (sympy.log(x * y), sympy.log(x) + sympy.log(y)),  # equal at positive points, not everywhere: no witness
    ((x ** 2 - 1) / (x - 1), x + 1),
    (sympy.Rational(1, 3), sympy.Float(0.3333333333333333)),
]
UNEQUAL = [
    (x ** 2 + 1, (x + 1) ** 2),
    (sympy.sqrt(3), sympy.Rational(17, 10)),
    (2 * sympy.Symbol("k", real=True) + 2, sympy.Symbol("p", real=True) - sympy.Symbol("q", real=True)),
    (sympy.pi / 6, sympy.cot(x)),
]


@pytest.mark.parametrize("a,b", EQUAL)
def test_witness_never_separates_equal_expressions(a, b):
    assert not fast_paths.nonzero_somewhere(a - b)


@pytest.mark.parametrize("a,b", UNEQUAL)
def test_witness_separates_different_expressions(a, b):
    assert fast_paths.nonzero_somewhere(a - b)


def test_witness_declines_what_it_cannot_evaluate_reliably():
    n = sympy.Symbol("n", integer=True)
    f = sympy.Function("f")
    for difference in (sympy.floor(x) - x, f(x) - x, sympy.Integral(x, (x, 0, 1)) - 1, n - sympy.Rational(1, 2),
                       sympy.Matrix([1, 2]), sympy.Interval(0, 1)):
        assert not fast_paths.nonzero_somewhere(difference)


def test_verdicts_with_and_without_the_witness_agree(monkeypatch):
    pairs = [(b, a) for a, b in EQUAL + UNEQUAL]
    fast = [fast_paths._symbolic_eq_with_witness(a, b) for a, b in pairs]
    slow = [fast_paths._ORIGINAL_SYMBOLIC_EQ(a, b) for a, b in pairs]
    assert fast == slow and any(fast) and not all(fast)


# Answers with a letter raised to a power: SLL mispredicts `atom_expr` on them, so they exercise the decision parsed in
# LL mode inside the first stage, and its memo (the same shapes repeat).
POWERS = ["x^2", "y^2", "5r^5", "3R^2", r"\pi^2", "x^2 + 2x - 3", "x^5 - x^4 + x^3 - x^2 + x - 1", "8n^2 + 4n + 1",
          r"[ \frac{\pi^2}{8}, \frac{5 \pi^2}{4} ]", "y_1^2", r"x^{2}_{3}", "a^2+b^2=c^2", r"\sqrt{x^2+1}", "(x^2, y^3)",
          r"\begin{pmatrix} x^2 \\ 1 \end{pmatrix}", r"e^{x^2}", r"x^2 \le 4", r"\{x^2, 2\}"]


def _parse(answers) -> list[str]:
    out = []
    for answer in answers:
        mv_parser.parse_latex_cached.cache_clear()
        equivalence.parsed.cache_clear()
        out.append(repr([sympy.srepr(x) if isinstance(x, sympy.Basic) else str(x) for x in equivalence.parsed(answer)]))
    return out


def test_first_stage_parses_powers_without_falling_back_to_ll(monkeypatch):
    made = []
    original = fast_paths._TwoStageParser.__init__

    def counting_init(self, make):
        original(self, lambda: made.append(1) or make())

    monkeypatch.setattr(fast_paths._TwoStageParser, "__init__", counting_init)
    results = _parse(POWERS)
    assert all(r != "[]" for r in results)
    assert len(made) == len(POWERS)  # one parser each: no second, LL, stage


def test_first_stage_and_its_memo_give_the_trees_of_full_ll_parsing(monkeypatch):
    fast_paths.LL_MEMO.clear()
    hybrid = _parse(POWERS + ANSWERS)
    again = _parse(POWERS + ANSWERS)  # now answered from the memo where the shapes repeat
    assert fast_paths.LL_MEMO.hits > 0
    monkeypatch.setattr(fast_paths._HybridSimulator, "memo", None)
    monkeypatch.setattr(fast_paths, "_MEMO_IS_SOUND", False)
    unmemoized = _parse(POWERS + ANSWERS)
    monkeypatch.setattr(latex2sympy2._Latex2Sympy, "create_parser", fast_paths._ORIGINAL_CREATE_PARSER)
    assert _parse(POWERS + ANSWERS) == hybrid == again == unmemoized


def test_ll_memo_matches_on_the_tokens_read_only():
    memo = fast_paths._LLMemo()

    class Stream:
        def __init__(self, types):
            self.types = types

        def LA(self, k):
            return self.types[k - 1] if k <= len(self.types) else -1

    memo.store(("d", (1, 2), 0), (5, 7), 3)
    assert memo.lookup(("d", (1, 2), 0), Stream([5, 7, 9])) == 3  # a prefix of the input: the same prediction
    assert memo.lookup(("d", (1, 2), 0), Stream([5, 8])) is None
    assert memo.lookup(("d", (1,), 0), Stream([5, 7])) is None  # another rule stack
    assert memo.lookup(("d", (1, 2), 1), Stream([5, 7])) is None  # another precedence
    assert (memo.hits, memo.misses) == (1, 3)


@pytest.mark.parametrize("text", ["0", "7", "007", "123", "1,000", "12345678901234567890", "0.50", "1.", ".5", "3.14159",
                                  "1" * 1200, "\u00b2"])
def test_number_literals_read_as_latex2sympy_reads_them(text):
    try:
        expected = fast_paths._ORIGINAL_PARSE_NUMBER(None, text)
    except Exception as e:  # noqa: BLE001 - the shortcut must fail the same way
        with pytest.raises(type(e)):
            fast_paths._parse_number(None, text)
        return
    got = fast_paths._parse_number(None, text)
    assert type(got) is type(expected) and sympy.srepr(got) == sympy.srepr(expected)


def test_a_batch_parses_each_distinct_answer_once(monkeypatch):
    """Pairs that repeat answers (one gold, many samples; the same sample against several golds) parse each distinct
    string once in a worker."""
    golds = [r"\frac{\sqrt{3}}{2}", "x^2+1", r"(1, \frac{\pi}{2})"]
    samples = ["x^2 + 1", r"\frac{\sqrt{3}}{2}", "(x+1)^2", r"(1, \frac{\pi}{2})", "x^2 + 1"]
    made = []
    original = fast_paths._TwoStageParser.__init__
    monkeypatch.setattr(fast_paths._TwoStageParser, "__init__",
                        lambda self, make: made.append(1) or original(self, make))
    mv_parser.parse_latex_cached.cache_clear()
    equivalence.parsed.cache_clear()
    verdicts = [equivalence.symbolic_equal(s, g) for g in golds for s in samples]
    assert len(made) == len(set(golds) | set(samples))
    assert verdicts.count(True) == 4  # x^2 + 1 (twice), the square root and the tuple match their golds
    # Without the per-worker caches (every pair parsed afresh, LL memo off), the same verdicts.
    monkeypatch.setattr(fast_paths, "_MEMO_IS_SOUND", False)
    fresh = []
    for g in golds:
        for s in samples:
            mv_parser.parse_latex_cached.cache_clear()
            equivalence.parsed.cache_clear()
            fresh.append(equivalence.symbolic_equal(s, g))
    assert fresh == verdicts
