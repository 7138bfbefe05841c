"""The data stage: materialize the train and eval splits of the configured benchmark as JSONL files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from reasontrain.data import teacher
from reasontrain.data.tasks import is_local_path, load_split
from reasontrain.distributed import is_main_process
from reasontrain.stages.base import run_stage, stage_key_from

log = logging.getLogger("reasontrain")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def read_jsonl(path: Path) -> list[dict]:
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def skipped_records(data_dir: Path, split: str) -> dict[str, int]:
    """{reason: count} of the records of `split` that the data stage left out (bad gold answers)."""
    path = Path(data_dir) / f"{split}.skipped.json"
    return json.loads(path.read_text()) if path.exists() else {}


def eval_splits(cfg) -> list[str]:
    return list(cfg.eval.splits if cfg.eval.splits is not None else cfg.data.eval_splits)


def prepare_data(cfg, run_dir: Path, with_train: bool = True) -> Path:
    """Folder holding `<split>.jsonl` for the train split (if asked) and every eval split."""
    d = cfg.data
    # Few-shot prompts draw their examples from the train split, so it is needed even for evaluation.
    splits = ([d.train_split] if with_train or d.num_shots > 0 else []) + eval_splits(cfg)

    def build(folder: Path) -> dict:
        counts, skipped, written_by = {}, {}, {}
        for split in dict.fromkeys(splits):
            limit = d.max_eval_samples if split in eval_splits(cfg) else d.max_train_samples
            skipped[split] = {}
            rows = load_split(d, split, limit, skipped=skipped[split])
            if is_main_process():
                write_jsonl(folder / f"{split}.jsonl", rows)
                (folder / f"{split}.skipped.json").write_text(json.dumps(skipped[split]))
            counts[split] = len(rows)
            choices = teacher.summarize(rows)
            if choices:
                written_by[split] = choices
                log.info("data: %s solutions by the imperfect teacher: %s", split, teacher.describe(choices))
        summary = {"counts": counts, "skipped": {k: v for k, v in skipped.items() if v}}
        return {**summary, "teacher": written_by} if written_by else summary

    files = {split: d.files[split].path for split in dict.fromkeys(splits)
             if d.name != "arith" and split in d.files and is_local_path(d.files[split].path)}
    key = stage_key_from(cfg, reads=("data",), inputs={f"file:{split}": path for split, path in files.items()},
                         splits=splits)
    folder, _ = run_stage(run_dir, "data", key, build)
    return folder
