"""Normalize an extracted answer (LaTeX clutter, units, separators) and read plain numbers exactly.

Only regular expressions and `fractions.Fraction` on short digit strings: nothing here evaluates model text.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import NamedTuple

from reasontrain.grading.extract import unwrap_boxed

# Units a number may be followed by (answers like "5 cm", "36 dollars"). Single letters that are also common
# variables (x, i, e, ...) are left out so "2 i" or "3 x" keep their meaning.
UNIT_WORDS = frozenset("""
    mm cm m km in inch inches ft foot feet yd yard yards mi mile miles meter meters metre metres centimeter
    centimeters millimeter millimeters kilometer kilometers mg g kg gram grams kilogram kilograms lb lbs pound
    pounds oz ounce ounces ton tons ml l liter liters litre litres gallon gallons quart quarts cup cups pint pints
    s sec secs second seconds min mins minute minutes h hr hrs hour hours day days week weeks month months
    year years mph kph km/h unit units sq square cubic degree degrees deg radian radians dollar dollars cent
    cents euro euros percent points point per each times
""".split())

_DELIMS = re.compile(r"\\[()\[\]]|\$")
_TEXT_CMD = re.compile(
    r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}")
# Tokens of `_strip_text_commands`: a text command's opening, an escaped character, a brace.
_TEXT_TOKEN = re.compile(
    r"\\(?:textbf|textit|textrm|textnormal|text|mathrm|mathbf|mathit|mbox|operatorname)\s*\{|\\.|[{}]", re.DOTALL)
_SPACES = re.compile(r"\\[,!;:>]|\\(?:displaystyle|textstyle|limits)(?![a-zA-Z])")
_WIDE_SPACES = re.compile(r"\\ |\\q?quad(?![a-zA-Z])|~")
# A row break `\\` is parked under this name while cleaning, so `\\ ` is never read as the space `\ ` and so on.
_ROW_BREAK = "\x00"
_LEFT_RIGHT = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])\s*")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|°|\\degree(?![a-zA-Z])")
_TRIG = re.compile(r"\\(?:sin|cos|tan|cot|sec|csc)(?![a-zA-Z])")
_FRAC_VARIANT = re.compile(r"\\[dt]frac(?![a-zA-Z])")
# \frac12 -> \frac{1}{2}, \frac 59 -> \frac{5}{9}, \frac9{19} -> \frac{9}{19}, \sqrt2 -> \sqrt{2}
_FRAC_SHORT = re.compile(r"\\frac\s*(\d|\{[^{}]*\})\s*(\d|\{[^{}]*\})")
_SQRT_SHORT = re.compile(r"\\sqrt\s*(\d)")
_TRAILING_TEXT_UNIT = re.compile(r"(?<=[\d}])\s*\\(?:text|mbox|mathrm)\s*\{\s*[a-zA-Z][a-zA-Z .]*\}(?:\^\s*\{?\d\}?)?$")
_TRAILING_WORDS = re.compile(r"^(.*[\d}])\s*([a-zA-Z/][a-zA-Z/ .]*?)\s*(?:\^\s*\{?\d\}?)?$")
_MAX_UNIT_SCAN = 200  # units follow short answers; longer strings are not scanned for them at all
# `10,\! 000` is LaTeX for a thousands separator; the space after it must not make a tuple of it.
_THIN_THOUSANDS = re.compile(r"(?<=\d),\s*\\!\s*(?=\d{3})")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:(?:,|\{,\}|\\,)\d{3})+(?:\.\d+)?")
_CHOICE = re.compile(r"^\(?([A-Ea-e])\)$|^\(([A-Ea-e])\)?$")
_SHORT_LHS = re.compile(r"^\s*[a-zA-Z](?:_\{?\w+\}?)?\s*=(?!=)")
_WHITESPACE = re.compile(r"\s+")
_TEXT_ANSWER = re.compile(r"[A-Za-z][A-Za-z ,'-]*")

_MAX_NUMBER_CHARS = 80
_INT = r"-?\d+"
_DEC = r"-?(?:\d+\.\d*|\.\d+|\d+)"
_NUM_DECIMAL = re.compile(_DEC)
# Scientific notation with a bounded exponent (three digits at most), so the exact value stays small to compute.
_NUM_SCI = re.compile(rf"({_DEC})(?:[eE]|\\times10\^|\\cdot10\^|\*10\^)\{{?([+-]?\d{{1,3}})\}}?")
_NUM_SLASH = re.compile(rf"({_INT})\s*/\s*(\d+)")
_NUM_FRAC = re.compile(r"(-?)\\frac\{\s*(-?\d+)\s*\}\{\s*(-?\d+)\s*\}")
_NUM_MIXED = re.compile(r"(-?)(\d+)\s*\\frac\{\s*(\d+)\s*\}\{\s*(\d+)\s*\}")


def _braced(arg: str) -> str:
    return arg if arg.startswith("{") else "{" + arg + "}"


def _strip_text_commands(s: str) -> str:
    """`\\text{abc}` -> `abc`, from the inside out (`\\text{\\textbf{x}}` -> `x`), in one pass over the text.

    A command is unwrapped when its content, once the commands inside it are unwrapped, holds no brace: `\\text{a}`
    goes, `\\text{\\frac{1}{2}}` stays. One pass with a stack, so 20,000 nested commands take linear time.
    """
    if "\\" not in s:
        return s
    out: list[str] = []
    stack: list[list] = []  # per open group: [opener's index in `out` or -1 for a plain brace, holds a brace?]
    pos = 0
    for tok in _TEXT_TOKEN.finditer(s):
        out.append(s[pos:tok.start()])
        pos = tok.end()
        t = tok.group()
        if t == "}":
            if not stack:
                out.append(t)
                continue
            opener, dirty = stack.pop()
            if opener >= 0 and not dirty:
                out[opener] = ""  # unwrapped: the opener goes, and this brace is not written
                continue
            out.append(t)
            if stack:
                stack[-1][1] = True
        elif t == "{":
            if stack:
                stack[-1][1] = True
            stack.append([-1, False])
            out.append(t)
        elif len(t) == 2:  # an escaped character: `\\{` and `\\}` are braces for this purpose
            if stack and t[1] in "{}":
                stack[-1][1] = True
            out.append(t)
        else:  # a text command's opening: its parent learns whether it stayed when it closes
            stack.append([len(out), False])
            out.append(t)
    out.append(s[pos:])
    return "".join(out)


def _drop_percent(s: str) -> str:
    """A trailing `%` or `\\%` and the spaces around it go (string ends, not a regular expression: a long run of
    spaces before something else would make `\\s*%` quadratic)."""
    t = s.rstrip()
    for sign in ("\\%", "%"):
        if t.endswith(sign):
            return t[:-len(sign)].rstrip()
    return s


def _drop_trailing_units(s: str) -> str:
    if len(s) > _MAX_UNIT_SCAN:
        return s
    s = _TRAILING_TEXT_UNIT.sub("", s)
    m = _TRAILING_WORDS.match(s)
    if m and all(w.rstrip(".") in UNIT_WORDS for w in m.group(2).lower().split()):
        return m.group(1)
    return s


def clean(answer: str) -> str:
    """LaTeX-level normalization of one extracted answer; keeps the spacing LaTeX needs, so math-verify can parse it."""
    s = unwrap_boxed(answer.strip()).replace(_ROW_BREAK, "").replace("\\\\", _ROW_BREAK)
    s = s.replace("\\$", "").replace("\u2212", "-")  # U+2212 is the typographic minus
    s = _DELIMS.sub("", s)
    s = _FRAC_VARIANT.sub(r"\\frac", s)
    s = _LEFT_RIGHT.sub("", s)
    s = _THIN_THOUSANDS.sub(",", s)
    s = _SPACES.sub("", s)
    s = _WIDE_SPACES.sub(" ", s)
    if not _TRIG.search(s):  # in `\cos 30^\circ` the degree sign changes the value
        s = _DEGREES.sub("", s)
    s = _drop_trailing_units(s)
    s = _strip_text_commands(s)
    s = _drop_percent(s)
    s = _FRAC_SHORT.sub(lambda m: "\\frac" + "".join(_braced(g) for g in m.groups()), s)
    s = _SQRT_SHORT.sub(r"\\sqrt{\1}", s)
    s = s.strip().rstrip(".").strip()
    s = _drop_trailing_units(s).strip()
    if s.count("=") == 1 and _SHORT_LHS.match(s):  # "x = 5" answers the question "x"
        s = s.split("=", 1)[1].strip()
    if _THOUSANDS.fullmatch(s):
        s = re.sub(r"\{,\}|\\,|,", "", s)
    choice = _CHOICE.match(s)
    if choice:
        s = (choice.group(1) or choice.group(2)).upper()
    return _WHITESPACE.sub(" ", s).strip().replace(_ROW_BREAK, "\\\\")


def comparison_key(cleaned: str) -> str:
    """The string form two answers must share to be equal as strings: no whitespace; plain words case-folded."""
    key = _WHITESPACE.sub("", cleaned)
    if _TEXT_ANSWER.fullmatch(cleaned):
        key = key.lower()
    return key


def is_text(cleaned: str) -> bool:
    """Plain words ("Evelyn", "even", "no solution"): compared as strings only, since math-verify would read them as
    products of single-letter variables, and "even" would equal "neve"."""
    return bool(_TEXT_ANSWER.fullmatch(cleaned)) and re.search(r"[A-Za-z]{3}", cleaned) is not None


class Number(NamedTuple):
    value: Fraction
    integer_literal: bool  # written as an integer (no decimal point, no fraction): compared exactly


def parse_number(cleaned: str) -> Number | None:
    """The exact value of a plain number (`-12`, `0.5`, `.5`, `3/4`, `\\frac{3}{4}`, `1\\frac{4}{5}`); None otherwise.

    Exponents and anything longer than a few dozen characters are refused: they go to the symbolic check, which has
    a hard timeout, so `10^{10^{10}}` cannot stall the caller.
    """
    s = cleaned.replace(" ", "")
    if not s or len(s) > _MAX_NUMBER_CHARS:
        return None
    try:
        if _NUM_DECIMAL.fullmatch(s):
            return Number(Fraction(s), re.fullmatch(_INT, s) is not None)
        m = _NUM_SCI.fullmatch(s)
        if m:
            return Number(Fraction(m.group(1)) * Fraction(10) ** int(m.group(2)), False)
        m = _NUM_SLASH.fullmatch(s)
        if m and int(m.group(2)) != 0:
            return Number(Fraction(int(m.group(1)), int(m.group(2))), False)
        m = _NUM_FRAC.fullmatch(s)
        if m and int(m.group(3)) != 0:
            value = Fraction(int(m.group(2)), int(m.group(3)))
            return Number(-value if m.group(1) else value, False)
        m = _NUM_MIXED.fullmatch(s)
        if m and int(m.group(4)) != 0:
            value = int(m.group(2)) + Fraction(int(m.group(3)), int(m.group(4)))
            return Number(-value if m.group(1) else value, False)
    except (ValueError, ZeroDivisionError):
        return None
    return None
