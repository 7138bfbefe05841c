"""The OREAL online loop (ALGORITHMS.md section 3): sample B prompts x K responses, grade, RLOO advantages on all
K, keep one correct and one incorrect response per prompt with 0 < p < 1, update the token reward model, update
the policy (frozen for the first `actor_freeze_steps`) with L+ + L- + KL against the initial policy.

Every random choice of step s derives from (seed, s): the prompt order from the sampler position, the sampling
seed, the kept responses. A checkpoint (policy, RM, both optimizers and schedules, RNG states, sampler position)
therefore continues a killed run exactly as if it had not stopped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from reasontrain.generation import SamplingParams, generate
from reasontrain.generation.base import dist_info, shard
from reasontrain.losses import oreal_loss, rloo_advantages, token_rm_loss, token_rm_weights
from reasontrain.trainers.model_engine import TrainedModel, device_for_rank

log = logging.getLogger("reasontrain")

CKPT_PREFIX = "step-"


class ResumeError(FileNotFoundError):
    """A resume path that does not exist or holds no checkpoint."""


@dataclass
class Trajectory:
    group: int  # index of its prompt within the step
    prompt_ids: list[int]
    response_ids: list[int]  # the generated ids, EOS included when the response ended with it
    correct: bool
    advantage: float
    truncated: bool


class PromptSampler:
    """Prompts in a fresh seeded permutation per pass over the pool; its whole state is the position."""

    def __init__(self, size: int, seed: int, position: int = 0):
        if size <= 0:
            from reasontrain.data.tasks import DataError

            raise DataError("the OREAL prompt pool is empty: rebalancing dropped every prompt (the starting policy "
                            "solves them all?); use a harder data split or oreal.rebalance settings")
        self.size, self.seed, self.position = size, seed, position

    def _order(self, epoch: int) -> list[int]:
        order = list(range(self.size))
        random.Random(f"{self.seed}-epoch-{epoch}").shuffle(order)
        return order

    def next(self, n: int) -> list[int]:
        out = []
        while len(out) < n:
            epoch, i = divmod(self.position, self.size)
            take = min(n - len(out), self.size - i)
            out += self._order(epoch)[i:i + take]
            self.position += take
        return out


def policy_freeze_steps(o) -> int:
    """Steps the policy stays frozen while the token RM warms up (none without an RM)."""
    return o.actor_freeze_steps if o.token_rm else 0


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint at `path` (a `step-N` folder) or the newest one inside it; a clear error otherwise."""
    path = Path(path)
    if not path.exists():
        raise ResumeError(f"oreal.resume: {path} does not exist")
    if (path / "state.json").exists():
        return path
    found = latest_checkpoint(path)
    if found is None:
        raise ResumeError(f"oreal.resume: {path} holds no checkpoint (no {CKPT_PREFIX}N/state.json)")
    return found


def latest_checkpoint(folder: Path) -> Path | None:
    folder = Path(folder)
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob(f"{CKPT_PREFIX}*") if p.is_dir() and (p / "state.json").exists()
            and p.name[len(CKPT_PREFIX):].isdigit()]
    return max(done, key=lambda p: int(p.name[len(CKPT_PREFIX):]), default=None)


def resume_point(resume: str | None, own_dir: Path) -> Path | None:
    """Where training continues: the newer of the given `resume` checkpoint (it must exist) and the run's own
    last one, so re-running the same command after a crash never goes back to the `oreal.resume` step."""
    own = latest_checkpoint(own_dir)
    if not resume:
        return own
    given = find_checkpoint(resume)

    def step(ckpt: Path) -> int:
        return int(json.loads((ckpt / "state.json").read_text())["step"])

    return own if own is not None and step(own) > step(given) else given


def batch_tensors(trajs: list[Trajectory], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Right-padded prompt+response ids and the response mask on the (B, T-1) grid of next-token predictions."""
    seqs = [t.prompt_ids + t.response_ids for t in trajs]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width - 1)
    for i, (t, s) in enumerate(zip(trajs, seqs)):
        ids[i, :len(s)] = torch.tensor(s)
        attn[i, :len(s)] = 1
        mask[i, len(t.prompt_ids) - 1:len(s) - 1] = 1  # position p predicts token p+1
    return {"input_ids": ids.to(device), "attention_mask": attn.to(device), "mask": mask.to(device)}


def token_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """log π(token t+1 | ≤ t) for every position, shape (B, T-1), float32."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1].float()
    return logits.log_softmax(-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)


def select_pairs(groups: list[list[bool]], rng: random.Random) -> list[tuple[int, int]]:
    """(group, sample) indices: one random correct and one random incorrect sample of every mixed group."""
    keep = []
    for g, correct in enumerate(groups):
        pos = [i for i, c in enumerate(correct) if c]
        neg = [i for i, c in enumerate(correct) if not c]
        if pos and neg:
            keep += [(g, rng.choice(pos)), (g, rng.choice(neg))]
    return keep


class OrealTrainer:
    """Runs `cfg.oreal.steps` online steps over `records` (each with `prompt` text and `answer`).

    `policy`, `rm` are `TrainedModel`s (rm None when `oreal.token_rm=false`), `reference` a frozen module or
    engine. `grade_fn(texts, records, truncated) -> list[bool]` judges responses (default: `grade_many` with the
    benchmark's options, truncated = wrong). Checkpoints and `metrics.jsonl` go into `folder`.
    """

    def __init__(self, cfg, *, policy: TrainedModel, reference, rm: TrainedModel | None, tokenizer,
                 records: list[dict], folder: Path, tracker=None,
                 grade_fn: Callable[[list[str], list[dict], list[bool]], list[bool]] | None = None):
        self.cfg, self.o = cfg, cfg.oreal
        self.policy, self.reference, self.rm = policy, reference, rm
        self.tokenizer, self.records, self.folder = tokenizer, records, Path(folder)
        self.tracker = tracker
        self.grade_fn = grade_fn or self._grade
        self.rank, self.world = dist_info()
        self.device = device_for_rank()
        self.sampler = PromptSampler(len(records), cfg.seed)
        self.step_index = 0
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.freeze_steps = policy_freeze_steps(self.o)
        self.micro = cfg.train.micro_batch_size
        self._prompt_ids: dict[int, list[int]] = {}

    # -- the loop --------------------------------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        return self.folder / "metrics.jsonl"

    def train(self, resume: str | None = None) -> list[dict]:
        """Run to `oreal.steps`, continuing from `resume` or this folder's last checkpoint; the per-step metrics."""
        from tqdm.auto import tqdm

        self.folder.mkdir(parents=True, exist_ok=True)
        ckpt = resume_point(resume, self.ckpt_dir)
        if ckpt is not None:
            self.load_checkpoint(ckpt)
            log.info("oreal: resuming from step %d (%s)", self.step_index, ckpt)
        history = self._read_history()
        bar = tqdm(total=self.o.steps, initial=self.step_index, desc="oreal", disable=self.rank != 0, unit="step")
        while self.step_index < self.o.steps:
            metrics = self.train_step()
            history.append(metrics)
            if self.rank == 0:
                with self.metrics_path.open("a") as f:
                    f.write(json.dumps(metrics) + "\n")
                if self.tracker is not None:
                    self.tracker.log(metrics, step=metrics["step"])
                bar.update(1)
                bar.set_postfix(pass_rate=f"{metrics['pass_rate']:.2f}", kept=metrics["kept"],
                                rm_acc=f"{metrics.get('rm/accuracy', float('nan')):.2f}")
                log.info("oreal step %d/%d: %s", metrics["step"], self.o.steps, _short(metrics))
            last = self.step_index == self.o.steps
            if last or (self.o.save_every > 0 and self.step_index % self.o.save_every == 0):
                self.save_checkpoint()
        bar.close()
        return history

    def train_step(self) -> dict:
        o, step = self.o, self.step_index
        t0 = time.time()
        idx = self.sampler.next(o.prompts_per_step)
        records = [self.records[i] for i in idx]
        trajs, gen_stats = self.rollout(records, step)
        t_gen = time.time() - t0
        groups = [[t.correct for t in trajs[g * o.samples_per_prompt:(g + 1) * o.samples_per_prompt]]
                  for g in range(len(records))]
        if o.token_rm:
            rng = random.Random(f"{self.cfg.seed}-keep-{step}")
            kept = [trajs[g * o.samples_per_prompt + i] for g, i in select_pairs(groups, rng)]
        else:
            kept = trajs
        t1 = time.time()
        metrics: dict = {"step": step + 1, "lr/policy": self.policy.current_lr()}
        if self.rm is not None:
            metrics["lr/rm"] = self.rm.current_lr()
        weights = None
        if self.rm is not None:
            weights, rm_metrics = self.update_rm(kept)
            metrics.update(rm_metrics)
        frozen = step < self.freeze_steps
        metrics.update(self.update_policy(kept, weights, frozen))
        t_train = time.time() - t1
        self.step_index += 1
        n_all = len(trajs)
        mixed = sum(0 < sum(g) < len(g) for g in groups)
        train_tokens = sum(len(t.prompt_ids) + len(t.response_ids) for t in kept)
        step_time = time.time() - t0
        metrics.update({
            "pass_rate": sum(t.correct for t in trajs) / n_all,
            "mixed_prompts": mixed / len(groups),
            "kept": len(kept), "kept_fraction": len(kept) / n_all,
            "response_length": gen_stats["tokens"] / n_all,
            "truncation_rate": sum(t.truncated for t in trajs) / n_all,
            "actor_frozen": frozen,
            "time/generate": round(t_gen, 3), "time/train": round(t_train, 3), "time/step": round(step_time, 3),
            "time/generate_share": t_gen / step_time if step_time else 0.0,
            "tokens_per_s/generate": gen_stats["tokens"] / t_gen if t_gen else 0.0,
            "tokens_per_s/train": train_tokens / t_train if t_train else 0.0,
        })
        return metrics

    # -- rollout ---------------------------------------------------------------------------------------------
    def rollout(self, records: list[dict], step: int) -> tuple[list[Trajectory], dict]:
        o, gen = self.o, self.cfg.generation
        params = SamplingParams(n=o.samples_per_prompt, temperature=o.temperature, top_p=o.top_p,
                                max_new_tokens=o.max_new_tokens or gen.max_new_tokens,
                                stop=tuple(dict.fromkeys([*gen.stop, *self.cfg.data.stop])),
                                seed=self.cfg.seed * 1_000_003 + step * 7919)
        with self.policy.for_generation() as model:
            outs = generate(model, self.tokenizer, [r["prompt"] for r in records], params, gen,
                            desc=f"oreal step {step + 1} generate", model_path=None)
        flat = [c for row in outs for c in row]
        truncated = [c.truncated for c in flat]
        correct = self.grade_fn([c.text for c in flat], [r for r in records for _ in range(o.samples_per_prompt)],
                                truncated)
        correct = [bool(c) and not t for c, t in zip(correct, truncated)]  # truncated = wrong, always
        rewards = torch.tensor([1.0 if c else -1.0 for c in correct]).view(len(records), o.samples_per_prompt)
        adv = rloo_advantages(rewards, o.reward_shaping).flatten().tolist()
        trajs = []
        for j, c in enumerate(flat):
            g = j // o.samples_per_prompt
            trajs.append(Trajectory(g, self._prompt_token_ids(records[g]), self._response_ids(c), correct[j], adv[j],
                                    truncated[j]))
        return trajs, {"tokens": sum(c.num_tokens for c in flat)}

    def _response_ids(self, c) -> list[int]:
        """The ids the policy generated (the backend's own, so weights align with what it saw), plus EOS when the
        response ended on EOS rather than on a stop string (a stop string cuts the text, not the ids)."""
        ids = list(c.token_ids) or self.tokenizer(c.text, add_special_tokens=False).input_ids
        eos = self.tokenizer.eos_token_id
        if c.finish_reason == "stop" and eos is not None and (not ids or ids[-1] != eos):
            if self.tokenizer.decode(ids, skip_special_tokens=True) == c.text:
                ids.append(eos)
        return ids

    def _prompt_token_ids(self, record: dict) -> list[int]:
        key = id(record)
        if key not in self._prompt_ids:
            self._prompt_ids[key] = self.tokenizer(record["prompt"], add_special_tokens=False).input_ids
        return self._prompt_ids[key]

    def _grade(self, texts: list[str], records: list[dict], truncated: list[bool]) -> list[bool]:
        from reasontrain.evaluation import grade_across_ranks, grade_options

        # Sharded and gathered, so every rank holds the same verdicts (a timeout on one rank's busy cores
        # must not give the ranks different kept sets and desynchronize their collectives).
        options = {**grade_options(self.cfg.data), "truncated_is_wrong": True}
        verdicts = grade_across_ranks(texts, [r["answer"] for r in records], truncated, progress=False, **options)
        return [v.correct for v in verdicts]

    # -- updates ---------------------------------------------------------------------------------------------
    def _micro_batches(self, kept: list[Trajectory]) -> list[tuple[list[Trajectory], bool]]:
        """This rank's micro-batches; every rank runs the same number (a rank short of data runs one dummy
        sequence with an empty mask) so collective ops stay in step."""
        local = shard(kept, self.rank, self.world)
        per_rank = math.ceil(len(kept) / self.world)
        n_micro = max(1, math.ceil(per_rank / self.micro))
        out = []
        for i in range(n_micro):
            chunk = local[i * self.micro:(i + 1) * self.micro]
            out.append((chunk, False) if chunk else ([kept[0]], True))
        return out

    def update_rm(self, kept: list[Trajectory]) -> tuple[dict[int, tuple], dict]:
        """One RM step on the kept responses (BCE of the mean logit vs the outcome, averaged over all kept
        sequences); returns the token weights (ω⁺, ω⁻) per kept index, from the RM before its update."""
        if not kept:
            self.rm.step(update=False)
            return {}, {}
        n_seq = len(kept)
        weights: dict[int, tuple] = {}
        loss_sum, hits = 0.0, 0
        batches = self._micro_batches(kept)
        offset = shard(list(range(len(kept))), self.rank, self.world)
        pos = 0
        for b, (chunk, dummy) in enumerate(batches):
            t = batch_tensors(chunk, self.pad_id, self.device)
            mask = t["mask"] * (0.0 if dummy else 1.0)
            logits = self.rm(t["input_ids"], t["attention_mask"])[:, :-1]
            correct = torch.tensor([float(x.correct) for x in chunk], device=self.device)
            loss = token_rm_loss(logits, mask, correct, num_sequences=n_seq)
            self.rm.backward(loss, last=b == len(batches) - 1)
            if dummy:
                continue
            wp, wn = token_rm_weights(logits.detach(), mask)
            mean_logit = (logits.detach() * mask).sum(-1) / mask.sum(-1).clamp(min=1)
            hits += int(((mean_logit > 0).float() == correct).sum())
            loss_sum += float(loss.detach()) * n_seq
            for r in range(len(chunk)):
                weights[offset[pos + r]] = (wp[r].cpu(), wn[r].cpu())
            pos += len(chunk)
        norm = self.rm.step()
        loss_sum, hits = _sum_over_ranks([loss_sum, hits], self.device)
        out = {"rm/loss": loss_sum / n_seq, "rm/accuracy": hits / n_seq}
        if norm is not None:
            out["rm/grad_norm"] = norm
        return weights, out

    def update_policy(self, kept: list[Trajectory], weights: dict | None, frozen: bool) -> dict:
        """L⁺ + L⁻ + KL on the kept responses with the global token counts. While frozen the policy's schedule
        does not advance either: its warmup starts at its first update (its schedule spans steps - freeze)."""
        if frozen:
            return {}
        if not kept:
            self.policy.step(update=False)
            return {}
        n_pos = sum(len(t.response_ids) for t in kept if t.correct)
        n_neg = sum(len(t.response_ids) for t in kept if not t.correct)
        n_all = n_pos + n_neg
        o = self.o
        sums = {"loss/positive": 0.0, "loss/negative": 0.0, "kl": 0.0}
        batches = self._micro_batches(kept)
        offset = shard(list(range(len(kept))), self.rank, self.world)
        pos = 0
        for b, (chunk, dummy) in enumerate(batches):
            t = batch_tensors(chunk, self.pad_id, self.device)
            mask = t["mask"] * (0.0 if dummy else 1.0)
            with torch.no_grad():
                ref = token_logps(self.reference, t["input_ids"], t["attention_mask"])
            lp = token_logps(self.policy, t["input_ids"], t["attention_mask"])
            wp = wn = None
            if weights is not None and not dummy:
                width = mask.shape[1]
                wp = torch.stack([_fit(weights[offset[pos + r]][0], width) for r in range(len(chunk))]).to(self.device)
                wn = torch.stack([_fit(weights[offset[pos + r]][1], width) for r in range(len(chunk))]).to(self.device)
            loss, m = oreal_loss(
                lp, ref, mask, torch.tensor([x.advantage for x in chunk], device=self.device),
                torch.tensor([x.correct for x in chunk], device=self.device), wp, wn, kl_coef=o.kl_coef,
                positive_loss_factor=o.positive_loss_factor, negative_loss_factor=o.negative_loss_factor,
                num_pos_tokens=n_pos, num_neg_tokens=n_neg, num_tokens=n_all)
            self.policy.backward(loss, last=b == len(batches) - 1)
            if not dummy:
                for k in sums:
                    sums[k] += float(m[k])
                pos += len(chunk)
        norm = self.policy.step()
        values = _sum_over_ranks(list(sums.values()), self.device)
        out = dict(zip(sums, values))
        out["loss/policy"] = out["loss/positive"] + out["loss/negative"] + o.kl_coef * out["kl"]
        if norm is not None:
            out["policy/grad_norm"] = norm
        return out

    # -- checkpoints -----------------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """`checkpoints/step-N/`, written under a temporary name and renamed once complete."""
        from reasontrain.models.loading import save_for_inference
        from reasontrain.stages.base import barrier

        final = self.ckpt_dir / f"{CKPT_PREFIX}{self.step_index}"
        tmp = self.ckpt_dir / f".tmp-{CKPT_PREFIX}{self.step_index}"
        if self.rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        barrier()
        with self.policy.full_weights() as module:
            if self.rank == 0:
                save_for_inference(module, None, tmp / "policy", safe_serialization=True)
        self.policy.save_state(tmp, "policy")
        if self.rm is not None:
            with self.rm.full_weights() as module:
                if self.rank == 0:
                    module.save(tmp / "rm")
            self.rm.save_state(tmp, "rm")
        torch.save(_rng_state(), tmp / f"rng-rank{self.rank}.pt")
        barrier()
        if self.rank == 0:
            (tmp / "state.json").write_text(json.dumps({"step": self.step_index, "sampler_position":
                                                        self.sampler.position, "seed": self.cfg.seed}))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            done = sorted((p for p in self.ckpt_dir.glob(f"{CKPT_PREFIX}*") if (p / "state.json").exists()),
                          key=lambda p: int(p.name[len(CKPT_PREFIX):]))
            for old in done[:-max(1, self.o.save_total_limit)]:
                shutil.rmtree(old, ignore_errors=True)
        barrier()
        return final

    def load_checkpoint(self, ckpt: Path) -> None:
        ckpt = Path(ckpt)
        state = json.loads((ckpt / "state.json").read_text())
        if self.policy.engine is None:
            _load_pretrained_weights(self.policy.module, ckpt / "policy")
        self.policy.load_state(ckpt, "policy")
        if self.rm is not None:
            if not (ckpt / "rm").exists():
                raise ResumeError(f"oreal.resume: {ckpt} has no token reward model (saved with oreal.token_rm=false?)")
            if self.rm.engine is None:
                self.rm.module.load(ckpt / "rm")
            self.rm.load_state(ckpt, "rm")
        rng_file = ckpt / f"rng-rank{self.rank}.pt"
        if rng_file.exists():
            _set_rng_state(torch.load(rng_file, weights_only=True))
        self.step_index = int(state["step"])
        self.sampler.position = int(state["sampler_position"])

    def _read_history(self) -> list[dict]:
        """Metrics of the steps already done; lines past the resumed step (written before a kill) are dropped."""
        from reasontrain.stages.base import barrier

        if not self.metrics_path.exists():
            return []
        rows = [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r["step"] <= self.step_index]
        barrier()  # every rank has read the file before rank 0 rewrites it
        if self.rank == 0:
            self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return rows


def _fit(w: torch.Tensor, width: int) -> torch.Tensor:
    return w[:width] if w.shape[0] >= width else torch.cat([w, w.new_zeros(width - w.shape[0])])


def _sum_over_ranks(values: list[float], device) -> list[float]:
    rank, world = dist_info()
    if world == 1:
        return [float(v) for v in values]
    import torch.distributed as dist

    t = torch.tensor([float(v) for v in values], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def _load_pretrained_weights(module, folder: Path) -> None:
    from safetensors.torch import load_file

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise ResumeError(f"oreal.resume: no policy weights in {folder}")
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    missing, unexpected = module.load_state_dict(state, strict=False)
    tied = {k for k in missing if k.endswith("lm_head.weight")} if getattr(module.config, "tie_word_embeddings",
                                                                          False) else set()
    if set(missing) - tied or unexpected:
        raise ResumeError(f"oreal.resume: policy weights in {folder} do not match the model "
                          f"(missing {sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]})")
    if tied:
        module.tie_weights()


def _rng_state() -> dict:
    import numpy as np

    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": json.dumps(random.getstate()),
             "numpy": torch.from_numpy(np_state[1].astype("int64")), "numpy_pos": int(np_state[2])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype("uint32"), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _short(m: dict) -> str:
    keys = ("pass_rate", "kept", "loss/positive", "loss/negative", "kl", "rm/loss", "rm/accuracy",
            "response_length", "time/generate", "time/train")
    return " ".join(f"{k}={m[k]:.4g}" if isinstance(m[k], float) else f"{k}={m[k]}" for k in keys if k in m)
