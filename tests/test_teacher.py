"""The imperfect teacher that writes tiny-instruct's training solutions: its rates follow its error model, the
problems it leaves alone are untouched, later steps continue from what it wrote, the gold answers stay true, the
splits stay disjoint, and the data stage counts its choices."""

import re

import pytest
from omegaconf import OmegaConf

from reasontrain.config import ConfigError, DataConfig, RootConfig
from reasontrain.data import arith, teacher
from reasontrain.data.tasks import arith_splits

STEP = re.compile(r"^Step (\d+): (\d+) ([-+x]) (\d+) = (\d+)$")


@pytest.fixture(scope="module")
def written():
    clean = arith.generate(16000, 1234, arith.ArithDifficulty())
    model = teacher.TeacherModel()
    return clean, [teacher.write_solution(r, model) for r in clean]


def test_rates_follow_the_error_model(written):
    _, rows = written
    s = teacher.summarize(rows)
    assert s["problems"] == 16000
    # Each rate within 3 binomial standard deviations of the model's (0.6 carry, 0.6 stop, 0.1 slip).
    for hits, trials, p in ((s["carry_slips"], s["carry_steps"], 0.6), (s["stopped_early"], s["long_problems"], 0.6),
                            (s["slips"], s["other_steps"], 0.1)):
        assert trials > 1000
        assert abs(hits / trials - p) < 3 * (p * (1 - p) / trials) ** 0.5 + 1e-9, (hits, trials, p)
    # Greedy imitation repeats mistakes made more often than not, and not the rare ones.
    assert s["accuracy_by_steps"]["4"] < 0.35 < s["accuracy_by_steps"]["3"] < s["accuracy_by_steps"]["2"] < 0.9


def test_clean_problems_are_untouched_and_golds_stay_true(written):
    clean, rows = written
    for before, after in zip(clean, rows):
        assert after["answer"] == before["answer"] and after["question"] == before["question"]
        t = after["teacher"]
        untouched = not (t["stopped_early"] or t["carry_slips"] or t["slips"])
        assert (after["solution"] == before["solution"]) == untouched
        assert t["correct"] == (after["solution"].rsplit("#### ", 1)[1] == before["answer"])
        if untouched:
            assert t["correct"]


def test_mistakes_are_the_modelled_ones_and_later_steps_continue_from_them(written):
    clean, rows = written
    for before, after in zip(clean[:3000], rows[:3000]):
        true_steps = [STEP.match(line).groups() for line in before["solution"].splitlines()[:-1]]
        lines = after["solution"].splitlines()
        steps = [STEP.match(line).groups() for line in lines[:-1]]
        t = after["teacher"]
        assert len(steps) == (3 if t["stopped_early"] else len(true_steps))
        value = int(true_steps[0][1])
        carries = slips = 0
        for (_, a, op, b, c), (_, _, true_op, true_b, _) in zip(steps, true_steps):
            a, b, c = int(a), int(b), int(c)
            assert a == value and op == true_op and b == int(true_b)  # it reads the question right
            exact = {"+": a + b, "-": a - b, "x": a * b}[op]
            if teacher.is_carry(op, a, b) and c != exact:
                assert c == exact - 1
                carries += 1
            elif c != exact:
                assert 1 <= abs(c - exact) <= 2 and c >= 0
                slips += 1
            value = c
        assert lines[-1] == f"#### {value}"
        assert (carries, slips) == (t["carry_slips"], t["slips"])


def test_the_same_problem_gets_the_same_solution_whatever_else_is_in_the_split(written):
    _, rows = written
    again = teacher.write_solution({k: v for k, v in rows[5].items() if k != "teacher"} | {
        "solution": arith.generate(16000, 1234, arith.ArithDifficulty())[5]["solution"]}, teacher.TeacherModel())
    assert again["solution"] == rows[5]["solution"]
    other_seed = teacher.TeacherModel(seed=1)
    differ = sum(teacher.write_solution(r, other_seed)["solution"] != w["solution"]
                 for r, w in zip(written[0][:500], rows[:500]))
    assert differ > 50


def test_only_the_train_split_is_written_by_the_teacher_and_splits_stay_disjoint():
    cfg = OmegaConf.structured(DataConfig)
    cfg.arith.train.size, cfg.arith.pretrain.size = 2000, 200
    clean = arith_splits(cfg)
    cfg.arith.teacher.enabled = True
    taught = arith_splits(cfg)
    for name in ("test", "validation", "hard", "pretrain"):
        assert taught[name] == clean[name]
    assert [r["question"] for r in taught["train"]] == [r["question"] for r in clean["train"]]
    assert all("teacher" in r for r in taught["train"]) and not any("teacher" in r for r in clean["train"])
    held_out = {r["question"] for name in ("test", "validation", "hard") for r in taught[name]}
    assert not held_out & {r["question"] for r in taught["train"]}


def test_data_stage_summary_counts_the_teachers_choices(tmp_path):
    from reasontrain.stages.data import prepare_data

    cfg = OmegaConf.structured(RootConfig)
    cfg.data.arith.train.size = 500
    cfg.data.arith.teacher.enabled = True
    cfg.data.eval_splits = ["test"]
    folder = prepare_data(cfg, tmp_path)
    import json

    summary = json.loads((folder / ".done").read_text())["result"] if (folder / ".done").exists() else None
    if summary is None:
        from reasontrain.stages.base import DONE_FILE

        summary = json.loads((folder / DONE_FILE).read_text())["result"]
    counts = summary["teacher"]["train"]
    assert counts["problems"] == 500 and 0 < counts["correct"] < 500
    assert set(counts) >= {"stopped_early", "carry_slips", "slips", "accuracy_by_steps", "clean"}
    assert "test" not in summary["teacher"]


@pytest.mark.parametrize("override, message", [
    ({"carry_rate": 1.5}, "data.arith.teacher.carry_rate=1.5 must be a probability"),
    ({"stop_after": 4}, "stop_min_steps > stop_after"),
])
def test_a_bad_teacher_fails_at_start_up(override, message):
    from reasontrain.methods.checks import check_common

    cfg = OmegaConf.structured(RootConfig)
    cfg.data.arith.teacher.enabled = True
    for k, v in override.items():
        cfg.data.arith.teacher[k] = v
    with pytest.raises(ConfigError, match=message):
        check_common(cfg)
