"""cDPO's stages (ALGORITHMS.md §2.2-2.3): select data by answer frequency, train the positive and negative
models, and score every rejected token by contrastive estimation.

The scores are computed on exactly the token ids `reasontrain.data.pairs.tokenize_pair` gives the preference
trainer, and stored per pair as `rejected_weights` (and `chosen_weights`), one value per response token.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from reasontrain.config import MaskedThoughtConfig
from reasontrain.data.pairs import tokenize_pair
from reasontrain.data.selection import cdpo_selection
from reasontrain.distributed import is_main_process
from reasontrain.losses import contrastive_token_weights
from reasontrain.stages.base import run_stage, stage_key_from
from reasontrain.stages.data import read_jsonl, write_jsonl
from reasontrain.stages.train_sft import train_sft

log = logging.getLogger("reasontrain")


def select_stage(cfg, run_dir: Path, graded_path: Path) -> Path:
    """Folder with `positive.jsonl`, `negative.jsonl` (SFT records) and `pairs.jsonl` (DPO pairs), §2.2."""
    c = cfg.cdpo
    key = stage_key_from(cfg, reads=("cdpo.incorrect_top_p", "seed"), inputs={"graded": graded_path})

    def run(folder: Path) -> dict:
        rows = read_jsonl(graded_path)
        positive, negative, pairs, skipped = cdpo_selection(rows, c.incorrect_top_p, cfg.seed)
        if is_main_process():
            write_jsonl(folder / "positive.jsonl", positive)
            write_jsonl(folder / "negative.jsonl", negative)
            write_jsonl(folder / "pairs.jsonl", pairs)
        n_wrong = sum(not ok for r in rows for ok in r["correct"])
        return {"questions": len(rows), "positive": len(positive), "negative": len(negative), "pairs": len(pairs),
                "skipped": dict(skipped), "incorrect_per_question": n_wrong / max(1, len(rows))}

    folder, _ = run_stage(run_dir, "cdpo-select", key, run)
    return folder


def with_lora(cfg, lora):
    """A copy of the root config whose `model.lora` is `lora` (the positive/negative models use their own)."""
    sub = cfg.copy()
    sub.model.lora = lora
    return sub


def contrastive_models(cfg, run_dir: Path, policy_dir: str, selected: Path) -> tuple[str, str]:
    """(positive model folder, negative model folder): the policy SFT-trained on each selection, LoRA merged."""
    sub = with_lora(cfg, cfg.cdpo.sft_lora)
    out = []
    for side in ("positive", "negative"):
        folder = train_sft(sub, run_dir, policy_dir, selected / f"{side}.jsonl", label=f"cdpo-{side[:3]}",
                           train_cfg=cfg.cdpo.sft_train, masked_thought=MaskedThoughtConfig())
        out.append(str(folder / "final"))
    return out[0], out[1]


@torch.no_grad()
def response_logits(model, tokenizer, prompts: list[list[int]], responses: list[list[int]], max_length: int):
    """For each (prompt ids, response ids): the logits (n, V) at the positions that predict the first n response
    tokens, n = the response tokens within `max_length` (the trainer truncates the rest away)."""
    seqs = [(p + r)[:max_length] for p, r in zip(prompts, responses)]
    width = max(map(len, seqs))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        attn[i, :len(s)] = 1
    logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits
    out = []
    for i, (p, s) in enumerate(zip(prompts, seqs)):
        if not p:
            raise ValueError("contrastive scoring needs a non-empty prompt: the first response token has no "
                             "position that predicts it")
        n = len(s) - len(p)
        out.append(logits[i, len(p) - 1:len(p) - 1 + max(n, 0)])  # position t predicts token t + 1
    return out


@torch.no_grad()
def score_pairs(pos_model, neg_model, tokenizer, rows: list[dict], gamma: float = 1.0, append_eos: bool = True,
                max_length: int = 1024, batch_size: int = 8, weight_chosen: bool = False) -> list[dict]:
    """The pairs with `rejected_weights` = 1 − p_CE and `chosen_weights` (1, or p_CE with `weight_chosen`), one
    value per token of `tokenize_pair`'s response ids (also stored, as `{side}_token_ids`). Tokens past
    `max_length` get weight 1: training truncates them away."""
    pos_model.eval()
    neg_model.eval()
    tokenized = [tokenize_pair(tokenizer, r["prompt"], r["chosen"], r["rejected"],
                               append_eos=r.get("append_eos", append_eos)) for r in rows]
    out = [dict(r) for r in rows]
    for side in ("rejected", "chosen") if weight_chosen else ("rejected",):
        for start in range(0, len(rows), batch_size):
            chunk = tokenized[start:start + batch_size]
            prompts, responses = [t["prompt_ids"] for t in chunk], [t[f"{side}_ids"] for t in chunk]
            zp = response_logits(pos_model, tokenizer, prompts, responses, max_length)
            zn = response_logits(neg_model, tokenizer, prompts, responses, max_length)
            for i, (a, b, resp) in enumerate(zip(zp, zn, responses)):
                n = a.shape[0]
                w = contrastive_token_weights(a[None], b[None], torch.tensor(resp[:n], device=a.device)[None],
                                              gamma)[0].cpu().tolist()
                if side == "chosen":
                    w = [1.0 - x for x in w]  # p_CE of the chosen token
                row = out[start + i]
                row[f"{side}_weights"] = w + [1.0] * (len(resp) - n)
                row[f"{side}_token_ids"] = resp
    for row, t in zip(out, tokenized):
        row.setdefault("chosen_weights", [1.0] * len(t["chosen_ids"]))
    return out


def score_stage(cfg, run_dir: Path, pairs_path: Path, policy_dir: str, pos_dir: str, neg_dir: str) -> Path:
    """Folder with `pairs.jsonl` (the pairs with their token weights) and `critical_tokens.json` (where the
    highest weights sit; see `reasontrain.critical_report.critical_token_summary`)."""
    c, p = cfg.cdpo, cfg.preference
    key = stage_key_from(cfg, reads=("cdpo.gamma", "cdpo.weight_chosen", "preference.append_eos", "train.max_length",
                                     "data.name", "cdpo.report_examples", "cdpo.report_top_tokens", "model.dtype"),
                         inputs={"pairs": pairs_path, "policy": policy_dir, "positive": pos_dir, "negative": neg_dir})

    def run(folder: Path) -> dict:
        import json

        from transformers import AutoTokenizer

        from reasontrain.critical_report import critical_token_summary
        from reasontrain.models.loading import load_pretrained

        # The policy's tokenizer: the one the preference trainer tokenizes the pairs with.
        tokenizer = AutoTokenizer.from_pretrained(str(policy_dir), trust_remote_code=cfg.model.trust_remote_code)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        pos, _ = load_pretrained(pos_dir, cfg.model.dtype, cfg.model.trust_remote_code)
        neg, _ = load_pretrained(neg_dir, cfg.model.dtype, cfg.model.trust_remote_code)
        if torch.cuda.is_available():
            pos, neg = pos.cuda(), neg.cuda()
        if pos.config.vocab_size != neg.config.vocab_size:
            raise ValueError(f"positive and negative models have different vocabularies: {pos_dir}, {neg_dir}")
        rows = read_jsonl(pairs_path)
        scored = score_pairs(pos, neg, tokenizer, rows, c.gamma, p.append_eos, cfg.train.max_length,
                             c.score_batch_size, c.weight_chosen)
        summary = critical_token_summary(scored, tokenizer, arith=cfg.data.name == "arith",
                                         examples=c.report_examples, top_k=c.report_top_tokens)
        if is_main_process():
            write_jsonl(folder / "pairs.jsonl", scored)
            (folder / "critical_tokens.json").write_text(json.dumps(summary, indent=1))
        flat = [w for r in scored for w in r["rejected_weights"]]
        return {"pairs": len(scored), "mean_rejected_weight": sum(flat) / max(1, len(flat)),
                **{k: v for k, v in summary.items() if k != "examples"}}

    folder, _ = run_stage(run_dir, "cdpo-score", key, run)
    return folder
