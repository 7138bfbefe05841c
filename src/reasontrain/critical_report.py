"""Where cDPO's critical tokens sit: rejected responses with their highest-weighted tokens marked (markdown and
a picture), and, on the arithmetic task, how often the top-weighted token is at or right after the first
wrong number of the response.

A rejected arith solution can be checked number by number against the gold solution, which is a deterministic
function of the question: the first number that differs is the first wrong number.
"""

from __future__ import annotations

import re
from pathlib import Path

_NUMBER = re.compile(r"\d+")


def first_wrong_number(response: str, gold_solution: str) -> tuple[int, int] | None:
    """(start, end) character span of the first number of `response` that differs from the number at the same
    index in `gold_solution` (or that the gold solution does not have); None when every number matches."""
    want = [m.group() for m in _NUMBER.finditer(gold_solution)]
    for i, m in enumerate(_NUMBER.finditer(response)):
        if i >= len(want) or m.group() != want[i]:
            return m.start(), m.end()
    return None


def token_spans(tokenizer, ids: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """The decoded response and each token's (start, end) character span in it (special tokens: empty spans).

    Spans come from decoding growing prefixes, so tokenizers whose single tokens decode differently in context
    (sentencepiece's leading spaces) still get spans that add up to the decoded text.
    """
    spans, prev = [], 0
    for j in range(len(ids)):
        end = len(tokenizer.decode(ids[:j + 1], skip_special_tokens=True))
        spans.append((prev, end))
        prev = end
    return tokenizer.decode(ids, skip_special_tokens=True), spans


def top_tokens(weights: list[float], spans: list[tuple[int, int]], k: int) -> list[int]:
    """Indices of the `k` highest weights among tokens with text (ties: earlier first)."""
    order = sorted((i for i, (s, e) in enumerate(spans) if e > s), key=lambda i: (-weights[i], i))
    return order[:k]


def position_class(spans: list[tuple[int, int]], index: int, wrong: tuple[int, int]) -> str:
    """'at' the first wrong number, 'right_after' it (the next token with text), 'before' or 'later'."""
    s, e = spans[index]
    ws, we = wrong
    if s < we and e > ws:
        return "at"
    if e <= ws:
        return "before"
    nxt = next((i for i, (a, b) in enumerate(spans) if b > a and a >= we), None)
    return "right_after" if index == nxt else "later"


def marked(text: str, spans: list[tuple[int, int]], indices: list[int], weights: list[float]) -> str:
    """`text` with the tokens at `indices` wrapped as ⟦token⟧."""
    out, pos = [], 0
    for i in sorted(indices, key=lambda i: spans[i][0]):
        s, e = spans[i]
        out.append(text[pos:s] + "⟦" + text[s:e] + "⟧")
        pos = e
    return "".join(out) + text[pos:]


def critical_token_summary(pairs: list[dict], tokenizer, arith: bool, examples: int = 4, top_k: int = 3) -> dict:
    """Counts of where the top-weighted rejected token sits relative to the first wrong number (arith only),
    the share expected if it sat at a random token, and `examples` pairs prepared for the report."""
    counts = {"at": 0, "right_after": 0, "before": 0, "later": 0}
    no_wrong_number, chance, any_top_k = 0, 0.0, 0
    shown = []
    for n, pair in enumerate(pairs):
        if not arith and n >= examples:
            break
        ids, weights = pair["rejected_token_ids"], pair["rejected_weights"]
        text, spans = token_spans(tokenizer, ids)
        top = top_tokens(weights, spans, top_k)
        wrong = first_wrong_number(text, pair["gold_solution"]) if arith and pair.get("gold_solution") else None
        where = None
        if arith and top:
            if wrong is None:
                no_wrong_number += 1
            else:
                where = position_class(spans, top[0], wrong)
                counts[where] += 1
                any_top_k += any(position_class(spans, i, wrong) in ("at", "right_after") for i in top)
                with_text = [i for i, (s, e) in enumerate(spans) if e > s]
                chance += sum(position_class(spans, i, wrong) in ("at", "right_after") for i in with_text) / len(
                    with_text)
        if n < examples:
            shown.append({"id": pair["id"], "question": pair["question"], "answer": pair.get("answer"),
                          "rejected_answer": pair.get("rejected_answer"), "text": text, "spans": spans,
                          "weights": weights[:len(spans)], "top": top,
                          "top_tokens": [[text[spans[i][0]:spans[i][1]], round(weights[i], 4)] for i in top],
                          "first_wrong_number": text[wrong[0]:wrong[1]] if wrong else None,
                          "first_wrong_span": list(wrong) if wrong else None, "top_position": where,
                          "marked": marked(text, spans, top, weights)})
    out: dict = {"examples": shown}
    if arith:
        judged = sum(counts.values())
        out.update({"judged": judged, "no_wrong_number": no_wrong_number, "top_position": counts,
                    "top_at_or_right_after_first_wrong_number": (counts["at"] + counts["right_after"]) / judged
                    if judged else None,
                    "chance_at_or_right_after": chance / judged if judged else None,
                    "top_k": top_k, "top_k_any_at_or_right_after": any_top_k / judged if judged else None})
    return out


def report_section(summary: dict) -> str:
    """The report.md section: the share at the first wrong number, then each example with its marked tokens."""
    lines = ["## Critical tokens", ""]
    share = summary.get("top_at_or_right_after_first_wrong_number")
    if share is not None:
        c = summary["top_position"]
        lines += [f"The top-weighted token of a rejected solution sits at or right after its first wrong number in "
                  f"**{100 * share:.1f}%** of {summary['judged']} rejected solutions (a random token would: "
                  f"{100 * summary['chance_at_or_right_after']:.1f}%). At: {c['at']}, right after: "
                  f"{c['right_after']}, before: {c['before']}, later: {c['later']}; "
                  f"{summary['no_wrong_number']} had no wrong number."]
        if summary.get("top_k_any_at_or_right_after") is not None:  # absent from summaries of older versions
            lines += [f"One of the top {summary['top_k']} tokens is there in "
                      f"{100 * summary['top_k_any_at_or_right_after']:.1f}%."]
        lines += [""]
    lines += ["Rejected responses with their highest-weighted tokens in ⟦ ⟧ (weight = 1 − p_CE); "
              "the picture colors every token by its weight, boxes the top ones and underlines the first wrong "
              "number.", "", "![critical tokens](critical_tokens.png)", ""]
    for i, ex in enumerate(summary["examples"], 1):
        tops = ", ".join(f"{tok!r} ({w:.3f})" for tok, w in ex["top_tokens"])
        wrong = f"; first wrong number {ex['first_wrong_number']!r}, top token {ex['top_position']}" if ex[
            "first_wrong_number"] else ""
        lines += [f"**{i}. {ex['id']}** (gold {ex['answer']}, rejected answer {ex['rejected_answer']}): "
                  f"top tokens {tops}{wrong}", "", "```", ex["marked"], "```", ""]
    return "\n".join(lines)


def plot_token_weights(path: Path, summary: dict) -> None:
    """One panel per example: the rejected response laid out as text, each token's background colored by its
    weight (white 0 to red 1), the top-weighted tokens boxed, the first wrong number (arith) underlined in blue."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    examples = summary["examples"]
    if not examples:
        return
    layouts, heights, width = [], [], 10
    for ex in examples:
        cells, line, col = [], 0, 0
        for i, (s, e) in enumerate(ex["spans"]):
            piece = ex["text"][s:e]
            for j, part in enumerate(piece.split("\n")):
                if j:
                    line, col = line + 1, 0
                if part:
                    cells.append((i, line, col, part))
                    col += len(part)
                    width = max(width, col)
        layouts.append(cells)
        heights.append(line + 1)
    cmap = plt.get_cmap("Reds")
    fig, axes = plt.subplots(len(examples), 1, figsize=(min(0.12 * width + 1, 24), 0.28 * sum(heights) + 0.6 *
                                                          len(examples) + 0.6),
                             gridspec_kw={"height_ratios": [h + 1.5 for h in heights]}, squeeze=False)
    for ax, ex, cells, h in zip(axes[:, 0], examples, layouts, heights):
        top = set(ex["top"])
        for i, line, col, part in cells:
            w = ex["weights"][i] if i < len(ex["weights"]) else 0.0
            ax.add_patch(Rectangle((col, line), len(part), 1, facecolor=cmap(w), edgecolor="black" if i in top
                                   else "none", linewidth=1.2))
            ax.text(col + len(part) / 2, line + 0.5, part.replace(" ", "·"), ha="center", va="center",
                    family="monospace", fontsize=8, color="white" if w > 0.6 else "black")
            s, e = ex["spans"][i]
            if ex["first_wrong_span"] and s < ex["first_wrong_span"][1] and e > ex["first_wrong_span"][0]:
                ax.plot([col, col + len(part)], [line + 0.97, line + 0.97], color="tab:blue", linewidth=2.5)
        ax.set_xlim(0, width)
        ax.set_ylim(h, 0)
        ax.axis("off")
        ax.set_title(f"{ex['id']}: gold {ex['answer']}, rejected {ex['rejected_answer']}"
                     + (f", first wrong number {ex['first_wrong_number']}" if ex["first_wrong_number"] else ""),
                     fontsize=9, loc="left")
    fig.colorbar(plt.cm.ScalarMappable(cmap=cmap, norm=matplotlib.colors.Normalize(0, 1)), ax=axes[:, 0],
                 label="weight 1 − p_CE", shrink=0.6)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
