"""Batched categorical sampling by inverse CDF (one uniform per draw)."""

from __future__ import annotations

import torch


def sample_categorical(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one index per row of unnormalised log-probabilities.

    Args:
        logits: ``batch_shape + (K,)``; ``-inf`` entries are never drawn.
        generator: optional torch generator on ``logits.device`` for reproducible streams.
    Returns:
        ``batch_shape`` long tensor of indices in ``{0..K-1}``.
    """
    # Subtracting the row max before exp keeps the CDF accurate in float32; one uniform per
    # row is several times cheaper than Gumbel-max, which needs K of them.
    probs = torch.exp(logits - logits.amax(-1, keepdim=True))
    cdf = probs.cumsum(-1)
    u = torch.rand(cdf.shape[:-1] + (1,), generator=generator, device=cdf.device, dtype=cdf.dtype)
    idx = torch.searchsorted(cdf, u * cdf[..., -1:], right=True).squeeze(-1)
    return idx.clamp_(max=logits.shape[-1] - 1)
