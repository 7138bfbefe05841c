"""Worker for tests/test_distributed.py: sampling, grading and preference training on the tiny model through the
stage functions, with several preference-trainer variants in one launch (each DeepSpeed launch costs tens of
seconds). Runs the same under torchrun and as one plain process, so the test compares the two.

    python [-m torch.distributed.run --nproc_per_node 2] tests/distributed_worker.py OUT [key=value ...]

Rank 0 writes OUT/result.json: the sample and grade files, and per variant its loss curve and final model folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Preference-trainer variants, each trained on the same pairs from the same starting policy. The pairs are edit
# pairs and `edit_token_weight=2`, so every variant also carries token weights through the collator.
VARIANTS = {
    "copy": ["preference.reference=copy"],
    "cached_lora": ["preference.reference=cached", "model.lora.enabled=true"],
    "lora_ref": ["preference.reference=lora", "model.lora.enabled=true"],
}


def edit_pairs(records: list[dict], prompt) -> list[dict]:
    """One edit pair per record: the gold solution against the same solution with its last result off by one."""
    pairs = []
    for r in records:
        head, _, answer = r["solution"].rpartition("#### ")
        pairs.append({"id": r["id"], "kind": "edit", "prompt": prompt(r), "chosen": r["solution"],
                      "rejected": f"{head}#### {int(answer) + 1}"})
    return pairs


def main(out: Path, overrides: list[str]) -> None:
    from hydra import compose, initialize_config_dir

    from reasontrain.cli import CONFIG_DIR, rewrite_argv
    from reasontrain.config import register_configs
    from reasontrain.data.formats import render_prompt
    from reasontrain.distributed import barrier, init_distributed, is_main_process
    from reasontrain.models.tiny import build_tokenizer
    from reasontrain.stages.data import prepare_data, read_jsonl, write_jsonl
    from reasontrain.stages.model import starting_model
    from reasontrain.stages.sample import grade_stage, sample_stage
    from reasontrain.stages.train_preference import train_preference

    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        def config(*extra: str):
            return compose("config", overrides=rewrite_argv(["recipe=dpo", f"output_root={out}", *overrides,
                                                             *extra]))

        cfg = config()
        init_distributed(cfg.distributed.kind, cfg.distributed.timeout_minutes)
        run_dir = out / "run"
        data_dir = prepare_data(cfg, run_dir)
        policy = starting_model(cfg, run_dir)
        samples = sample_stage(cfg, run_dir, policy, data_dir / f"{cfg.data.train_split}.jsonl")
        graded = grade_stage(cfg, run_dir, samples)

        tokenizer = build_tokenizer()
        records = read_jsonl(data_dir / f"{cfg.data.train_split}.jsonl")[:12]
        pairs = run_dir / "pairs.jsonl"
        if is_main_process():
            write_jsonl(pairs, edit_pairs(records, lambda r: render_prompt(r, cfg.data, tokenizer)))
        barrier()

        result = {"samples": str(samples), "graded": str(graded), "runs": {}}
        for name, extra in VARIANTS.items():
            folder = train_preference(config(*extra), run_dir, policy, pairs, label=f"pref-{name}",
                                      edit_token_weight=2.0)
            history = json.loads((folder / "log_history.json").read_text())
            result["runs"][name] = {
                "final": str(folder / "final"),
                "loss": [h["loss"] for h in history if "loss" in h],
                "summary": json.loads((folder / "stage.json").read_text())["result"],
            }
        if is_main_process():
            (out / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), sys.argv[2:])
