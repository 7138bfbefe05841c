"""Prompt formats render the exact strings each paper uses, with shots, instruction and prefill."""

from omegaconf import OmegaConf

from reasontrain.config import DataConfig
from reasontrain.data.formats import pick_shots, render_prompt

REC = {"question": "What is 2 + 3?", "solution": "2 + 3 = 5. The answer is 5.", "answer": "5"}


def cfg(**kw):
    c = OmegaConf.structured(DataConfig)
    for k, v in kw.items():
        c[k] = v
    return c


def test_chat_with_instruction_system_and_prefill(tokenizer):
    text = render_prompt(REC, cfg(prompt_format="chat", system_prompt="Be careful.", instruction=" Use steps.",
                                  prefill="Step 1: "), tokenizer)
    assert text == "Be careful.\nQ: What is 2 + 3? Use steps.\nA: Step 1: "


def test_alpaca():
    text = render_prompt(REC, cfg(prompt_format="alpaca"), None)
    assert text.startswith("Below is an instruction that describes a task.")
    assert text.endswith("### Instruction:\nWhat is 2 + 3?\n\n### Response: ")


def test_few_shot_qa_and_minerva():
    shots = [{"question": "1 + 1?", "solution": "1 + 1 = 2. The answer is 2."}]
    qa = render_prompt(REC, cfg(prompt_format="qa"), None, shots)
    assert qa == ("Question: 1 + 1?\nAnswer: 1 + 1 = 2. The answer is 2.\n\n"
                  "Question: What is 2 + 3?\nAnswer: ")
    minerva = render_prompt(REC, cfg(prompt_format="minerva"), None, shots)
    assert minerva.endswith("\n\nProblem:\nWhat is 2 + 3?\n\nSolution:\n")


def test_shots_are_seeded():
    pool = [{"question": str(i), "solution": str(i)} for i in range(50)]
    assert pick_shots(pool, 4, seed=1) == pick_shots(pool, 4, seed=1)
    assert pick_shots(pool, 4, seed=1) != pick_shots(pool, 4, seed=2)
    assert pick_shots(pool, 0, seed=1) == []
