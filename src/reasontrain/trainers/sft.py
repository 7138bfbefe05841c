"""The shared SFT trainer: TRL's SFTTrainer with completion-only loss, plus Masked Thought input noise.

Masked Thought is an option, not a second trainer: each training step corrupts response tokens of the input at
the scheduled rate, while the labels keep the original tokens, then the loss is TRL's own.
"""

from __future__ import annotations

import torch
from trl import SFTTrainer

from reasontrain.trainers.noise import mask_rate, mask_response_tokens


class ReasonSFTTrainer(SFTTrainer):
    def __init__(self, *args, masked_thought=None, mask_token_id: int | None = None, noise_seed: int = 0,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.mt = masked_thought
        self.mask_token_id = mask_token_id
        self.noise_seed = noise_seed
        self._noise_step, self._micro_step = -1, 0  # micro-batches seen in the current optimizer step
        special = set(self.processing_class.all_special_ids)
        vocab = self.model.get_input_embeddings().weight.shape[0]
        self.replacement_ids = torch.tensor([i for i in range(min(vocab, len(self.processing_class)))
                                             if i not in special])

    @property
    def noise_enabled(self) -> bool:
        return self.mt is not None and self.mt.max_rate > 0

    def current_mask_rate(self) -> float:
        if not self.noise_enabled:
            return 0.0
        return mask_rate(self.state.global_step, self.state.max_steps, self.mt.max_rate, self.mt.ramp_fraction)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.noise_enabled and model.training:
            rate = self.current_mask_rate()
            # Seeded by the step and the micro-batch's place in the global batch (micro-step x world + rank, the
            # order in which the sampler deals micro-batches to ranks): reruns, resumes and any number of
            # processes with the same global batch draw the same noise for the same examples.
            if self.state.global_step != self._noise_step:
                self._noise_step, self._micro_step = self.state.global_step, 0
            index = self._micro_step * self.args.world_size + self.args.process_index
            gen = torch.Generator().manual_seed(hash((self.noise_seed, self.state.global_step, index)) % (2**63))
            self._micro_step += 1
            noisy = mask_response_tokens(inputs["input_ids"].cpu(), inputs["labels"].cpu(), rate,
                                         noise=getattr(self.mt.noise, "value", self.mt.noise),
                                         mask_id=self.mask_token_id, replacement_ids=self.replacement_ids,
                                         generator=gen)
            inputs = {**inputs, "input_ids": noisy.to(inputs["input_ids"].device)}
            self._metrics["train"]["mask_rate"].append(rate)
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)
