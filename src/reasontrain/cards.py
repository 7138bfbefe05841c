"""Model cards: the `README.md` every run writes into its `final/` model folder (and the shipped tiny models carry).

One writer for every recipe, in the Hub's model-card shape (YAML front matter, then prose and tables), so a folder
pushed with `huggingface-cli upload` explains itself: the command, the recipe and start it came from, its data,
steps, wall time and the metrics it scored. `read_card_config` reads the recorded config back (tests use it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

CARD_FILE = "README.md"
_CONFIG_BLOCK = re.compile(r"```json config\n(.*?)\n```", re.S)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def metrics_table(metrics: dict) -> str:
    """A markdown table of every split's greedy pass@1 and, where sampled, pass@k / maj@k."""
    if not metrics:
        return "(no evaluation)"
    sampled = sorted({k for m in metrics.values() for k in m if k.endswith("_sampled") or k.startswith("maj@")},
                     key=lambda k: (k.startswith("maj@"), int(re.sub(r"\D", "", k) or 0)))
    head = ["split", "problems", "greedy pass@1", *[k.replace("_sampled", " (sampled)") for k in sampled]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for split, m in metrics.items():
        cells = [split, str(m.get("num_problems", "")), _pct(m.get("pass@1")), *[_pct(m.get(k)) for k in sampled]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_card(folder: Path, *, title: str, command: str, config: dict, start: str | None, train: dict | None,
               metrics: dict | None, wall_seconds: float | None, sections: list[str] | None = None,
               eval_config: dict | None = None, eval_command: str | None = None) -> Path:
    """Write `folder/README.md` and return its path.

    `config` is the resolved run config (plain data); `start` the model the run started from; `train` the training
    stage's summary (steps, examples or pairs, seconds); `metrics` {split: metrics} of this model; `sections`
    extra markdown paragraphs (e.g. a plateau measurement). `eval_config`/`eval_command`: where `metrics` come
    from a separate evaluation run (`recipe=eval ... eval.n_samples=8`), its eval settings and command.
    """
    data = config.get("data", {})
    train = train or {}
    sampling = eval_config if eval_config is not None else config.get("eval", {})
    tags = dict.fromkeys(["reasontrain", str(config.get("recipe")), str(config.get("method"))])
    front = ["---", "library_name: transformers", "pipeline_tag: text-generation", "tags:",
             *[f"- {t}" for t in tags], "---", ""]
    facts = [
        f"- **Command**: `{command}`",
        f"- **Recipe**: `{config.get('recipe')}/{config.get('variant')}` (method `{config.get('method')}`), "
        f"seed {config.get('seed')}",
        f"- **Start**: {start or 'random initialisation'}",
        f"- **Data**: `{data.get('name')}`, train split `{data.get('train_split')}`"
        + (f" ({train['examples']} examples)" if "examples" in train else "")
        + (f" ({train['pairs']} pairs)" if "pairs" in train else ""),
        f"- **Steps**: {train.get('steps', 'n/a')} optimizer steps",
        f"- **Wall time**: {'n/a' if wall_seconds is None else f'{wall_seconds:.0f} s'}",
    ]
    if eval_command:
        facts.append(f"- **Evaluation**: `{eval_command}`")
    if any(k.endswith("_sampled") for m in (metrics or {}).values() for k in m):
        facts.append(f"- **Sampling for pass@k**: {sampling.get('n_samples')} samples per problem at temperature "
                     f"{sampling.get('temperature')}, top-p {sampling.get('top_p')}")
    body = "\n".join(front) + f"# {title}\n\n" + "\n".join(facts) + "\n\n## Evaluation\n\n" + \
        metrics_table(metrics or {}) + "\n\n" + "".join(s.rstrip() + "\n\n" for s in sections or ()) + \
        "## Config\n\n```json config\n" + json.dumps(config, indent=2, sort_keys=True) + "\n```\n"
    path = Path(folder) / CARD_FILE
    path.write_text(body, encoding="utf-8")
    return path


def read_card_config(path: Path) -> dict:
    """The resolved config recorded in a card written by `write_card`."""
    text = Path(path).read_text(encoding="utf-8")
    m = _CONFIG_BLOCK.search(text)
    if m is None:
        raise ValueError(f"{path}: no config block (not a reasontrain model card)")
    return json.loads(m.group(1))


def add_section(path: Path, markdown: str) -> None:
    """Insert a markdown section into an existing card, before its config block."""
    text = Path(path).read_text(encoding="utf-8")
    head, sep, tail = text.partition("## Config\n")
    if not sep:
        raise ValueError(f"{path}: no '## Config' section (not a reasontrain model card)")
    Path(path).write_text(head + markdown.rstrip() + "\n\n" + sep + tail, encoding="utf-8")
