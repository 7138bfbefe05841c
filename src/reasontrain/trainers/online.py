"""The online RL loop, run once for every online method (OREAL, GRPO, RLOO):

    rollout -> grade -> advantages -> select -> update auxiliary models -> update the policy (after their warm-up)
    -> log -> checkpoint

An `OnlineAlgorithm` (trainers/algorithms.py) supplies what differs: the advantages, which trajectories train,
the auxiliary models (OREAL's token reward model) and the policy loss. Everything else is here.

Every random choice of step s derives from (seed, s): the prompt order from the sampler position, the sampling
seed, the kept responses. A checkpoint (policy, auxiliary models, their optimizers and schedules, RNG states,
sampler position) therefore continues a killed run exactly as if it had not stopped.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from reasontrain.distributed import barrier, device_for_rank, dist_info, shard, sum_over_ranks
from reasontrain.generation import SamplingParams, generate
from reasontrain.trainers.checkpoint import ResumeError, load_weights, read_step, step_resume_point, write_step
from reasontrain.trainers.model_engine import TrainedModel

log = logging.getLogger("reasontrain")


@dataclass
class Trajectory:
    group: int  # index of its prompt within the step
    prompt_ids: list[int]
    response_ids: list[int]  # the generated ids, EOS included when the response ended with it
    correct: bool
    truncated: bool
    advantage: float = 0.0


class PromptSampler:
    """Prompts in a fresh seeded permutation per pass over the pool; its whole state is the position."""

    def __init__(self, size: int, seed: int, position: int = 0):
        if size <= 0:
            from reasontrain.data.tasks import DataError

            raise DataError("the online prompt pool is empty: rebalancing dropped every prompt (the starting policy "
                            "solves them all?); use a harder data split or online.rebalance settings")
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


@dataclass
class MicroBatch:
    """One forward pass of this rank: its trajectories, their tensors, their indices in the kept list. A rank
    short of data runs one dummy sequence with an all-zero mask, so every rank runs as many passes (collectives
    stay in step)."""

    trajs: list[Trajectory]
    tensors: dict[str, torch.Tensor]
    indices: list[int]
    dummy: bool
    last: bool

    @property
    def mask(self) -> torch.Tensor:
        return self.tensors["mask"] * (0.0 if self.dummy else 1.0)


class OnlineTrainer:
    """Runs `cfg.online.steps` steps of `algorithm` over `records` (each with `prompt` text and `answer`).

    `policy` is a `TrainedModel`, `reference` a frozen module or engine (None without a KL term).
    `grade_fn(texts, records, truncated) -> list[bool]` judges responses (default: `grade_many` with the
    benchmark's options, truncated = wrong). Checkpoints and `metrics.jsonl` go into `folder`.
    """

    def __init__(self, cfg, algorithm, *, policy: TrainedModel, reference, tokenizer, records: list[dict],
                 folder: Path, tracker=None,
                 grade_fn: Callable[[list[str], list[dict], list[bool]], list[bool]] | None = None):
        self.cfg, self.o, self.algorithm = cfg, cfg.online, algorithm
        self.policy, self.reference = policy, reference
        self.tokenizer, self.records, self.folder = tokenizer, records, Path(folder)
        self.tracker = tracker
        self.grade_fn = grade_fn or self._grade
        self.rank, self.world = dist_info()
        self.device = device_for_rank()
        self.sampler = PromptSampler(len(records), cfg.seed)
        self.step_index = 0
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.micro = cfg.train.micro_batch_size
        self._prompt_ids: dict[int, list[int]] = {}

    @property
    def ckpt_dir(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        return self.folder / "metrics.jsonl"

    # -- the loop --------------------------------------------------------------------------------------------
    def train(self, resume: str | None = None) -> list[dict]:
        """Run to `online.steps`, continuing from `resume` or this folder's last checkpoint; the per-step metrics."""
        from tqdm.auto import tqdm

        name = self.algorithm.name
        self.folder.mkdir(parents=True, exist_ok=True)
        ckpt = step_resume_point(resume, self.ckpt_dir)
        if ckpt is not None:
            self.load_checkpoint(ckpt)
            log.info("%s: resuming from step %d (%s)", name, self.step_index, ckpt)
        history = self._read_history()
        bar = tqdm(total=self.o.steps, initial=self.step_index, desc=name, disable=self.rank != 0, unit="step")
        while self.step_index < self.o.steps:
            metrics = self.train_step()
            history.append(metrics)
            if self.rank == 0:
                with self.metrics_path.open("a") as f:
                    f.write(json.dumps(metrics) + "\n")
                if self.tracker is not None:
                    self.tracker.log(metrics, step=metrics["step"])
                bar.update(1)
                bar.set_postfix(pass_rate=f"{metrics['pass_rate']:.2f}", kept=metrics["kept"])
                log.info("%s step %d/%d: %s", name, metrics["step"], self.o.steps, _short(metrics))
            last = self.step_index == self.o.steps
            if last or (self.o.save_every > 0 and self.step_index % self.o.save_every == 0):
                self.save_checkpoint()
        bar.close()
        return history

    def train_step(self) -> dict:
        o, step, algo = self.o, self.step_index, self.algorithm
        t0 = time.time()
        records = [self.records[i] for i in self.sampler.next(o.prompts_per_step)]
        trajs, gen_stats = self.rollout(records, step)
        t_gen = time.time() - t0
        k = o.samples_per_prompt
        rewards = torch.tensor([1.0 if t.correct else -1.0 for t in trajs]).view(len(records), k)
        for t, a in zip(trajs, algo.advantages(rewards).flatten().tolist()):
            t.advantage = a
        kept = algo.select(trajs, k, random.Random(f"{self.cfg.seed}-keep-{step}"))
        t1 = time.time()
        metrics: dict = {"step": step + 1, "lr/policy": self.policy.current_lr(), **algo.lrs()}
        extras, aux_metrics = algo.update_auxiliary(self, kept)
        metrics.update(aux_metrics)
        frozen = step < algo.freeze_steps
        if not frozen:
            metrics.update(self.update_policy(kept, extras))
        t_train = time.time() - t1
        self.step_index += 1
        groups = rewards.gt(0).tolist()
        n_all = len(trajs)
        train_tokens = sum(len(t.prompt_ids) + len(t.response_ids) for t in kept)
        step_time = time.time() - t0
        metrics.update({
            "pass_rate": sum(t.correct for t in trajs) / n_all,
            "mixed_prompts": sum(0 < sum(g) < len(g) for g in groups) / len(groups),
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
                            desc=f"{self.algorithm.name} step {step + 1} generate", model_path=None)
        flat = [c for row in outs for c in row]
        truncated = [c.truncated for c in flat]
        correct = self.grade_fn([c.text for c in flat], [r for r in records for _ in range(o.samples_per_prompt)],
                                truncated)
        correct = [bool(c) and not t for c, t in zip(correct, truncated)]  # truncated = wrong, always
        trajs = [Trajectory(j // o.samples_per_prompt, self._prompt_token_ids(records[j // o.samples_per_prompt]),
                            self._response_ids(c), correct[j], truncated[j]) for j, c in enumerate(flat)]
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
    def micro_batches(self, kept: list[Trajectory]) -> list[MicroBatch]:
        """This rank's share of `kept` in micro-batches of `train.micro_batch_size`; the same count on every rank."""
        indices = shard(list(range(len(kept))), self.rank, self.world)
        n_micro = max(1, math.ceil(math.ceil(len(kept) / self.world) / self.micro))
        out = []
        for i in range(n_micro):
            idx = indices[i * self.micro:(i + 1) * self.micro]
            trajs, dummy = ([kept[j] for j in idx], False) if idx else ([kept[0]], True)
            out.append(MicroBatch(trajs, batch_tensors(trajs, self.pad_id, self.device), idx, dummy,
                                  last=i == n_micro - 1))
        return out

    def update_policy(self, kept: list[Trajectory], extras: dict | None) -> dict:
        """One policy step on the kept trajectories, with the algorithm's loss over global counts."""
        if not kept:
            self.policy.step(update=False)
            return {}
        counts = {"tokens": sum(len(t.response_ids) for t in kept), "sequences": len(kept),
                  "positive_tokens": sum(len(t.response_ids) for t in kept if t.correct),
                  "negative_tokens": sum(len(t.response_ids) for t in kept if not t.correct)}
        sums: dict[str, float] = {}
        for mb in self.micro_batches(kept):
            ref = None
            if self.reference is not None:
                with torch.no_grad():
                    ref = token_logps(self.reference, mb.tensors["input_ids"], mb.tensors["attention_mask"])
            lp = token_logps(self.policy, mb.tensors["input_ids"], mb.tensors["attention_mask"])
            loss, m = self.algorithm.policy_loss(lp, ref, mb, extras, counts, self.device)
            self.policy.backward(loss, last=mb.last)
            if not mb.dummy:
                for key, value in m.items():
                    sums[key] = sums.get(key, 0.0) + float(value)
        norm = self.policy.step()
        keys = sorted(self.algorithm.policy_metric_keys)
        out = dict(zip(keys, sum_over_ranks([sums.get(k, 0.0) for k in keys], self.device)))
        out["loss/policy"] = self.algorithm.total_policy_loss(out)
        if norm is not None:
            out["policy/grad_norm"] = norm
        return out

    # -- checkpoints -----------------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """`checkpoints/step-N/`: the policy (loadable weights), every trained model's optimizer and schedule, and
        each rank's RNG states; written under a temporary name and renamed once complete."""
        from reasontrain.models.loading import save_for_inference

        def write(tmp: Path) -> None:
            with self.policy.full_weights() as module:
                if self.rank == 0:
                    save_for_inference(module, None, tmp / "policy", safe_serialization=True)
            self.policy.save_state(tmp, "policy")
            for name, model in self.algorithm.auxiliary_models().items():
                with model.full_weights() as module:
                    if self.rank == 0:
                        module.save_pretrained(tmp / name, safe_serialization=True)
                model.save_state(tmp, name)

        return write_step(self.ckpt_dir, self.step_index, write,
                          {"sampler_position": self.sampler.position, "seed": self.cfg.seed},
                          keep=self.o.save_total_limit)

    def load_checkpoint(self, ckpt: Path) -> None:
        ckpt = Path(ckpt)
        state = read_step(ckpt)
        if self.policy.engine is None:
            load_weights(self.policy.module, ckpt / "policy")
        self.policy.load_state(ckpt, "policy")
        for name, model in self.algorithm.auxiliary_models().items():
            if not (ckpt / name).exists():
                raise ResumeError(f"online.resume: {ckpt} has no {name} (saved by a run without it?)")
            if model.engine is None:
                load_weights(model.module, ckpt / name)
            model.load_state(ckpt, name)
        self.step_index = int(state["step"])
        self.sampler.position = int(state["sampler_position"])

    def _read_history(self) -> list[dict]:
        """Metrics of the steps already done; lines past the resumed step (written before a kill) are dropped."""
        if not self.metrics_path.exists():
            return []
        rows = [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r["step"] <= self.step_index]
        barrier()  # every rank has read the file before rank 0 rewrites it
        if self.rank == 0:
            self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return rows


def _short(m: dict) -> str:
    keys = ("pass_rate", "kept", "loss/policy", "loss/positive", "loss/negative", "loss/pg", "kl", "rm/loss",
            "rm/accuracy", "response_length", "time/generate", "time/train")
    return " ".join(f"{k}={m[k]:.4g}" if isinstance(m[k], float) else f"{k}={m[k]}" for k in keys if k in m)
