"""The shared SFT trainer: TRL's SFTTrainer with completion-only loss, plus Masked Thought input noise.

Masked Thought is an option, not a second trainer: each training step corrupts response tokens of the input at
the scheduled rate, while the labels keep the original tokens, then the loss is TRL's own: the negative
log-likelihood summed over the completion tokens, divided by their count in the global batch.

The training loss skips what TRL computes besides it (`scripts/bench_sft.py` measures the difference):
- the per-step entropy, token accuracy and token count metrics, whose gathers and `.item()` calls stall the device
  every micro-batch (nothing in this project reads them);
- TRL's chunked LM head where its Triton kernels do not run (CPU): its torch fallback costs about 5x the plain
  head on the tiny model. There the log-likelihood comes from the model's logits, the same sum in float32.
Anything unusual (evaluation, DFT loss, label smoothing, a custom loss function, MoE aux loss, sequence parallelism)
goes through TRL's own `compute_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from trl import SFTTrainer

from reasontrain.config import Noise
from reasontrain.trainers.noise import mask_rate, mask_response_tokens


def fused_head_pays(device: torch.device) -> bool:
    """Whether TRL's chunked LM head (no full logits) runs its Triton kernels on `device`."""
    from transformers.utils import is_triton_available

    return device.type in ("cuda", "xpu") and is_triton_available()


def completion_nll_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over positions of -log p(next label), labels -100 ignored, in float32 (the causal shift included).

    The labels are shifted rather than the logits, so the (batch, length, vocab) logits are not copied.
    """
    shifted = F.pad(labels, (0, 1), value=-100)[..., 1:]
    return F.cross_entropy(logits.flatten(0, -2).float(), shifted.flatten(), ignore_index=-100, reduction="sum")


class ReasonSFTTrainer(SFTTrainer):
    def __init__(self, *args, masked_thought=None, mask_token_id: int | None = None, noise_seed: int = 0,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.mt = masked_thought
        self.mask_token_id = mask_token_id
        self.noise_seed = noise_seed
        self._noise_step, self._micro_step = -1, 0  # micro-batches seen in the current optimizer step
        self._replacement_ids = None
        pc = self.accelerator.parallelism_config
        self._plain_loss = (self.args.loss_type == "nll" and self.label_smoother is None
                            and self.compute_loss_func is None and not self.aux_loss_enabled
                            and not (pc is not None and pc.sp_enabled))

    @property
    def noise_enabled(self) -> bool:
        return self.mt is not None and self.mt.max_rate > 0

    @property
    def replacement_ids(self) -> torch.Tensor:
        """Token ids random-token noise draws from: the vocabulary less the special tokens (built once, on use)."""
        if self._replacement_ids is None:
            special = set(self.processing_class.all_special_ids)
            vocab = self.model.get_input_embeddings().weight.shape[0]
            self._replacement_ids = torch.tensor([i for i in range(min(vocab, len(self.processing_class)))
                                                  if i not in special])
        return self._replacement_ids

    def current_mask_rate(self) -> float:
        if not self.noise_enabled:
            return 0.0
        return mask_rate(self.state.global_step, self.state.max_steps, self.mt.max_rate, self.mt.ramp_fraction)

    def _add_noise(self, inputs: dict) -> dict:
        rate = self.current_mask_rate()
        # Seeded by the step and the micro-batch's place in the global batch (micro-step x world + rank, the
        # order in which the sampler deals micro-batches to ranks): reruns, resumes and any number of
        # processes with the same global batch draw the same noise for the same examples.
        if self.state.global_step != self._noise_step:
            self._noise_step, self._micro_step = self.state.global_step, 0
        index = self._micro_step * self.args.world_size + self.args.process_index
        gen = torch.Generator().manual_seed(hash((self.noise_seed, self.state.global_step, index)) % (2**63))
        self._micro_step += 1
        noise = Noise(self.mt.noise).value
        noisy = mask_response_tokens(inputs["input_ids"].cpu(), inputs["labels"].cpu(), rate, noise=noise,
                                     mask_id=self.mask_token_id,
                                     replacement_ids=self.replacement_ids if noise == "random_token" else None,
                                     generator=gen)
        self._metrics["train"]["mask_rate"].append(rate)
        return {**inputs, "input_ids": noisy.to(inputs["input_ids"].device)}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.noise_enabled and model.training:
            inputs = self._add_noise(inputs)
        if return_outputs or not model.training or not self._plain_loss:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        labels = inputs["labels"]
        if fused_head_pays(labels.device):
            out = model(**inputs, use_cache=False, fused_lm_head=True)
            nll, local_tokens = -out.log_probs.sum(), out.label_mask.sum()
        else:
            logits = model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False).logits
            nll, local_tokens = completion_nll_sum(logits, labels), (labels[..., 1:] != -100).sum()
        # As TRL: divide by the completion tokens of the global batch (all micro-batches, all ranks), then undo
        # DDP's average over ranks.
        num_tokens = local_tokens if num_items_in_batch is None else num_items_in_batch
        loss = nll / torch.as_tensor(num_tokens).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        return loss
