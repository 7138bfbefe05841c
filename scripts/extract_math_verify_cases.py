"""Extract math-verify's regression cases (gold, prediction, expected verdict) into tests/data/math_verify_cases.json.

Reads the test files of a checkout of huggingface/Math-Verify (a bare git directory is fine) and keeps every case that
compares a gold answer with a prediction: the `@pytest.mark.parametrize` rows of tests whose body calls
`compare_strings(gold, pred, ...)` or `verify(parse(gold), parse(pred))`, and literal `compare_strings(...)` calls in
test bodies. The options each test passes (match types, precision, strict, allow_set_relation_comp) are recorded with
the case, so tests/test_grading_parity.py can mirror what the case asks for.

    python scripts/extract_math_verify_cases.py /work/.mirror/huggingface+Math-Verify/repo
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "math_verify_cases.json"
FILES = ("test_all.py", "test_boxed.py", "test_numina_cases.py", "test_open_thoughts.py", "test_strict.py",
         "test_yujianll.py")
# compare_strings' defaults in math-verify's tests/test_all.py
DEFAULTS = {"match_types": ["latex", "expr"], "precision": 6, "strict": True, "allow_set_relation_comp": False}


def _value(node: ast.AST):
    try:
        return ast.literal_eval(node)
    except ValueError:
        # One case is an f-string of math.sqrt(17); it is test data from the repository, evaluated with only `math`.
        return eval(compile(ast.Expression(node), "<case>", "eval"), {"__builtins__": {}, "math": math})  # noqa: S307


def _call_options(call: ast.Call, names: dict[str, object]) -> dict:
    """compare_strings(gold, pred, match_types=..., precision=..., ...) -> options; a keyword naming a parameter of
    the parametrized test (precision=precision) is resolved per row from `names`."""
    options = dict(DEFAULTS)
    for kw in call.keywords:
        if isinstance(kw.value, ast.Name):
            options[kw.arg] = names.get(kw.value.id)
        else:
            options[kw.arg] = _value(kw.value)
    return options


def _find_call(func: ast.FunctionDef, name: str) -> ast.Call | None:
    for node in ast.walk(func):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == name:
            return node
    return None


def cases_of(source: str, filename: str) -> list[dict]:
    out = []
    for func in ast.parse(source).body:
        if not isinstance(func, ast.FunctionDef) or not func.name.startswith("test_"):
            continue
        compare = _find_call(func, "compare_strings")
        verify = _find_call(func, "verify")
        params = [d for d in func.decorator_list if isinstance(d, ast.Call)
                  and getattr(d.func, "attr", None) == "parametrize"]
        if params:
            names = [n.strip() for n in _value(params[0].args[0]).split(",")]
            expected_name = "result" if "result" in names else "expected"
            for row in params[0].args[1].elts:
                values = dict(zip(names, (_value(e) for e in row.elts)))
                if compare is not None:
                    options = _call_options(compare, values)
                elif verify is not None and _find_call(func, "parse") is not None:
                    # verify(parse(gold), parse(pred)): parse's default configs (boxed priority 50), default rounding
                    options = {**DEFAULTS, "call": "verify(parse(gold), parse(pred))"}
                else:
                    continue
                options = {k: v for k, v in options.items() if k in DEFAULTS or k == "call"}
                out.append({"source": f"tests/{filename}", "test": func.name, "gold": values["gold"],
                            "pred": values["pred"], "expected": bool(values[expected_name]), **options})
        else:
            for node in ast.walk(func):  # literal calls in a test body, e.g. test_precision's last assertion
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "compare_strings":
                    parent = next(p for p in ast.walk(func) if isinstance(p, ast.Compare) and p.left is node)
                    out.append({"source": f"tests/{filename}", "test": func.name, "gold": _value(node.args[0]),
                                "pred": _value(node.args[1]), "expected": bool(_value(parent.comparators[0])),
                                **_call_options(node, {})})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo", type=Path, help="Math-Verify git directory (bare is fine)")
    args = parser.parse_args()
    git = ["git", "-C", str(args.repo)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    cases = []
    for name in FILES:
        source = subprocess.run([*git, "show", f"HEAD:tests/{name}"], check=True, capture_output=True,
                                text=True).stdout
        cases += cases_of(source, name)
    OUT.write_text(json.dumps({
        "attribution": f"Test cases from huggingface/Math-Verify tests/ (Apache-2.0), commit {commit}",
        "commit": commit,
        "cases": cases,
    }, indent=1, ensure_ascii=False) + "\n")
    equal = sum(c["expected"] for c in cases)
    print(f"{len(cases)} cases ({equal} equivalent, {len(cases) - equal} not) -> {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
