"""Loading benchmark files: real GSM8K and MATH-500 rows, and bad input named by file, line and field."""

import pytest

from reasontrain.config import FileSplitConfig
from reasontrain.data.tasks import DataError, file_split, read_records
from reasontrain.grading import gold_answer


def test_reads_real_gsm8k_and_math500(shared_data):
    gsm = file_split(FileSplitConfig(path=str(shared_data / "gsm8k/test.jsonl"), solution_field="answer"), "test")
    assert len(gsm) == 1319
    assert gold_answer(gsm[0]["answer"]) is not None
    math = file_split(FileSplitConfig(path=str(shared_data / "math500/test.jsonl"), question_field="problem",
                                      answer_field="answer", solution_field="solution"), "test")
    assert len(math) == 500 and math[0]["id"].startswith("test/")


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n{"question": "b", "answer": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: malformed JSON line"):
        read_records(path)


def test_missing_field_names_record_and_field(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n{"question": "b"}\n')
    with pytest.raises(DataError, match=r"rows\.jsonl: record 2 has no field 'answer'"):
        file_split(FileSplitConfig(path=str(path)), "train")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        read_records(tmp_path / "nope.jsonl")
