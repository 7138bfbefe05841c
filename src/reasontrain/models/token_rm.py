"""OREAL's token-level reward model: the policy's transformer with a fresh scalar head instead of `lm_head`.

It scores every position; the logit at position t belongs to the token predicted there (t+1), exactly like the
policy's log-probs, so one response mask serves both.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class TokenRewardModel(nn.Module):
    def __init__(self, backbone: nn.Module, hidden_size: int, seed: int = 0, init_std: float = 0.02):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(hidden_size, 1, bias=False)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=gen) * init_std)
        self.head.to(next(backbone.parameters()).dtype)

    @classmethod
    def from_policy(cls, path: str, dtype: str = "float32", trust_remote_code: bool = False,
                    seed: int = 0) -> "TokenRewardModel":
        """The transformer of the causal LM saved at `path` (its `lm_head` is not loaded), plus a fresh head."""
        from transformers import AutoModel

        backbone = AutoModel.from_pretrained(path, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code)
        std = getattr(backbone.config, "initializer_range", 0.02)
        return cls(backbone, backbone.config.hidden_size, seed=seed, init_std=std)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-position scalar logits, shape (B, T), in float32."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        return self.head(hidden).squeeze(-1).float()

    def gradient_checkpointing_enable(self) -> None:
        self.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def save(self, folder: Path) -> None:
        """`model.safetensors` with every weight (backbone and head)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()},
                  str(folder / "model.safetensors"))

    def load(self, folder: Path) -> None:
        from safetensors.torch import load_file

        self.load_state_dict(load_file(str(Path(folder) / "model.safetensors")))
