"""Resampling schemes: uniforms plus one shared inverse CDF, chosen by name.

Every draw the samplers make is an inverse-CDF lookup of uniforms (:func:`inverse_cdf`); a
resampling scheme is only the way it turns raw uniforms into the ``P`` sorted-or-not points
that are looked up. Each scheme also declares whether *conditional* SMC may use it, where
particle 0 is pinned to the reference: multinomial resampling can (the other ``P - 1``
ancestors are i.i.d. draws, so pinning one index leaves the conditional law right);
systematic and stratified resampling cannot be conditioned by simply pinning index 0 (Chopin
and Singh 2015), so they serve the unconditional filter, where their lower variance helps
evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["Resampler", "RESAMPLERS", "get_resampler", "inverse_cdf", "search_cdf"]


def search_cdf(cdf: torch.Tensor, u: torch.Tensor, total: torch.Tensor | None = None) -> torch.Tensor:
    """Indices ``(..., n)`` where the unnormalised ``cdf`` ``(..., K)`` first exceeds ``u * cdf[-1]``.

    ``u`` ``(..., n)`` are uniforms on ``[0, 1)``; the result is clamped to ``K - 1`` against
    round-off at the top. ``total``: ``cdf[..., -1:]`` when the caller has it already.
    """
    if u.dtype != cdf.dtype:  # checked here: even a no-op .to() costs a dispatch per call
        u = u.to(cdf.dtype)
    if total is None:
        total = cdf[..., -1:]
    idx = torch.searchsorted(cdf, u * total, right=True)  # the product is contiguous
    return idx.clamp_(max=cdf.shape[-1] - 1)


def inverse_cdf(log_weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Draws ``(..., n)`` from unnormalised ``log_weights`` ``(..., K)`` by inverse CDF of ``u`` ``(..., n)``.

    ``-inf`` weights are never drawn. I.i.d. ``u`` gives i.i.d. categorical draws. Shifting by
    the row max before ``exp`` keeps the CDF accurate in float32. (The shifted copy is
    exponentiated and summed in place: the same numbers, two allocations fewer per draw.)
    """
    w = log_weights - log_weights.amax(-1, keepdim=True)
    return search_cdf(w.exp_().cumsum_(-1), u)


def _iid(u: torch.Tensor, P: int) -> torch.Tensor:
    return u


def _strata(u: torch.Tensor, P: int) -> torch.Tensor:
    # (B, 1) or (B, P) uniforms -> one point in each stratum [p/P, (p+1)/P).
    return (u + torch.arange(P, device=u.device, dtype=u.dtype)) / P


@dataclass(frozen=True)
class Resampler:
    """A named scheme: how many uniforms it takes per document, how it spreads them, and
    whether conditional SMC may use it.

    ``resampler(log_weights (B, P), u (B, num_uniforms(P)))`` -> ancestors ``(B, P)``.
    """

    name: str
    num_uniforms: Callable[[int], int]
    points: Callable[[torch.Tensor, int], torch.Tensor]
    conditional: bool

    def __call__(self, log_weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return inverse_cdf(log_weights, self.points(u, log_weights.shape[-1]))


RESAMPLERS: dict[str, Resampler] = {
    "multinomial": Resampler("multinomial", lambda P: P, _iid, conditional=True),
    "systematic": Resampler("systematic", lambda P: 1, _strata, conditional=False),
    "stratified": Resampler("stratified", lambda P: P, _strata, conditional=False),
}


def get_resampler(scheme: str | Resampler) -> Resampler:
    """Look a scheme up by name (or pass a :class:`Resampler` through)."""
    if isinstance(scheme, Resampler):
        return scheme
    try:
        return RESAMPLERS[scheme]
    except (KeyError, TypeError):
        raise ValueError(f"unknown resampling scheme {scheme!r}; choose one of {sorted(RESAMPLERS)}") from None
