"""Benchmark splits as lists of problem records: `{"id", "question", "answer", "solution"}`.

`load_split` is the one entry point: the embedded arithmetic task is generated from its seed, file-based
benchmarks are read from disk. Every record that cannot be used is reported with its file and line.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from reasontrain.config import OnBadGold
from reasontrain.data import arith, teacher

log = logging.getLogger("reasontrain")


class DataError(ValueError):
    """Bad input data: the message names the file, the line and the field."""


def _arith_difficulty(split_cfg) -> arith.ArithDifficulty:
    return arith.ArithDifficulty(
        min_steps=split_cfg.min_steps, max_steps=split_cfg.max_steps, max_start=split_cfg.max_start,
        max_operand=split_cfg.max_operand, max_factor=split_cfg.max_factor, max_value=split_cfg.max_value,
    )


def teacher_model(t) -> teacher.TeacherModel:
    return teacher.TeacherModel(slip_rate=t.slip_rate, slip_max=t.slip_max, carry_rate=t.carry_rate,
                                stop_rate=t.stop_rate, stop_min_steps=t.stop_min_steps, stop_after=t.stop_after,
                                seed=t.seed)


ARITH_HELD_OUT = ("test", "hard", "validation")  # generated first; no training text uses their questions
ARITH_SPLITS = (*ARITH_HELD_OUT, "train", "pretrain")


def arith_splits(cfg, names=ARITH_SPLITS) -> dict[str, list[dict]]:
    """The arithmetic splits in `names`. The held-out splits (test, hard, validation) come from their own seeds;
    train and pretrain exclude every held-out question, so the splits are disjoint by construction."""
    a = cfg.arith
    held = {name: arith.generate(getattr(a, name).size, a.seed + offset, _arith_difficulty(getattr(a, name)),
                                 id_prefix=f"arith-{name}")
            for offset, name in enumerate(ARITH_HELD_OUT, start=1)}
    held_out = {p["question"] for split in held.values() for p in split}
    out = {name: rows for name, rows in held.items() if name in names}
    if "train" in names:
        train_seed = a.seed if a.train_seed is None else a.train_seed
        out["train"] = arith.generate(a.train.size, train_seed, _arith_difficulty(a.train), exclude=held_out,
                                      id_prefix="arith-train")
        if a.teacher.enabled:
            model = teacher_model(a.teacher)
            out["train"] = [teacher.write_solution(r, model) for r in out["train"]]
    if "pretrain" in names:
        out["pretrain"] = arith.pretrain_corpus(a.pretrain.size, a.seed + len(ARITH_HELD_OUT) + 1,
                                                _arith_difficulty(a.pretrain), exclude=held_out)
    return out


def read_records(path: str | Path) -> list[dict]:
    """Rows of a JSONL, JSON (a list) or Parquet file. A malformed line is an error naming file and line."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a directory; data.files.<split>.path must name a .jsonl, .json or .parquet file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark, if any, is dropped
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    if path.suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected a JSON list of records, got {type(rows).__name__}")
        return rows
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: malformed JSON line ({e.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def is_local_path(path: str) -> bool:
    """A path on disk (existing or not) rather than a Hub dataset id like `openai/gsm8k`."""
    p = Path(path)
    return p.exists() or path.startswith((".", "/", "~")) or p.suffix in (".jsonl", ".json", ".parquet")


def read_hub(dataset_id: str, config: str | None, split: str) -> list[dict]:
    """Rows of a Hub dataset split, with a one-line error when it cannot be reached."""
    import datasets

    try:
        return datasets.load_dataset(dataset_id, config, split=split).to_list()
    except Exception as e:  # the datasets library raises many types; the first line says what went wrong
        raise DataError(f"cannot load Hub dataset {dataset_id!r} (config {config!r}, split {split!r}): "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def bad_gold_reason(answer) -> str | None:
    """Why a gold answer cannot be graded ("null_gold", "empty_gold", "unparseable_gold"), or None if it can."""
    from reasontrain.grading.extract import gold_answer
    from reasontrain.grading.normalize import clean

    if answer is None:
        return "null_gold"
    if isinstance(answer, float) and answer != answer:  # NaN from a Parquet/pandas export
        return "null_gold"
    text = str(answer).strip()
    if not text:
        return "empty_gold"
    target = gold_answer(text)
    if target is None or not re.search(r"\w|[^\x00-\x7f]", clean(target)):  # as the grader: a letter, digit or ∅
        return "unparseable_gold"
    return None


def file_split(spec, name: str, on_bad_gold: str = "skip", skipped: dict | None = None) -> list[dict]:
    """A benchmark split from a file or the Hub, mapped onto the common record fields.

    A record whose gold answer cannot be graded is left out and counted per reason in `skipped`, or is an error
    with `on_bad_gold="error"`. A split with no usable record is an error."""
    if is_local_path(spec.path):
        rows, where = read_records(spec.path), spec.path
    else:
        rows, where = read_hub(spec.path, spec.hub_config, spec.hub_split or name), f"{spec.path}[{name}]"
    if not rows:
        raise DataError(f"{where}: no records (split {name!r} is empty)")
    out = []
    skipped = {} if skipped is None else skipped
    for i, row in enumerate(rows, start=1):
        for key in (spec.question_field, spec.answer_field, spec.solution_field, *spec.meta_fields):
            if key is not None and key not in row:
                raise DataError(f"{where}: record {i} has no field {key!r} (fields: {sorted(row)})")
        question = row[spec.question_field]
        if not isinstance(question, str) or not question.strip():
            raise DataError(f"{where}: record {i} has an empty or non-text {spec.question_field!r}")
        reason = bad_gold_reason(row[spec.answer_field])
        if reason is not None:
            if on_bad_gold == "error":
                raise DataError(f"{where}: record {i} has a {reason.replace('_', ' ')} in {spec.answer_field!r}: "
                                f"{row[spec.answer_field]!r} (data.on_bad_gold=skip leaves such records out)")
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        record = {
            "id": str(row.get("unique_id", row.get("id", f"{name}-{i - 1}"))),
            "question": question,
            "answer": str(row[spec.answer_field]),
            "solution": row[spec.solution_field] if spec.solution_field else str(row[spec.answer_field]),
        }
        record.update({k: row[k] for k in spec.meta_fields})
        out.append(record)
    if getattr(spec, "dedupe", False):
        seen: set[str] = set()
        unique = [r for r in out if not (r["question"] in seen or seen.add(r["question"]))]
        if len(unique) < len(out):
            log.info("%s: kept %d of %d records (%d repeat an earlier question)", where, len(unique), len(out),
                     len(out) - len(unique))
        out = unique
    if skipped:
        log.warning("%s: left out %d of %d records whose gold answer cannot be graded (%s)", where,
                    sum(skipped.values()), len(rows), ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())))
    if not out:
        raise DataError(f"{where}: none of its {len(rows)} records has a gold answer that can be graded")
    return out


def load_split(cfg, split: str, limit: int | None = None, skipped: dict | None = None) -> list[dict]:
    """The records of one split of the benchmark `cfg` (a DataConfig), at most `limit` of them. Records left
    out for an ungradable gold are counted per reason into `skipped`."""
    if cfg.name == "arith":
        if split not in ARITH_SPLITS:
            raise DataError(f"arith has splits {sorted(ARITH_SPLITS)}, not {split!r}")
        records = arith_splits(cfg, (split,))[split]
    else:
        if split not in cfg.files:
            raise DataError(f"data={cfg.name} has no split {split!r}; configured: {sorted(cfg.files)}")
        records = file_split(cfg.files[split], split, OnBadGold(cfg.on_bad_gold).value, skipped)
    return records[:limit] if limit is not None else records
