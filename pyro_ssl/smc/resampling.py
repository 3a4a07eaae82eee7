"""Resampling schemes, interchangeable and chosen by name.

Each scheme maps normalised log weights ``(B, P)`` to ``num`` ancestor indices ``(B, num)``
and declares whether it may be used inside *conditional* SMC, where particle 0 is pinned to
the reference. Multinomial resampling can (the other ``P - 1`` ancestors are i.i.d. draws, so
pinning one index leaves the conditional law right); systematic and stratified resampling
cannot be conditioned by simply pinning index 0 (Chopin and Singh 2015), so they are offered
for the unconditional filter only, where their lower variance helps evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["Resampler", "RESAMPLERS", "get_resampler", "multinomial", "systematic", "stratified"]


def _inverse_cdf(log_weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Indices ``(B, num)`` whose cumulative weight first exceeds the sorted uniforms ``u``."""
    w = torch.softmax(log_weights, dim=-1)
    cdf = w.cumsum(-1)
    idx = torch.searchsorted(cdf, u * cdf[..., -1:], right=True)
    return idx.clamp_(max=log_weights.shape[-1] - 1)


def multinomial(log_weights: torch.Tensor, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """I.i.d. ancestors: ``(B, P)`` log weights -> ``(B, num)`` indices."""
    probs = torch.softmax(log_weights, dim=-1)
    return torch.multinomial(probs, num, replacement=True, generator=generator)


def systematic(log_weights: torch.Tensor, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One uniform per document shared by all ``num`` strata."""
    B = log_weights.shape[0]
    u0 = torch.rand(B, 1, generator=generator, device=log_weights.device, dtype=log_weights.dtype)
    u = (u0 + torch.arange(num, device=log_weights.device, dtype=log_weights.dtype)) / num
    return _inverse_cdf(log_weights, u)


def stratified(log_weights: torch.Tensor, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One uniform per stratum."""
    B = log_weights.shape[0]
    u0 = torch.rand(B, num, generator=generator, device=log_weights.device, dtype=log_weights.dtype)
    u = (u0 + torch.arange(num, device=log_weights.device, dtype=log_weights.dtype)) / num
    return _inverse_cdf(log_weights, u)


@dataclass(frozen=True)
class Resampler:
    """A named resampling scheme and whether conditional SMC may use it."""

    name: str
    fn: Callable[..., torch.Tensor]
    conditional: bool

    def __call__(self, log_weights: torch.Tensor, num: int, generator: torch.Generator | None = None):
        return self.fn(log_weights, num, generator)


RESAMPLERS: dict[str, Resampler] = {
    "multinomial": Resampler("multinomial", multinomial, conditional=True),
    "systematic": Resampler("systematic", systematic, conditional=False),
    "stratified": Resampler("stratified", stratified, conditional=False),
}


def get_resampler(scheme: str | Resampler) -> Resampler:
    """Look a scheme up by name (or pass a :class:`Resampler` through)."""
    if isinstance(scheme, Resampler):
        return scheme
    try:
        return RESAMPLERS[scheme]
    except KeyError:
        raise ValueError(f"unknown resampling scheme {scheme!r}; choose one of {sorted(RESAMPLERS)}") from None
