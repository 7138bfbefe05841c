"""The pipeline every method begins and ends with, in one place.

begin:  data -> starting policy (SFT first when `start.sft`) -> evaluate it (`eval.before`)
sample: sample K per training question -> grade
finish: evaluate the trained policy -> what the report needs
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from reasontrain.stages.data import prepare_data
from reasontrain.stages.evaluate import evaluate_model
from reasontrain.stages.model import starting_model, starting_policy
from reasontrain.stages.sample import grade_stage, sample_stage


@dataclass(frozen=True)
class Start:
    data_dir: Path
    policy: str  # the folder (or Hub id) training starts from
    before: dict | None  # its metrics per evaluation split (None: eval.before=false)

    def split(self, cfg) -> Path:
        return self.data_dir / f"{cfg.data.train_split}.jsonl"


def begin(cfg, run_dir: Path, start_sft: bool = True) -> Start:
    """Data, the starting policy and its evaluation. `start_sft=False` starts from the model as configured
    (SFT itself, whose training is the method)."""
    data_dir = prepare_data(cfg, run_dir)
    policy = starting_policy(cfg, run_dir, data_dir) if start_sft else starting_model(cfg, run_dir)
    before = evaluate_model(cfg, run_dir, policy, data_dir, "start") if cfg.eval.before else None
    return Start(data_dir, policy, before)


def sample_and_grade(cfg, run_dir: Path, start: Start) -> Path:
    """`graded.jsonl`: K samples of the starting policy per training question, each with its verdict."""
    return grade_stage(cfg, run_dir, sample_stage(cfg, run_dir, start.policy, start.split(cfg)))


def finish(cfg, run_dir: Path, start: Start, train_dir: Path) -> dict:
    """Evaluate the trained policy (`train_dir/final`) and collect what the report needs."""
    after = evaluate_model(cfg, run_dir, str(train_dir / "final"), start.data_dir, "final")
    summary = json.loads((train_dir / "stage.json").read_text()).get("result", {})
    history_file = train_dir / "log_history.json"
    return {"before": start.before, "after": after, "train": summary,
            "log_history": json.loads(history_file.read_text()) if history_file.exists() else [],
            "final": train_dir / "final"}


def run_online(cfg, run_dir: Path, tracker) -> dict:
    """The online methods' pipeline: begin -> difficulty rebalancing of the prompt pool -> the online loop of
    `cfg.method` (OREAL, GRPO, RLOO) -> finish."""
    from reasontrain.stages.online import rebalance_stage, train_online

    start = begin(cfg, run_dir)
    prompts = rebalance_stage(cfg, run_dir, start.policy, start.split(cfg))
    return finish(cfg, run_dir, start, train_online(cfg, run_dir, start.policy, prompts, tracker))
