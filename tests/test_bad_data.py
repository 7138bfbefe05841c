"""Bad evaluation data is an error or a counted skip, never folded silently into pass@1."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from reasontrain.data.tasks import DataError, bad_gold_reason, file_split, read_records


class Spec:
    def __init__(self, path):
        self.path, self.hub_config, self.hub_split = str(path), None, None
        self.question_field, self.answer_field, self.solution_field = "question", "answer", None
        self.meta_fields, self.dedupe = [], False


ROWS = [{"question": "1+1?", "answer": "2"}, {"question": "2+2?", "answer": None},
        {"question": "3+3?", "answer": ""}, {"question": "4+4?", "answer": "?"},
        {"question": "5+5?", "answer": "#### 10"}, {"question": "6+6?", "answer": "\\boxed{12}"}]


def write(path, rows, bom=False):
    text = "".join(json.dumps(r) + "\n" for r in rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


@pytest.mark.parametrize("answer,reason", [(None, "null_gold"), (float("nan"), "null_gold"), ("", "empty_gold"),
                                           ("   ", "empty_gold"), ("?", "unparseable_gold"), ("####", "unparseable_gold"),
                                           ("2", None), ("\\emptyset", None), ("∅", None), (0, None)])
def test_bad_gold_reasons(answer, reason):
    assert bad_gold_reason(answer) == reason


def test_ungradable_golds_are_skipped_and_counted_or_fatal(tmp_path):
    path = write(tmp_path / "test.jsonl", ROWS)
    skipped = {}
    records = file_split(Spec(path), "test", "skip", skipped)
    assert [r["answer"] for r in records] == ["2", "#### 10", "\\boxed{12}"]
    assert skipped == {"null_gold": 1, "empty_gold": 1, "unparseable_gold": 1}
    with pytest.raises(DataError, match=r"test.jsonl: record 2 has a null gold in 'answer'"):
        file_split(Spec(path), "test", "error")


def test_a_byte_order_mark_is_read(tmp_path):
    assert read_records(write(tmp_path / "bom.jsonl", ROWS[:1], bom=True)) == ROWS[:1]
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(ROWS[:1]).encode())
    assert read_records(tmp_path / "bom.json") == ROWS[:1]


def test_empty_files_directories_and_non_utf8_are_one_line_errors(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="no records"):
        file_split(Spec(tmp_path / "empty.jsonl"), "test")
    with pytest.raises(DataError, match="is a directory"):
        read_records(tmp_path)
    (tmp_path / "latin.jsonl").write_bytes(b'{"question": "caf\xe9"}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        read_records(tmp_path / "latin.jsonl")
    only_bad = write(tmp_path / "bad.jsonl", ROWS[1:4])
    with pytest.raises(DataError, match="none of its 3 records"):
        file_split(Spec(only_bad), "test")


def cli(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "reasontrain.cli", "recipe=eval", "model=tiny-instruct", "data=gsm8k",
                           f"data.files.test.path={tmp_path / 'test.jsonl'}", "generation.max_new_tokens=8",
                           f"output_root={tmp_path / 'out'}", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.e2e
def test_evaluation_reports_skipped_problems_beside_pass_at_1(tmp_path):
    write(tmp_path / "test.jsonl", ROWS + [{"question": "x" * 400, "answer": "1"}])
    proc = cli(tmp_path, "data.max_prompt_length=300", "data.on_long_prompt=skip")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((tmp_path / "out" / "eval" / "seed0" / "metrics.json").read_text())["after"]["test"]
    assert m["num_problems"] == 3 and m["long_prompts"] == 1
    assert m["skipped"] == {"null_gold": 1, "empty_gold": 1, "unparseable_gold": 1, "long_prompt": 1}
    assert "graded / skipped" in proc.stdout and "| 3 / 4 |" in proc.stdout

    fatal = cli(tmp_path, "data.on_bad_gold=error", "run_name=strict")
    assert fatal.returncode == 2 and "record 2 has a null gold" in fatal.stderr and "Traceback" not in fatal.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("content,message", [("", "no records"), (None, "is a directory")])
def test_an_empty_file_or_a_directory_stops_the_run_with_one_line(tmp_path, content, message):
    if content is None:
        (tmp_path / "test.jsonl").mkdir()
    else:
        (tmp_path / "test.jsonl").write_text(content)
    proc = cli(tmp_path)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_a_finished_stage_with_a_damaged_output_is_recomputed_with_a_warning(tmp_path, caplog):
    from reasontrain.stages.base import run_stage

    calls = []

    def fn(folder):
        calls.append(folder)
        (folder / "rows.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
        return {"rows": 2}

    folder, result = run_stage(tmp_path, "demo", {"k": 1}, fn)
    assert run_stage(tmp_path, "demo", {"k": 1}, fn) == (folder, result) and len(calls) == 1
    (folder / "rows.jsonl").write_text('{"a": 1}\n{"a": ')  # cut short
    with caplog.at_level("WARNING", logger="reasontrain"):
        assert run_stage(tmp_path, "demo", {"k": 1}, fn) == (folder, result)
    assert len(calls) == 2 and "rows.jsonl:2 is unreadable" in caplog.text and "recomputing" in caplog.text
    (folder / "stage.json").write_text("{not json")
    run_stage(tmp_path, "demo", {"k": 1}, fn)
    assert len(calls) == 3


@pytest.mark.parametrize("mode", ["truncate", "skip"])
def test_over_long_training_examples_are_counted_and_truncated_or_skipped(tokenizer, mode):
    from omegaconf import OmegaConf

    from reasontrain.config import RootConfig
    from reasontrain.stages.train_preference import tokenize_pairs
    from reasontrain.stages.train_sft import build_sft_dataset

    cfg = OmegaConf.structured(RootConfig)
    records = [{"id": str(i), "question": "1+1?", "answer": "2", "solution": "Step 1: 1 + 1 = 2\n#### 2" * n}
               for i, n in enumerate((1, 1, 20))]
    data, counts = build_sft_dataset(records, cfg, tokenizer, max_length=120, long_examples=mode)
    assert counts[f"{'skipped' if mode == 'skip' else 'truncated'}_long_example"] == 1
    assert len(data) == (2 if mode == "skip" else 3)

    pairs = [{"prompt": "Q: 1+1?\nA: ", "chosen": r["solution"], "rejected": r["solution"].replace("2", "3")}
             for r in records]
    out, dropped, truncated = tokenize_pairs(pairs, tokenizer, 256, True, max_length=120, long_examples=mode)
    assert (len(out), dropped.get("pair_too_long", 0), truncated) == ((2, 1, 0) if mode == "skip" else (3, 0, 1))
