"""Dropout with cheaper random masks on CPU.

PyTorch's CPU dropout draws one Bernoulli sample per element (MKL's generator, or one Mersenne
Twister call each): in a bf16 MiniLM training step on 2 cores that was 15% of the step, more
than the encoder's feed-forward matmuls. Here one 64-bit draw of the default generator gives four
16-bit uniforms, each compared with ``round(p * 65536)``: a Bernoulli(1 - p) keep mask whose drop
rate is within 8e-6 of ``p``, seeded by ``torch.manual_seed`` like any other draw (4.7x faster
masks on a 2-core Xeon). Other devices keep PyTorch's own fused dropout.

:func:`use_cheap_dropout` swaps a Hugging Face model's ``nn.Dropout`` modules for
:class:`CheapDropout` and its attention for :func:`cheap_dropout_attention`, which applies the
same masks to the attention probabilities while training on CPU and otherwise calls the model's
scaled-dot-product attention unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTENTION = "nerdistill_cheap_dropout"
UNIFORMS_PER_DRAW = 4  # 16-bit uniforms in one 64-bit draw


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """A boolean mask of ``shape``, each element True with probability ``1 - p`` (to 16 bits)."""
    count = shape.numel()
    draws = torch.empty((count + UNIFORMS_PER_DRAW - 1) // UNIFORMS_PER_DRAW, dtype=torch.int64, device=device)
    draws.random_(-(2**63), None)  # every 64-bit pattern equally likely
    uniforms = draws.view(torch.int16)[:count].view(shape)  # each in [-32768, 32767]
    return uniforms >= round(p * 65536) - 32768


def cheap_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``nn.functional.dropout(x, p, training)``, with :func:`keep_mask` on CPU."""
    if not training or p == 0.0 or x.device.type != "cpu":
        return nn.functional.dropout(x, p, training)
    if p == 1.0:
        return x * 0.0
    return x * keep_mask(x.shape, p, x.device) * (1.0 / (1.0 - p))


class CheapDropout(nn.Dropout):
    """``nn.Dropout`` drawing its masks with :func:`keep_mask` on CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cheap_dropout(x, self.p, self.training)


def cheap_dropout_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention for ``attn_implementation=nerdistill_cheap_dropout``: while training on CPU with
    dropout, softmax attention whose probabilities go through :func:`cheap_dropout`; otherwise
    ``sdpa_attention_forward``. ``attention_mask`` is SDPA's: boolean (True attends) or None."""
    if dropout == 0.0 or not module.training or query.device.type != "cpu":
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    scores = torch.matmul(query, key.transpose(2, 3)) * (query.size(-1) ** -0.5 if scaling is None else scaling)
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    probabilities = cheap_dropout(scores.softmax(dim=-1), dropout, training=True)
    return torch.matmul(probabilities, value).transpose(1, 2).contiguous(), probabilities


AttentionInterface.register(ATTENTION, cheap_dropout_attention)
AttentionMaskInterface.register(ATTENTION, sdpa_mask)


def use_cheap_dropout(model: PreTrainedModel) -> PreTrainedModel:
    """Swap ``model``'s dropout modules for :class:`CheapDropout` and, where it uses SDPA, its
    attention for :func:`cheap_dropout_attention` (in place; parameters and outputs in eval mode
    are unchanged)."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, CheapDropout(child.p).train(child.training))
    if model.config._attn_implementation == "sdpa":
        model.set_attn_implementation(ATTENTION)
    return model
