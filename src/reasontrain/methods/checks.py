"""Start-up checks that several methods share; each method's `validate` picks the ones it needs.

They run before any model or data loads, so a bad value fails within seconds as one line naming the key. Values
that a type rules out (enums, numbers) never get here: Hydra rejects them while composing the config.
"""

from __future__ import annotations

from pathlib import Path

from reasontrain.config import ConfigError, GenerationBackend, LrScheduler, Reference


def check_common(cfg) -> None:
    """What every method reads: the generation backend, the evaluation settings, the data files, the model."""
    if cfg.generation.backend == GenerationBackend.vllm:
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise ConfigError("generation=vllm needs vLLM, which is not installed: pip install -e '.[vllm]' "
                              "(GPU machines only)")
    if cfg.eval.n_samples and any(k > cfg.eval.n_samples for k in cfg.eval.k):
        raise ConfigError(f"eval.k={list(cfg.eval.k)} asks for more samples than eval.n_samples={cfg.eval.n_samples}")
    teacher = cfg.data.arith.teacher
    if teacher.enabled:
        for key in ("carry_rate", "stop_rate", "slip_rate"):
            if not 0 <= getattr(teacher, key) <= 1:
                raise ConfigError(f"data.arith.teacher.{key}={getattr(teacher, key)} must be a probability in [0, 1]")
        if teacher.slip_max < 1 or teacher.stop_after < 1 or teacher.stop_min_steps <= teacher.stop_after:
            raise ConfigError("data.arith.teacher needs slip_max >= 1 and stop_min_steps > stop_after >= 1 "
                              f"(got {teacher.slip_max}, {teacher.stop_min_steps}, {teacher.stop_after})")
    if cfg.data.name != "arith":
        from reasontrain.data.tasks import is_local_path

        for split, spec in cfg.data.files.items():
            if is_local_path(spec.path) and not Path(spec.path).exists():
                raise ConfigError(f"data.files.{split}.path does not exist: {spec.path}")
    if cfg.model.path is not None:
        from reasontrain.models.loading import looks_local

        if looks_local(cfg.model.path) and not Path(cfg.model.path).expanduser().exists():
            raise ConfigError(f"model.path does not exist: {cfg.model.path}")


def check_optimizer(opt, key: str) -> None:
    if opt.lr <= 0:
        raise ConfigError(f"{key}.lr={opt.lr} must be > 0")
    if opt.min_lr < 0 or opt.min_lr > opt.lr:
        raise ConfigError(f"{key}.min_lr={opt.min_lr} must be within [0, {key}.lr={opt.lr}]")
    if opt.min_lr > 0 and opt.lr_scheduler != LrScheduler.cosine:
        raise ConfigError(f"{key}.min_lr={opt.min_lr} is where cosine ends; {key}.lr_scheduler="
                          f"{LrScheduler(opt.lr_scheduler).value} has no end value (set min_lr: 0)")
    if opt.warmup < 0:
        raise ConfigError(f"{key}.warmup={opt.warmup} must be >= 0 (a share of the steps below 1, a count from 1)")


def check_training(train_cfg, key: str = "train") -> None:
    """An offline training run (SFT, preference): its optimizer, a positive length, a batch the processes share."""
    from reasontrain.distributed import world_size
    from reasontrain.trainers.args import BatchSizeError, batch_layout

    check_optimizer(train_cfg, key)
    if train_cfg.max_steps == 0 or train_cfg.epochs <= 0:
        raise ConfigError(f"{key}.max_steps={train_cfg.max_steps}, {key}.epochs={train_cfg.epochs}: this would save "
                          "the untrained model as final/; set max_steps > 0 (or -1 to train by epochs) and epochs > 0")
    try:
        batch_layout(train_cfg.global_batch_size, train_cfg.micro_batch_size, world_size())
    except BatchSizeError as e:
        raise ConfigError(str(e).replace("train.", f"{key}.")) from None


def check_start(cfg) -> None:
    """The starting policy of a preference or RL method: its own SFT run when `start.sft`."""
    if cfg.start.sft:
        check_training(cfg.start.train, "start.train")


def check_sampling(cfg) -> None:
    s = cfg.sample
    if s.n < 1:
        raise ConfigError(f"sample.n={s.n} must be at least 1")
    if s.temperature < 0 or not 0 < s.top_p <= 1:
        raise ConfigError(f"sample.temperature={s.temperature} must be >= 0 and sample.top_p={s.top_p} in (0, 1]")


def check_preference(cfg) -> None:
    """What every preference method (DPO, RISE, cDPO) needs: start, sampling, training and the DPO loss."""
    check_start(cfg)
    check_sampling(cfg)
    check_training(cfg.train)
    p = cfg.preference
    if p.beta <= 0:
        raise ConfigError(f"preference.beta={p.beta} must be > 0")
    if p.pairs_per_question < 1:
        raise ConfigError(f"preference.pairs_per_question={p.pairs_per_question} must be at least 1")
    if not 0.0 <= p.label_smoothing < 0.5:
        raise ConfigError(f"preference.label_smoothing={p.label_smoothing} must be in [0, 0.5)")
    if p.reference == Reference.lora and not cfg.model.lora.enabled:
        raise ConfigError("preference.reference=lora uses the policy with its adapter disabled: it needs "
                          "model.lora.enabled=true")


def check_online(cfg) -> None:
    """What every online method (OREAL, GRPO, RLOO) needs: its start, the loop's sizes, the policy's optimizer,
    generation from the policy being trained, the rebalancing buckets, an existing resume checkpoint."""
    o = cfg.online
    check_start(cfg)
    check_optimizer(o.policy, "online.policy")
    if o.samples_per_prompt < 2:
        raise ConfigError(f"online.samples_per_prompt={o.samples_per_prompt}: group advantages need at least 2")
    if o.prompts_per_step < 1 or o.steps < 1:
        raise ConfigError(f"online.prompts_per_step={o.prompts_per_step} and online.steps={o.steps} must be at "
                          "least 1")
    if o.kl_coef < 0 or o.temperature <= 0 or not 0 < o.top_p <= 1:
        raise ConfigError(f"online.kl_coef={o.kl_coef} must be >= 0, online.temperature={o.temperature} > 0 and "
                          f"online.top_p={o.top_p} in (0, 1]")
    if cfg.train.micro_batch_size < 1:
        raise ConfigError(f"train.micro_batch_size={cfg.train.micro_batch_size} must be at least 1")
    if cfg.generation.backend != GenerationBackend.hf:
        raise ConfigError(f"recipe={cfg.recipe} samples with the policy being trained, through generation=hf; "
                          "vLLM would need its weights synced every step, which is not implemented")
    r = o.rebalance
    if len(r.repeats) != len(r.edges) + 1:
        raise ConfigError(f"online.rebalance.repeats has {len(r.repeats)} values for {len(r.edges)} edges "
                          f"(needs one per bucket: {len(r.edges) + 1})")
    if list(r.edges) != sorted(r.edges) or any(not 0 < e <= 1 for e in r.edges):
        raise ConfigError(f"online.rebalance.edges={list(r.edges)} must be increasing within (0, 1]")
    if any(n < 0 for n in r.repeats) or not any(r.repeats):
        raise ConfigError(f"online.rebalance.repeats={list(r.repeats)} must be >= 0 and not all 0")
    if o.resume:
        from reasontrain.trainers.checkpoint import find_step

        find_step(o.resume)
