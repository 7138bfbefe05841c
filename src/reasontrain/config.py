"""Dataclass schemas for every config group, registered in Hydra's ConfigStore.

The root schema is typed all the way down, so a misspelled key or a wrong type fails while Hydra composes the
config, before any model or dataset is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class ConfigError(ValueError):
    """A config value that types alone cannot rule out (raised by the methods' `validate` before anything loads)."""


# Every closed choice is a `str` enum: a bad value fails while Hydra composes the config, naming the key, and a
# member compares equal to its string (`cfg.method == "sft"`), so code may compare with either.


class Method(str, Enum):
    sft = "sft"  # supervised fine-tuning; Masked Thought is its `masked_thought` option
    dpo = "dpo"  # DPO on sampled correct/incorrect pairs of the starting policy
    rise = "rise"  # DPO on sampled pairs plus self-edited step pairs with injected subtle errors
    cdpo = "cdpo"  # token-level DPO, rejected tokens weighted by contrastive estimation (critical tokens)
    oreal = "oreal"  # online outcome-reward RL with a token-level reward model
    grpo = "grpo"  # online RL baseline: group-normalized advantages, token-level policy-gradient loss
    rloo = "rloo"  # online RL baseline: leave-one-out advantages (REINFORCE with a per-group baseline)
    rft = "rft"  # rejection-sampling SFT on the starting policy's correct samples
    eval = "eval"  # evaluate a checkpoint, no training


class LrScheduler(str, Enum):
    """Learning-rate schedules (transformers' `get_scheduler` names), after `warmup`; `min_lr` > 0 ends cosine there."""

    cosine = "cosine"
    linear = "linear"
    constant = "constant"
    constant_with_warmup = "constant_with_warmup"


class Dtype(str, Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class PromptFormat(str, Enum):
    chat = "chat"  # the tokenizer's chat template
    alpaca = "alpaca"  # Masked Thought's Alpaca template; answers end in `#### N`
    qa = "qa"  # `Question: ...\nAnswer: ` (cDPO's GSM8K few-shot style)
    minerva = "minerva"  # `Problem: ...\n\nSolution:\n` (cDPO's MATH few-shot style)


class Extractor(str, Enum):
    boxed = "boxed"
    hashes = "hashes"
    answer_is = "answer_is"
    last_number = "last_number"


class LossMode(str, Enum):
    sequence = "sequence"  # DPO on sequence log-ratios (token weights inside the sums)
    per_position = "per_position"  # cDPO's aligned per-position variant


class Editor(str, Enum):
    rule = "rule"  # programmatic error injection
    self = "self"  # the policy edits its own step (RISE's prompt)


class ErrorType(str, Enum):
    change_value = "change_value"
    change_multi_value = "change_multi_value"
    wrong_sub = "wrong_sub"
    del_term = "del_term"
    change_symbol = "change_symbol"
    swap = "swap"


class TokenWeights(str, Enum):
    contrastive = "contrastive"  # rejected weights 1 - p_CE from the positive/negative models (cDPO)
    none = "none"  # weights 1 on the same pairs: plain DPO on cDPO's pairs, the ablation baseline


class Advantage(str, Enum):
    rloo = "rloo"  # r_i - mean of the other K-1 rewards
    grpo = "grpo"  # (r_i - group mean) / (group std + eps)


class OrealSelect(str, Enum):
    pairs = "pairs"  # one correct + one incorrect response per mixed prompt
    all = "all"  # every one of the B x K responses


class PolicyLoss(str, Enum):
    """How GRPO and RLOO normalize their token-level policy-gradient loss."""

    dapo = "dapo"  # token-level: sum over every response token of the batch / their count (DAPO)
    dr_grpo = "dr_grpo"  # sum / (sequences x max_new_tokens), no length bias (Dr. GRPO)
    grpo = "grpo"  # per-sequence token mean, then mean over sequences (the original GRPO)


class Reference(str, Enum):
    copy = "copy"  # a frozen copy of the starting policy
    lora = "lora"  # the policy with its LoRA adapter disabled (needs model.lora.enabled)
    cached = "cached"  # per-token log-probs precomputed once and cached on disk


class Noise(str, Enum):
    mask_token = "mask_token"
    random_token = "random_token"


class GenerationBackend(str, Enum):
    hf = "hf"
    vllm = "vllm"


class Tracker(str, Enum):
    none = "none"
    wandb = "wandb"


class OnBadGold(str, Enum):
    skip = "skip"  # leave the problem out, counted per reason in metrics.json and the printed table
    error = "error"  # stop with the file, record and field


class OnLongPrompt(str, Enum):
    keep = "keep"  # evaluate it anyway (counted)
    skip = "skip"  # leave it out of the evaluation (counted)


class LongExamples(str, Enum):
    truncate = "truncate"  # train on the first max_length tokens (counted)
    skip = "skip"  # leave the example out (counted)


class DistributedKind(str, Enum):
    none = "none"
    ddp = "ddp"
    deepspeed = "deepspeed"


@dataclass
class TinyModelConfig:
    """Shape of the embedded character-level Llama (used when `model.path` is null)."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    max_position_embeddings: int = 512


@dataclass
class LoraConfig:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])


@dataclass
class ModelConfig:
    name: str = "tiny"
    # A local folder or a Hub id; null builds the embedded tiny model from `tiny`.
    path: Optional[str] = None
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    dtype: Dtype = Dtype.float32
    trust_remote_code: bool = False
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class ArithSplitConfig:
    """Difficulty of one split of the arithmetic task (see `reasontrain.data.arith.ArithDifficulty`)."""

    size: int = 1000
    min_steps: int = 2
    max_steps: int = 4
    # Small numbers: the tiny model learns the lookups and the addition table within its few-minute budget
    # (values up to 99 left it at 5-10% after the same 1,000 steps).
    max_start: int = 9
    max_operand: int = 5
    max_factor: int = 3
    max_value: int = 20


@dataclass
class TeacherConfig:
    """The imperfect teacher that writes the train split's solutions (see `reasontrain.data.teacher`): off by
    default (clean solutions); `recipe=sft/tiny-instruct` turns it on to build the shipped tiny-instruct."""

    enabled: bool = False
    # The subtle computational error: an addition crossing ten (a < 10 <= a + b) written one too low.
    carry_rate: float = 0.6
    # The structural error: on problems with >= stop_min_steps operations, stop after stop_after steps.
    stop_rate: float = 0.6
    stop_min_steps: int = 4
    stop_after: int = 3
    # Diffuse slips: any other step's result off by 1..slip_max.
    slip_rate: float = 0.1
    slip_max: int = 2
    seed: int = 0


@dataclass
class ArithConfig:
    seed: int = 1234
    # Seed of the train split only (null: `seed`): fresh training problems with the same held-out splits, as the
    # tiny-instruct plateau check uses.
    train_seed: Optional[int] = None
    train: ArithSplitConfig = field(default_factory=lambda: ArithSplitConfig(size=16000))
    test: ArithSplitConfig = field(default_factory=lambda: ArithSplitConfig(size=300))
    # The split every tuning choice is scored on; test and hard are only reported.
    validation: ArithSplitConfig = field(default_factory=lambda: ArithSplitConfig(size=300))
    # Held out by length: one operation more than any training problem has.
    hard: ArithSplitConfig = field(default_factory=lambda: ArithSplitConfig(size=300, min_steps=5, max_steps=5))
    # `tiny-base`'s corpus: documents of number facts, running computations and stories (never the solution
    # format), told from problems outside every evaluation split.
    pretrain: ArithSplitConfig = field(default_factory=lambda: ArithSplitConfig(size=20000))
    # Who writes the train split's solutions: clean by default, an imperfect teacher when enabled.
    teacher: TeacherConfig = field(default_factory=TeacherConfig)


@dataclass
class FileSplitConfig:
    """A benchmark split: a local JSONL/JSON/Parquet file, or a Hub dataset id (with `hub_config`/`hub_split`)."""

    path: str = MISSING
    hub_config: Optional[str] = None
    hub_split: Optional[str] = None  # default: the split's own name
    question_field: str = "question"
    answer_field: str = "answer"  # the gold final answer, or a solution it can be extracted from
    solution_field: Optional[str] = None  # the worked solution used as the SFT target
    # Carried into every record and used for per-group breakdowns in evaluation (e.g. subject, level).
    meta_fields: list[str] = field(default_factory=list)
    # Keep only the first record of each question (Math-Step-DPO-10K has 10,795 rows for 8,888 questions).
    dedupe: bool = False


@dataclass
class GradingConfig:
    """How answers of this benchmark are graded (see `reasontrain.grading.GradeOptions`)."""

    extractors: list[Extractor] = field(default_factory=lambda: list(Extractor))
    final_markers: list[str] = field(default_factory=list)
    rel_tol: float = 1e-4
    percent_scaling: bool = False
    timeout: float = 5.0
    truncated_is_wrong: bool = False


@dataclass
class DataConfig:
    name: str = "arith"
    arith: ArithConfig = field(default_factory=ArithConfig)
    # For file-based benchmarks: split name -> file spec.
    files: dict[str, FileSplitConfig] = field(default_factory=dict)
    train_split: str = "train"
    eval_splits: list[str] = field(default_factory=lambda: ["test", "hard"])
    prompt_format: PromptFormat = PromptFormat.chat
    system_prompt: Optional[str] = None
    instruction: str = ""  # appended to the question, e.g. a \boxed{} instruction
    prefill: str = ""  # the start of the answer, written into the prompt (e.g. "Let's think step by step.\nStep 1: ")
    num_shots: int = 0  # solved training examples prepended to every evaluation prompt (sampling: sample.num_shots)
    stop: list[str] = field(default_factory=list)  # the format's own stop strings, added to generation.stop
    max_train_samples: Optional[int] = None
    max_eval_samples: Optional[int] = None
    max_prompt_length: int = 256
    # A record whose gold answer is null, empty or unreadable cannot be graded.
    on_bad_gold: OnBadGold = OnBadGold.skip
    # Evaluation prompts longer than max_prompt_length tokens.
    on_long_prompt: OnLongPrompt = OnLongPrompt.keep
    grading: GradingConfig = field(default_factory=GradingConfig)


@dataclass
class OptimizerConfig:
    """AdamW and its schedule: the one block every trained model uses (`train`, `start.train`, `cdpo.sft_train`,
    `online.policy`, `oreal.rm`)."""

    lr: float = 1e-5
    min_lr: float = 0.0  # where cosine ends (0: at zero)
    lr_scheduler: LrScheduler = LrScheduler.cosine
    warmup: float = 0.03  # < 1: a share of the optimizer steps; >= 1: a number of steps
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # gradient clipping, per model


@dataclass
class TrainConfig(OptimizerConfig):
    """An offline training run (SFT or preference): its optimizer block, batch sizes, length and checkpointing."""

    epochs: float = 1.0
    max_steps: int = -1
    # Global: pairs/examples per optimizer step over all processes. Per device: what fits in memory (a performance
    # knob: where micro x processes does not divide the global batch, the largest micro-batch that does is used).
    # Gradient accumulation is derived from the two and the world size.
    global_batch_size: int = 64
    micro_batch_size: int = 8
    max_length: int = 512
    bf16: bool = False
    gradient_checkpointing: bool = False
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int = 2
    dataloader_num_workers: int = 0
    # SFT only: pack examples into padding-free rows of max_length tokens (TRL's best-fit decreasing packing).
    # Each example keeps its own positions and attention, so the loss per token is the unpacked one.
    packing: bool = False
    # Training examples (prompt + target, or prompt + either response of a pair) longer than max_length tokens.
    long_examples: LongExamples = LongExamples.truncate


@dataclass
class GenerationConfig:
    backend: GenerationBackend = GenerationBackend.hf
    batch_size: int = 64  # prompts per generate() call on each process
    max_new_tokens: int = 512
    stop: list[str] = field(default_factory=list)
    # vLLM only
    gpu_memory_utilization: float = 0.85
    tensor_parallel_size: int = 1


@dataclass
class EvalConfig:
    splits: Optional[list[str]] = None  # null: `data.eval_splits`
    greedy: bool = True  # greedy pass@1
    n_samples: int = 0  # >0 adds pass@k and maj@k from n sampled completions per problem
    k: list[int] = field(default_factory=lambda: [1, 4])
    temperature: float = 0.8
    top_p: float = 0.95
    before: bool = True  # also evaluate the starting model, for the before/after table
    prefill: Optional[str] = None  # null: data.prefill; "" evaluates without the prefill sampling uses (RISE)
    # Record fields to break greedy pass@1 down by, where the records have them (MATH: subject/type, level).
    breakdown: list[str] = field(default_factory=lambda: ["subject", "type", "level", "num_steps"])


@dataclass
class MaskedThoughtConfig:
    """Input noise on response tokens (Masked Thought). `max_rate: 0` is plain SFT."""

    max_rate: float = 0.0
    ramp_fraction: float = 0.66
    noise: Noise = Noise.mask_token
    mask_token: str = "<mask>"


@dataclass
class StartConfig:
    """How the starting policy of a preference/RL recipe is made: as given, or first SFT-trained (tiny model)."""

    sft: bool = False
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class SampleConfig:
    """Self-sampling of the starting policy on the training questions."""

    n: int = 5  # samples per question (K)
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: Optional[int] = None  # null: generation.max_new_tokens
    max_questions: Optional[int] = None
    # Solved training examples in the prompt the policy samples from (cDPO samples its base models 8-/4-shot).
    # Only generation sees them: the rows keep the zero-shot prompt that pairs and SFT train on.
    num_shots: int = 0


@dataclass
class PreferenceConfig:
    beta: float = 0.1
    loss_mode: LossMode = LossMode.sequence
    nll_weight: float = 0.0
    label_smoothing: float = 0.0
    reference: Reference = Reference.cached
    append_eos: bool = True
    pairs_per_question: int = 1
    # Responses containing any of these are never used as the chosen side (RISE's self-correction blacklist).
    chosen_blacklist: list[str] = field(default_factory=list)


@dataclass
class RiseConfig:
    """RISE's error-injected step pairs (ALGORITHMS.md section 1)."""

    editor: Editor = Editor.rule
    error_types: list[ErrorType] = field(default_factory=lambda: list(ErrorType))
    edits_per_question: int = 1  # N: 1 for Qwen2-7B, 3 for Llama-3.1-8B in the paper
    use_full_pairs: bool = True
    # Levenshtein filter: keep edits within this many characters and this share of the edited span.
    max_edit_chars: int = 20
    max_edit_ratio: float = 0.5
    edit_blacklist: list[str] = field(default_factory=list)  # extra words that mark a self-correcting edit
    # > 1 up-weights the tokens where chosen and rejected differ (an extension beyond the paper).
    edit_token_weight: float = 1.0


@dataclass
class RebalanceConfig:
    """OREAL's difficulty rebalancing (ALGORITHMS.md section 3.2): measure the starting policy's pass rate on the
    prompt pool, then repeat each prompt by its bucket (`repeats[i]` for pass rates in [edges[i-1], edges[i]))."""

    enabled: bool = True
    samples: int = 8  # samples per prompt to estimate the pass rate
    temperature: float = 1.0
    top_p: float = 0.9
    max_prompts: Optional[int] = None  # the pool: the first N training questions (null: all)
    edges: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.6, 0.8])
    repeats: list[int] = field(default_factory=lambda: [6, 4, 4, 2, 0])  # 0 drops the bucket (p >= 0.8)


def _policy_optimizer() -> OptimizerConfig:
    # OREAL-7B's policy: lr 5e-7 cosine to 1e-7 after 10 warmup steps, weight decay 0.01, clipping 1.0.
    return OptimizerConfig(lr=5.0e-7, min_lr=1.0e-7, warmup=10, weight_decay=0.01, max_grad_norm=1.0)


def _rm_optimizer() -> OptimizerConfig:
    # OREAL-7B's token reward model: lr 2e-6 cosine to 4e-7.
    return OptimizerConfig(lr=2.0e-6, min_lr=4.0e-7, warmup=10, weight_decay=0.01, max_grad_norm=1.0)


@dataclass
class OnlineConfig:
    """The online RL loop every online method runs (OREAL, GRPO, RLOO): rollout -> grade -> advantages -> select
    -> auxiliary models -> policy -> log -> checkpoint. `method` chooses what each step computes."""

    samples_per_prompt: int = 16  # K
    prompts_per_step: int = 64  # B, global over all processes
    temperature: float = 1.0
    top_p: float = 0.9
    max_new_tokens: Optional[int] = None  # null: generation.max_new_tokens
    steps: int = 90
    policy: OptimizerConfig = field(default_factory=_policy_optimizer)  # warmup counts the policy's own updates
    kl_coef: float = 0.01  # k3 KL to the initial policy (0: no reference model is loaded)
    save_every: int = 10  # steps between checkpoints (0: only the last step)
    save_total_limit: int = 2
    # null: continue from this stage's own last checkpoint if there is one; a path: a checkpoint folder
    # (step-N) or a checkpoints folder to continue from; it must exist and hold a checkpoint.
    resume: Optional[str] = None
    rebalance: RebalanceConfig = field(default_factory=RebalanceConfig)


@dataclass
class OrealConfig:
    """What OREAL adds to the online loop (ALGORITHMS.md section 3): the token reward model, its warm-up, the
    reshaped negative loss and the pair selection."""

    reward_shaping: Advantage = Advantage.rloo  # advantages on all K samples, before selection
    positive_loss_factor: float = 1.0
    negative_loss_factor: float = 0.5
    # false: the ablation: no reward model, token weights 1, all B x K trajectories kept, no actor freeze.
    token_rm: bool = True
    # Which responses train the policy; null: the paper's, pairs with the token RM and all without it. The
    # ablation differs from OREAL in both the RM and the selection; `token_rm=false select=pairs` separates them.
    select: Optional[OrealSelect] = None
    rm: OptimizerConfig = field(default_factory=_rm_optimizer)
    actor_freeze_steps: int = 10  # the policy does not move for the first N steps (only the RM trains)


@dataclass
class GrpoConfig:
    """GRPO (DeepSeekMath), with the DAPO / Dr. GRPO token-level loss: on-policy, one update per rollout."""

    loss_type: PolicyLoss = PolicyLoss.dapo
    scale_rewards: bool = True  # divide by the group's std (false: Dr. GRPO's mean-centred advantages)


@dataclass
class RlooConfig:
    """RLOO (Ahmadian et al. 2024): REINFORCE with each sample's baseline the mean reward of the other K-1."""

    loss_type: PolicyLoss = PolicyLoss.dapo


def _cdpo_sft_lora() -> LoraConfig:
    # §2.2: the positive/negative models are LoRA r8 (alpha 16, dropout 0.1) on the MLP projections only.
    return LoraConfig(enabled=True, r=8, alpha=16, dropout=0.1, target_modules=["gate_proj", "up_proj", "down_proj"])


def _cdpo_sft_train() -> TrainConfig:
    # §2.2: lr 3e-4, cosine, warmup 100 steps, 1 epoch, per-device batch 6, max length 1024.
    return TrainConfig(lr=3e-4, epochs=1, lr_scheduler=LrScheduler.cosine, warmup=100, global_batch_size=6,
                       micro_batch_size=6, max_length=1024, logging_steps=10, save_steps=500)


@dataclass
class CdpoConfig:
    """cDPO (ALGORITHMS.md section 2): data selection, positive/negative models, contrastive token weights."""

    token_weights: TokenWeights = TokenWeights.contrastive
    gamma: float = 1.0  # p_CE = softmax((1+gamma) z+ - gamma z-)
    incorrect_top_p: float = 0.5  # negative SFT data: wrong answers by frequency up to this share of the wrong mass
    weight_chosen: bool = False  # chosen weights p_CE(chosen token) instead of 1 (the official only_neg=False)
    sft_train: TrainConfig = field(default_factory=_cdpo_sft_train)
    sft_lora: LoraConfig = field(default_factory=_cdpo_sft_lora)
    score_batch_size: int = 8  # pairs per forward pass when scoring
    report_examples: int = 4  # rejected responses shown with their critical tokens in report.md and the picture
    report_top_tokens: int = 3  # highest-weighted tokens marked per response


@dataclass
class RftConfig:
    """Rejection-sampling SFT: SFT on the starting policy's own correct samples."""

    max_per_question: Optional[int] = None  # distinct correct samples kept per question (null: all)
    dedup: bool = True  # drop repeated identical responses of a question


@dataclass
class DistributedConfig:
    name: str = "none"
    kind: DistributedKind = DistributedKind.none
    # DeepSpeed JSON, relative to configs/distributed/ or absolute.
    deepspeed_config: Optional[str] = None
    # Longest wait of any collective (barrier, gather, all-reduce) before the job fails instead of hanging.
    timeout_minutes: float = 30.0


@dataclass
class TrackingConfig:
    backend: Tracker = Tracker.none
    project: str = "reasontrain"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: list[str] = field(default_factory=list)


@dataclass
class RootConfig:
    recipe: str = MISSING
    variant: str = "tiny-arith"
    method: Method = Method.sft
    seed: int = 0
    run_name: str = "seed${seed}"
    output_root: str = "outputs"
    # Where stage folders live (null: the run folder). Jobs of a sweep that share it reuse the stages they have in
    # common (data, start, sampling, grading, pairs): `reasontrain -m recipe=dpo train.lr=... stage_dir=outputs/s`.
    stage_dir: Optional[str] = None
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    masked_thought: MaskedThoughtConfig = field(default_factory=MaskedThoughtConfig)
    start: StartConfig = field(default_factory=StartConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)
    rise: RiseConfig = field(default_factory=RiseConfig)
    cdpo: CdpoConfig = field(default_factory=CdpoConfig)
    rft: RftConfig = field(default_factory=RftConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    oreal: OrealConfig = field(default_factory=OrealConfig)
    grpo: GrpoConfig = field(default_factory=GrpoConfig)
    rloo: RlooConfig = field(default_factory=RlooConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


ASSETS_DIR = Path(__file__).resolve().parent / "assets"


def asset_path(name: str) -> str:
    """The folder of a model shipped with the package (`${asset:tiny-instruct}` in a model config)."""
    return str(ASSETS_DIR / name)


def register_configs() -> None:
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("asset", asset_path, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=RootConfig)


def to_plain(cfg: Any) -> dict:
    """The resolved config as plain Python data (enums as strings), for hashing and logging."""
    import dataclasses

    from omegaconf import OmegaConf

    if dataclasses.is_dataclass(cfg):
        cfg = OmegaConf.structured(cfg)
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
