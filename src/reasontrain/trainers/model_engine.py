"""A model that the online loop trains by hand: its optimizer, lr schedule and gradient clipping, either as plain
PyTorch (one process, or several with a summed gradient all-reduce) or as a DeepSpeed engine (ZeRO-2/3).

The online loop runs several models with their own optimizers (OREAL: policy and token reward model) plus a
frozen reference, which one `transformers.Trainer` cannot hold; each gets a `TrainedModel` instead. Losses fed to
`backward` are normalized by global counts (over ranks and micro-batches), so the per-rank gradients are summed,
never averaged: the DeepSpeed path undoes the engine's averaging by scaling the loss by the world size.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Callable

import torch

from reasontrain.distributed import device_for_rank, dist_info


def lr_schedule(opt, total_steps: int) -> Callable[[int], float]:
    """lr at optimizer step `step` (0-based) for an optimizer block (`OptimizerConfig`), from transformers'
    schedules (`args.lr_scheduler_of`, as the Trainer-based trainers): `warmup` steps (a share of `total_steps`
    below 1) of linear warmup, then the schedule. Evaluated on a probe optimizer, so it serves DeepSpeed's wrapped
    ones."""
    from transformers import get_scheduler

    from reasontrain.trainers.args import lr_scheduler_of

    warmup = int(math.ceil(opt.warmup * total_steps)) if opt.warmup < 1 else int(opt.warmup)
    name, extra = lr_scheduler_of(opt)
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=opt.lr)
    factor = get_scheduler(name, probe, num_warmup_steps=warmup, num_training_steps=total_steps,
                           scheduler_specific_kwargs=extra).lr_lambdas[0]
    return lambda step: opt.lr * factor(step)


def load_deepspeed_config(path: str, micro_batch: int, max_grad_norm: float, bf16: bool, hidden_size: int,
                          with_optimizer: bool = True) -> dict:
    """The DeepSpeed JSON with every "auto" filled for a hand-written loop (one engine step per call to `step`)."""
    cfg = json.loads(Path(path).read_text())
    world = dist_info()[1]
    cfg.update(train_micro_batch_size_per_gpu=micro_batch, gradient_accumulation_steps=1,
               train_batch_size=micro_batch * world, gradient_clipping=max_grad_norm if with_optimizer else 0.0)
    cfg["bf16"] = {"enabled": bool(bf16)}
    cfg["fp16"] = {"enabled": False}
    zero = cfg.setdefault("zero_optimization", {})
    auto = {"reduce_bucket_size": hidden_size * hidden_size, "stage3_prefetch_bucket_size": int(0.9 * hidden_size ** 2),
            "stage3_param_persistence_threshold": 10 * hidden_size}
    for key, value in auto.items():
        if zero.get(key) == "auto":
            zero[key] = value
    cfg["zero_allow_untested_optimizer"] = True
    if not with_optimizer:
        zero.pop("offload_optimizer", None)
        cfg.pop("optimizer", None)
    return cfg


def _hidden_size(module) -> int:
    config = getattr(module, "config", None) or getattr(getattr(module, "backbone", None), "config", None)
    return int(getattr(config, "hidden_size", 1024))


class TrainedModel:
    """`module` with AdamW, the schedule of its optimizer block (`OptimizerConfig`) over `total_steps`, and
    its own gradient clipping."""

    def __init__(self, module: torch.nn.Module, optim, *, total_steps: int, deepspeed_config: str | None = None,
                 micro_batch: int = 1, bf16: bool = False):
        lr, weight_decay, max_grad_norm = optim.lr, optim.weight_decay, optim.max_grad_norm
        self.schedule, self.total_steps = lr_schedule(optim, total_steps), total_steps
        self.max_grad_norm = max_grad_norm
        self.schedule_step = 0  # optimizer steps taken (the schedule's state)
        self.rank, self.world = dist_info()
        self.engine = None
        self.zero_stage = 0
        if deepspeed_config is not None:
            import deepspeed

            ds = load_deepspeed_config(deepspeed_config, micro_batch, max_grad_norm, bf16, _hidden_size(module))
            self.zero_stage = int(ds.get("zero_optimization", {}).get("stage", 0))
            offload = "offload_optimizer" in ds.get("zero_optimization", {})
            if offload:
                ds["optimizer"] = {"type": "AdamW", "params": {"lr": lr, "weight_decay": weight_decay}}
                optimizer = None
            else:
                optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr,
                                              weight_decay=weight_decay)
            self.engine, self.optimizer, _, _ = deepspeed.initialize(model=module, optimizer=optimizer, config=ds)
            self.module = self.engine.module
        else:
            self.module = module.to(device_for_rank())
            self.optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr,
                                               weight_decay=weight_decay)
        self.module.train()

    # -- training --------------------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return (self.engine or self.module)(*args, **kwargs)

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        """Accumulate the gradient of `loss` (already normalized by global counts); `last` ends the step."""
        if self.engine is not None:
            self.engine.set_gradient_accumulation_boundary(last)
            self.engine.backward(loss * self.world)
        else:
            loss.backward()

    def current_lr(self) -> float:
        return self.schedule(self.schedule_step)

    def step(self, update: bool = True) -> float | None:
        """Clip, take one optimizer step at the scheduled lr (if `update`), advance the schedule. Returns the
        gradient norm before clipping (None without an update)."""
        lr = self.current_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        norm = None
        if update:
            if self.engine is not None:
                self.engine.step()
                value = self.engine.get_global_grad_norm()
                norm = float(value) if value is not None else None
            else:
                params = [p for p in self.module.parameters() if p.requires_grad]
                if self.world > 1:
                    import torch.distributed as dist

                    for p in params:
                        if p.grad is None:
                            p.grad = torch.zeros_like(p)
                        dist.all_reduce(p.grad)  # summed: losses carry global normalizers
                norm = float(torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm))
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
        self.schedule_step += 1
        return norm

    # -- generation ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def for_generation(self):
        """The plain module with full weights on every rank (ZeRO-3 parameters gathered for the duration)."""
        if self.engine is None or self.zero_stage != 3:
            yield self.module
            return
        import deepspeed
        from trl.models.utils import add_hooks, remove_hooks

        with deepspeed.zero.GatheredParameters(list(self.module.parameters())):
            remove_hooks(self.engine)
            try:
                yield self.module
            finally:
                add_hooks(self.engine)

    @contextlib.contextmanager
    def full_weights(self):
        """Full parameters readable on every rank (for saving)."""
        if self.engine is None or self.zero_stage != 3:
            yield self.module
            return
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None):
            yield self.module

    # -- checkpoints -----------------------------------------------------------------------------------------
    def save_state(self, folder: Path, name: str) -> None:
        """Optimizer and schedule state into `folder` (weights are saved by the caller, in safetensors)."""
        folder = Path(folder)
        if self.engine is not None:
            self.engine.save_checkpoint(str(folder / f"{name}_deepspeed"), tag="state",
                                        client_state={"schedule_step": self.schedule_step})
            return
        if self.rank == 0:
            torch.save(self.optimizer.state_dict(), folder / f"{name}_optimizer.pt")
            (folder / f"{name}_schedule.json").write_text(json.dumps({"schedule_step": self.schedule_step}))

    def load_state(self, folder: Path, name: str) -> None:
        folder = Path(folder)
        if self.engine is not None:
            loaded, client = self.engine.load_checkpoint(str(folder / f"{name}_deepspeed"), tag="state")
            if loaded is None:
                raise FileNotFoundError(f"resume: {folder / (name + '_deepspeed')} holds no DeepSpeed state "
                                        f"for the {name} (was the checkpoint saved without DeepSpeed?)")
            self.schedule_step = int((client or {}).get("schedule_step", 0))
            return
        state = torch.load(folder / f"{name}_optimizer.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state)
        self.schedule_step = json.loads((folder / f"{name}_schedule.json").read_text())["schedule_step"]


def frozen_reference(module: torch.nn.Module, deepspeed_config: str | None = None, micro_batch: int = 1,
                     bf16: bool = False):
    """The frozen reference for the KL term: sharded by a ZeRO-3 inference engine, else a plain module."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    if deepspeed_config is not None:
        ds = load_deepspeed_config(deepspeed_config, micro_batch, 0.0, bf16, _hidden_size(module), with_optimizer=False)
        if int(ds.get("zero_optimization", {}).get("stage", 0)) == 3:
            import deepspeed

            engine, *_ = deepspeed.initialize(model=module, config=ds)
            engine.eval()
            return engine
    return module.to(device_for_rank())
