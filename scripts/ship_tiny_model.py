"""Copy a finished run's model into the package as a shipped tiny model, with its model card.

    reasontrain recipe=sft/tiny-base run_name=tiny-base
    reasontrain recipe=eval model.path=outputs/sft/tiny-base/final data.eval_splits=[validation,test,hard] \
        eval.n_samples=8 eval.k=[1,8] run_name=tiny-base
    python scripts/ship_tiny_model.py outputs/sft/tiny-base --name tiny-base --eval outputs/eval/tiny-base

    reasontrain recipe=sft/tiny-instruct run_name=tiny-instruct            (+ its eval as above)
    reasontrain recipe=sft/tiny-instruct run_name=plateau model.path=outputs/sft/tiny-instruct/final \
        data.arith.train_seed=4321 train.max_steps=1000 eval.before=true
    python scripts/ship_tiny_model.py outputs/sft/tiny-instruct --name tiny-instruct \
        --eval outputs/eval/tiny-instruct --plateau outputs/sft/plateau

The card is written by the same writer as every run's `final/README.md`, from the run folder itself: its command
and resolved config (Hydra's `.hydra/`), its training summary and wall time (`metrics.json`), and the metrics of
`--eval` (pass@1 and pass@8 on every split) when given. `--plateau` adds the measurement of more SFT steps on
fresh problems (a run started from this model: its before/after are the two models). The config is switched back
to `use_cache=True` (training turns it off), so generation from the shipped model is fast.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from reasontrain.cards import add_section, write_card
from omegaconf import OmegaConf

from reasontrain.cli import command_from_overrides, start_description
from reasontrain.config import ASSETS_DIR

FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "chat_template.jinja")


def run_command(run_dir: Path) -> str:
    """The `reasontrain ...` command of a run, from the overrides Hydra recorded."""
    import yaml

    items = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) or []
    return command_from_overrides(items)


def run_config(run_dir: Path) -> dict:
    from reasontrain.config import register_configs

    register_configs()
    return OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"), resolve=True)


def plateau_section(run_dir: Path) -> str:
    m = json.loads((run_dir / "metrics.json").read_text())
    steps = m["train"]["steps"]
    rows = [f"| split | this model | after {steps} more SFT steps | change (points) |", "|---|---|---|---|"]
    for split, after in m["after"].items():
        b, a = 100 * m["before"][split]["pass@1"], 100 * after["pass@1"]
        rows.append(f"| {split} | {b:.1f}% | {a:.1f}% | {a - b:+.1f} |")
    return (f"## Plateau\n\n{steps} more SFT steps on fresh problems (another train seed, the same held-out splits "
            f"and recipe), greedy pass@1:\n\n`{run_command(run_dir)}`\n\n" + "\n".join(rows))


def by_operations_section(metrics: dict) -> str | None:
    """Greedy pass@1 and sampled pass@k per number of operations, on every evaluated split."""
    rows = []
    for split, m in metrics.items():
        greedy, sampled = m.get("by_num_steps"), m.get("sampled_by_num_steps") or {}
        if not greedy:
            continue
        for ops, g in greedy.items():
            cells = [split, ops, str(g["n"]), f"{100 * g['pass@1']:.1f}%"]
            cells += [f"{100 * sampled[k][ops]:.1f}%" for k in sorted(sampled, key=lambda k: int(k[5:]))]
            rows.append("| " + " | ".join(cells) + " |")
    if not rows:
        return None
    ks = sorted(next((m.get("sampled_by_num_steps") or {} for m in metrics.values()), {}), key=lambda k: int(k[5:]))
    head = ["split", "operations", "problems", "greedy pass@1", *[f"{k} (sampled)" for k in ks]]
    return ("## By number of operations\n\n" + "| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n"
            + "\n".join(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--name", required=True, choices=["tiny-base", "tiny-clean", "tiny-instruct"])
    ap.add_argument("--eval", type=Path, default=None, help="run folder of recipe=eval on the run's final model")
    ap.add_argument("--plateau", type=Path, default=None, help="run folder of the plateau check")
    args = ap.parse_args()
    final = args.run_dir / "final"
    dest = ASSETS_DIR / args.name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in FILES:
        if (final / name).exists():
            shutil.copy2(final / name, dest / name)
    for name in ("config.json", "generation_config.json"):
        path = dest / name
        if path.exists():
            cfg = json.loads(path.read_text())
            cfg["use_cache"] = True
            path.write_text(json.dumps(cfg, indent=2) + "\n")

    config = run_config(args.run_dir)
    run = json.loads((args.run_dir / "metrics.json").read_text())
    metrics, eval_config, eval_command = run["after"], None, None
    if args.eval:
        metrics = json.loads((args.eval / "metrics.json").read_text())["after"]
        eval_config, eval_command = run_config(args.eval)["eval"], run_command(args.eval)
    start = start_description(OmegaConf.create(config)).replace(str(ASSETS_DIR), "<reasontrain>/assets")
    write_card(dest, title=args.name, command=run_command(args.run_dir), config=config, start=start,
               train=run["train"], metrics=metrics, wall_seconds=run["wall_seconds"], eval_config=eval_config,
               eval_command=eval_command)
    by_ops = by_operations_section(metrics)
    if by_ops:
        add_section(dest / "README.md", by_ops)
    if args.plateau:
        add_section(dest / "README.md", plateau_section(args.plateau))
    size = sum(f.stat().st_size for f in dest.iterdir())
    print(f"shipped {args.name}: {dest} ({size / 2**20:.1f} MB)")


if __name__ == "__main__":
    main()
