"""Command line: `reasontrain recipe=<name>[/<variant>] [group=option] [key=value ...]`.

A recipe is `recipes/<name>/<variant>.yaml`, an overlay on `configs/` (default variant: tiny-arith). Everything
else is plain Hydra: config groups, overrides, `-m` sweeps, `--cfg job` to print the resolved config.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "configs"
RECIPES_DIR = ROOT / "recipes"
DEFAULT_VARIANT = "tiny-arith"

log = logging.getLogger("reasontrain")


def available_recipes() -> dict[str, list[str]]:
    return {d.name: sorted(p.stem for p in d.glob("*.yaml"))
            for d in sorted(RECIPES_DIR.iterdir()) if d.is_dir() and any(d.glob("*.yaml"))}


def recipe_header(path: Path) -> tuple[str, str]:
    """(launch command, one-line description) from the comment block that opens a recipe file."""
    comments = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        comments.append(line[1:].strip())
    launch, about, i = "", "", 0
    while i < len(comments):
        text = comments[i]
        if text.startswith("Launch"):
            launch = "" if text.endswith(":") else text.split(":", 1)[1].strip()
            while (not launch or launch.endswith("\\")) and i + 1 < len(comments):  # the command on the next lines
                i += 1
                launch = (launch.rstrip("\\ ") + " " + comments[i]).strip()
        elif text.startswith(("Override", "Or across", "(", "Example")) or not text:
            pass
        elif not about:
            about = re.split(r"(?<! al)\.\s|:\s", text + " ", maxsplit=1)[0].strip().rstrip(".")
        i += 1
    return launch, about


def recipe_listing() -> str:
    """What `reasontrain --help` prints before Hydra's groups: every recipe and variant, what it is, how to launch it."""
    lines = ["reasontrain recipe=<name>[/<variant>] [group=option ...] [key=value ...]", "",
             f"Recipes (recipes/<name>/<variant>.yaml; the default variant is {DEFAULT_VARIANT}):"]
    for name, variants in available_recipes().items():
        for variant in sorted(variants, key=lambda v: v != DEFAULT_VARIANT):
            launch, about = recipe_header(RECIPES_DIR / name / f"{variant}.yaml")
            label = name if variant == DEFAULT_VARIANT else f"{name}/{variant}"
            lines.append(f"  {label:<30} {about}")
            if launch:
                lines.append(f"  {'':<30} $ {launch}")
    return "\n".join(lines)


def _fail(message: str) -> None:
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None and getattr(tqdm.tqdm, "_instances", None):
        print(file=sys.stderr)  # a progress bar left open by the failure: start the message on its own line
    print(f"reasontrain: error: {message}", file=sys.stderr)
    sys.exit(2)


def rewrite_argv(argv: list[str]) -> list[str]:
    """Turn `recipe=name[/variant]` into the Hydra overrides that load the overlay, checking it exists."""
    recipes = available_recipes()
    listing = ", ".join(f"{k} ({'/'.join(v)})" for k, v in recipes.items())
    out, found = [], None
    for arg in argv:
        if arg.startswith("recipe="):
            found = arg.split("=", 1)[1]
        else:
            out.append(arg)
    wants_help = any(a in ("--help", "-h", "--hydra-help", "--info") or a.startswith("--info") for a in argv)
    if found is None:
        if wants_help:
            if any(a in ("--help", "-h") for a in argv):
                print(recipe_listing() + "\n")
            return out
        _fail(f"no recipe given: use reasontrain recipe=<name>. Recipes: {listing}")
    if "," in found:
        _fail("sweeping over recipes is not supported; run one command per recipe")
    name, _, variant = found.partition("/")
    variant = variant or DEFAULT_VARIANT
    if name not in recipes:
        _fail(f"unknown recipe {name!r}. Recipes: {listing}")
    if variant not in recipes[name]:
        _fail(f"recipe {name!r} has no variant {variant!r}; variants: {', '.join(recipes[name])}")
    # Hydra's parser wants all overrides in one run: flags (and their values) first, then every override.
    flags = [a for a in out if a.startswith("-") or "=" not in a]
    overrides = [a for a in out if not (a.startswith("-") or "=" not in a)]
    return flags + [f"+recipes/{name}@_global_={variant}", f"recipe={name}", f"variant={variant}",
                    f"hydra.searchpath=[file://{ROOT}]"] + overrides


def run_recipe(cfg) -> dict:
    from hydra.core.hydra_config import HydraConfig

    from reasontrain.distributed import init_distributed, launch_rank
    from reasontrain.methods import validate
    from reasontrain.run_lock import exclusive_folders

    start = time.time()
    validate(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    # Stage folders live in the run folder, or in `stage_dir`, which the jobs of a sweep share.
    stages_dir = Path(cfg.stage_dir) if cfg.stage_dir else run_dir
    # Rank 0 holds the folders for the whole run, before the process group exists, so a second launch on the
    # same folders stops at once (torchrun then ends its other ranks).
    with exclusive_folders(run_dir, stages_dir) if launch_rank() == 0 else contextlib.nullcontext():
        init_distributed(cfg.distributed.kind, cfg.distributed.timeout_minutes)
        return _run_locked(cfg, run_dir, stages_dir, start)


def _run_locked(cfg, run_dir: Path, stages_dir: Path, start: float) -> dict:
    from reasontrain.cards import write_card
    from reasontrain.config import to_plain
    from reasontrain.distributed import is_main_process
    from reasontrain.methods import run
    from reasontrain.report import write_report
    from reasontrain.stages.base import use_stage_index
    from reasontrain.tracking import start_tracking

    config = to_plain(cfg)
    use_stage_index(Path(cfg.output_root) / ".stages")
    tracker = start_tracking(cfg, run_dir, config)
    result = run(cfg, stages_dir, tracker)
    if not is_main_process():
        return result
    if result.get("final") is not None:
        if (run_dir / "final").exists():
            shutil.rmtree(run_dir / "final")
        shutil.copytree(result["final"], run_dir / "final")
    for name, path in (result.get("figures") or {}).items():
        shutil.copy2(path, run_dir / name)
    table = write_report(run_dir, cfg.recipe, config, result["before"], result["after"], result["train"],
                         result["log_history"], time.time() - start, sections=result.get("report_sections"),
                         extra_metrics=result.get("extra_metrics"))
    for split, m in result["after"].items():
        tracker.summary({f"eval/{split}/{k}": v for k, v in m.items()})
        if result["before"]:
            tracker.summary({f"eval_start/{split}/{k}": v for k, v in result["before"][split].items()})
    if result.get("final") is not None:
        write_card(run_dir / "final", title=f"{cfg.model.name} after {cfg.recipe} ({cfg.variant})",
                   command=launch_command(), config=config, start=start_description(cfg), train=result["train"],
                   metrics=result["after"], wall_seconds=time.time() - start)
    tracker.finish()
    print(f"\n{cfg.recipe} ({cfg.variant}, data={cfg.data.name}), greedy pass@1:\n{table}\n\noutputs: {run_dir}")
    if result.get("final") is not None:
        print(f"model:   {run_dir / 'final'}")
    return result


def command_from_overrides(overrides: list[str], world_size: int = 1) -> str:
    """The user's command line back from the Hydra overrides that `rewrite_argv` produced."""
    import shlex

    variant = next((o.split("=", 1)[1] for o in overrides if o.startswith("variant=")), DEFAULT_VARIANT)
    out = []
    for o in overrides:
        if o.startswith(("+recipes/", "variant=", "hydra.searchpath=")):
            continue
        if o.startswith("recipe=") and variant != DEFAULT_VARIANT:
            o = f"{o}/{variant}"
        out.append(o)
    head = f"torchrun --nproc_per_node {world_size} -m reasontrain.cli" if world_size > 1 else "reasontrain"
    return " ".join([head, *map(shlex.quote, out)])


def launch_command() -> str:
    """The command that reproduces this run (one job of a sweep: its own values), for model cards."""
    from hydra.core.hydra_config import HydraConfig

    return command_from_overrides(list(HydraConfig.get().overrides.task), int(os.environ.get("WORLD_SIZE", "1")))


def start_description(cfg) -> str:
    """Where the trained model started, in words."""
    from reasontrain.config import Method

    start = f"`{cfg.model.path}` (model={cfg.model.name})" if cfg.model.path else \
        f"random initialisation of model={cfg.model.name}"
    if cfg.start.sft and cfg.method not in (Method.sft, Method.eval):
        start += ", then SFT on the train split (start.sft)"
    return start


def _record_errors(fn):
    """Under torchrun, a failing rank's traceback goes into torchrun's failure summary (elastic `record`); Hydra
    must then let the exception through instead of exiting with its short message."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return fn
    from torch.distributed.elastic.multiprocessing.errors import record

    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    return record(fn)


def main() -> None:
    _record_errors(_main)()


def _main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from reasontrain.console import configure_console, warn_once

    warn_once()
    import hydra

    from reasontrain.config import ConfigError, register_configs
    from reasontrain.data.tasks import DataError
    from reasontrain.models.loading import ModelLoadError
    from reasontrain.run_lock import RunFolderInUse
    from reasontrain.stages.train_preference import NoPairsLeft
    from reasontrain.trainers.args import BatchSizeError
    from reasontrain.trainers.checkpoint import DiskFull

    register_configs()
    sys.argv = [sys.argv[0]] + rewrite_argv(sys.argv[1:])

    @hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
    def _task(cfg) -> None:
        configure_console()  # after Hydra has set up logging: INFO from rank 0 only, each warning once
        try:
            run_recipe(cfg)
        except (ConfigError, DataError, ModelLoadError, BatchSizeError, NoPairsLeft, FileNotFoundError,
                RunFolderInUse, DiskFull) as e:
            _fail(str(e))

    _task()


if __name__ == "__main__":
    main()
