"""What each online method computes inside the shared loop (trainers/online.py): advantages, which trajectories
train, auxiliary models, and the policy loss. The losses themselves are pure functions in `losses/outcome_rl.py`.

- `Oreal` (ALGORITHMS.md section 3): RLOO advantages on all K, one correct + one incorrect trajectory per mixed
  prompt, a token reward model trained online (the policy frozen for its first `actor_freeze_steps`), and
  L+ + L- + KL with the RM's token weights.
- `PolicyGradient`: GRPO (group-normalized advantages) or RLOO (leave-one-out), every trajectory, the
  token-level policy-gradient loss of `grpo.loss_type` / `rloo.loss_type`, optional KL.
"""

from __future__ import annotations

import random

import torch

from reasontrain.config import Advantage, Method, OrealSelect, PolicyLoss
from reasontrain.losses import (
    group_advantages,
    oreal_loss,
    policy_gradient_loss,
    rloo_advantages,
    token_rm_loss,
    token_rm_weights,
)
from reasontrain.models.token_rm import token_rm_logits
from reasontrain.trainers.model_engine import TrainedModel


def select_pairs(groups: list[list[bool]], rng: random.Random) -> list[tuple[int, int]]:
    """(group, sample) indices: one random correct and one random incorrect sample of every mixed group."""
    keep = []
    for g, correct in enumerate(groups):
        pos = [i for i, c in enumerate(correct) if c]
        neg = [i for i, c in enumerate(correct) if not c]
        if pos and neg:
            keep += [(g, rng.choice(pos)), (g, rng.choice(neg))]
    return keep


def _fit(w: torch.Tensor, width: int) -> torch.Tensor:
    return w[:width] if w.shape[0] >= width else torch.cat([w, w.new_zeros(width - w.shape[0])])


class OnlineAlgorithm:
    """The defaults: no auxiliary model, no freeze, every trajectory trains."""

    name = "online"
    freeze_steps = 0
    policy_metric_keys: tuple[str, ...] = ()

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def select(self, trajs: list, k: int, rng: random.Random) -> list:
        return trajs

    def auxiliary_models(self) -> dict[str, TrainedModel]:
        return {}

    def lrs(self) -> dict[str, float]:
        return {f"lr/{name}": model.current_lr() for name, model in self.auxiliary_models().items()}

    def update_auxiliary(self, trainer, kept: list) -> tuple[dict | None, dict]:
        """Train the auxiliary models on `kept`; (extras for the policy loss, metrics)."""
        return None, {}

    def policy_loss(self, logps, ref_logps, mb, extras, counts: dict, device) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def total_policy_loss(self, sums: dict) -> float:
        raise NotImplementedError


class Oreal(OnlineAlgorithm):
    name = "oreal"
    policy_metric_keys = ("kl", "loss/negative", "loss/positive")

    def __init__(self, cfg, rm: TrainedModel | None):
        self.o, self.kl_coef, self.rm = cfg.oreal, cfg.online.kl_coef, rm
        self.freeze_steps = self.o.actor_freeze_steps if rm is not None else 0

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        return rloo_advantages(rewards, Advantage(self.o.reward_shaping).value)

    def select(self, trajs: list, k: int, rng: random.Random) -> list:
        default = OrealSelect.pairs if self.rm is not None else OrealSelect.all  # the ablation keeps every one
        if OrealSelect(self.o.select or default) == OrealSelect.all:
            return trajs
        groups = [[t.correct for t in trajs[g * k:(g + 1) * k]] for g in range(len(trajs) // k)]
        return [trajs[g * k + i] for g, i in select_pairs(groups, rng)]

    def auxiliary_models(self) -> dict[str, TrainedModel]:
        return {"rm": self.rm} if self.rm is not None else {}

    def update_auxiliary(self, trainer, kept: list) -> tuple[dict | None, dict]:
        """One RM step on the kept responses (BCE of the mean logit vs the outcome, averaged over all kept
        sequences); the token weights (ω⁺, ω⁻) per kept index come from the RM before its update."""
        from reasontrain.distributed import sum_over_ranks

        if self.rm is None:
            return None, {}
        if not kept:
            self.rm.step(update=False)
            return {}, {}
        n_seq = len(kept)
        weights: dict[int, tuple] = {}
        loss_sum, hits = 0.0, 0
        for mb in trainer.micro_batches(kept):
            mask = mb.mask
            logits = token_rm_logits(self.rm, mb.tensors["input_ids"], mb.tensors["attention_mask"])[:, :-1]
            correct = torch.tensor([float(x.correct) for x in mb.trajs], device=trainer.device)
            loss = token_rm_loss(logits, mask, correct, num_sequences=n_seq)
            self.rm.backward(loss, last=mb.last)
            if mb.dummy:
                continue
            wp, wn = token_rm_weights(logits.detach(), mask)
            mean_logit = (logits.detach() * mask).sum(-1) / mask.sum(-1).clamp(min=1)
            hits += int(((mean_logit > 0).float() == correct).sum())
            loss_sum += float(loss.detach()) * n_seq
            for r, j in enumerate(mb.indices):
                weights[j] = (wp[r].cpu(), wn[r].cpu())
        norm = self.rm.step()
        loss_sum, hits = sum_over_ranks([loss_sum, hits], trainer.device)
        out = {"rm/loss": loss_sum / n_seq, "rm/accuracy": hits / n_seq}
        if norm is not None:
            out["rm/grad_norm"] = norm
        return weights, out

    def policy_loss(self, logps, ref_logps, mb, extras, counts: dict, device) -> tuple[torch.Tensor, dict]:
        wp = wn = None
        if extras is not None and not mb.dummy:
            width = mb.mask.shape[1]
            wp = torch.stack([_fit(extras[j][0], width) for j in mb.indices]).to(device)
            wn = torch.stack([_fit(extras[j][1], width) for j in mb.indices]).to(device)
        return oreal_loss(
            logps, ref_logps, mb.mask, torch.tensor([x.advantage for x in mb.trajs], device=device),
            torch.tensor([x.correct for x in mb.trajs], device=device), wp, wn, kl_coef=self.kl_coef,
            positive_loss_factor=self.o.positive_loss_factor, negative_loss_factor=self.o.negative_loss_factor,
            num_pos_tokens=counts["positive_tokens"], num_neg_tokens=counts["negative_tokens"],
            num_tokens=counts["tokens"])

    def total_policy_loss(self, sums: dict) -> float:
        return sums["loss/positive"] + sums["loss/negative"] + self.kl_coef * sums["kl"]


class PolicyGradient(OnlineAlgorithm):
    """GRPO (`estimator="grpo"`) or RLOO (`estimator="rloo"`) on every sampled trajectory."""

    policy_metric_keys = ("kl", "loss/pg")

    def __init__(self, name: str, estimator: str, loss_type: str, kl_coef: float, max_tokens: int,
                 scale_rewards: bool = True):
        self.name, self.estimator, self.loss_type = name, estimator, loss_type
        self.kl_coef, self.max_tokens, self.scale_rewards = kl_coef, max_tokens, scale_rewards

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        return group_advantages(rewards, self.estimator, scale=self.scale_rewards)

    def policy_loss(self, logps, ref_logps, mb, extras, counts: dict, device) -> tuple[torch.Tensor, dict]:
        return policy_gradient_loss(
            logps, ref_logps, mb.mask, torch.tensor([x.advantage for x in mb.trajs], device=device),
            loss_type=self.loss_type, kl_coef=self.kl_coef, num_tokens=counts["tokens"],
            num_sequences=counts["sequences"], max_tokens=self.max_tokens)

    def total_policy_loss(self, sums: dict) -> float:
        return sums["loss/pg"] + self.kl_coef * sums["kl"]


def make_algorithm(cfg, rm: TrainedModel | None = None) -> OnlineAlgorithm:
    """The algorithm of `cfg.method` (oreal | grpo | rloo); `rm` is OREAL's token reward model (None: the ablation)."""
    method = Method(cfg.method).value
    max_tokens = cfg.online.max_new_tokens or cfg.generation.max_new_tokens
    if method == "oreal":
        return Oreal(cfg, rm)
    if method == "grpo":
        return PolicyGradient("grpo", "grpo", PolicyLoss(cfg.grpo.loss_type).value,
                              cfg.online.kl_coef, max_tokens, scale_rewards=cfg.grpo.scale_rewards)
    if method == "rloo":
        return PolicyGradient("rloo", "rloo", PolicyLoss(cfg.rloo.loss_type).value,
                              cfg.online.kl_coef, max_tokens)
    raise ValueError(f"method={method!r} has no online algorithm (oreal, grpo, rloo)")
