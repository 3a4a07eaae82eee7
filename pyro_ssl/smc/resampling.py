"""Resampling schemes: uniforms plus one shared inverse CDF, chosen by name.

Every draw the samplers make is an inverse-CDF lookup of uniforms (:func:`inverse_cdf`); a
resampling scheme is only the way it turns raw uniforms into the ``P`` sorted-or-not points
that are looked up. Each scheme also declares whether *conditional* SMC may use it, where
particle 0 is pinned to the reference, and how: :meth:`Resampler.conditioned` draws every
ancestor given that particle 0's is a pinned index (the reference's own, or the one ancestor
sampling chose).

* **multinomial**: the other ``P - 1`` ancestors are i.i.d. draws, so pinning index 0 leaves
  the conditional law right.
* **systematic**: one comb of ``P`` evenly spaced points, rotated so that point ``p`` goes to
  particle ``p``: the points are ``frac(v + p / P)`` with ``v`` uniform on ``[0, 1)``. Each
  particle's ancestor is then marginally a draw from the weights, and the scheme is unchanged
  in law when the weights' or the particles' order is turned cyclically (the comb lives on a
  circle), the conditions conditional SMC needs (Chopin and Singh 2015; Andrieu, Lee and Vihola
  2018). Conditioned on particle 0's ancestor being ``k``, ``v`` is uniform on ``k``'s stretch
  of the CDF, and the rest of the comb follows: not the same as drawing the comb and
  overwriting index 0, which is wrong. Every particle gets ``floor`` or ``ceil`` of ``P W_k``
  copies of ancestor ``k``, so fewer lineages die at each resampling than with multinomial
  draws. Without a reference the filter uses the unrotated comb ``(u + p) / P`` (the same
  points, sorted).
* **stratified**: one point per stratum; no conditional form is implemented, so it serves the
  unconditional filter only, where its lower variance helps evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["Resampler", "RESAMPLERS", "conditional_schemes", "get_resampler", "inverse_cdf", "search_cdf"]


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
    the row max before ``exp`` keeps the CDF accurate in float32 (:func:`weights_cdf`).
    """
    return search_cdf(weights_cdf(log_weights), u)


def weights_cdf(log_weights: torch.Tensor) -> torch.Tensor:
    """The unnormalised CDF ``(..., K)`` of ``log_weights``, shifted by the row max before ``exp``
    (accurate in float32; the shifted copy is exponentiated and summed in place)."""
    w = log_weights - log_weights.amax(-1, keepdim=True)
    return w.exp_().cumsum_(-1)


def _iid(u: torch.Tensor, P: int) -> torch.Tensor:
    return u


def _strata(u: torch.Tensor, P: int) -> torch.Tensor:
    # (B, 1) or (B, P) uniforms -> one point in each stratum [p/P, (p+1)/P).
    return (u + torch.arange(P, device=u.device, dtype=u.dtype)) / P


def _pin_multinomial(cdf: torch.Tensor, u: torch.Tensor, pinned: torch.Tensor | None) -> torch.Tensor:
    a = search_cdf(cdf, u)
    a[:, 0] = 0 if pinned is None else pinned
    return a


def _pin_systematic(cdf: torch.Tensor, u: torch.Tensor, pinned: torch.Tensor | None) -> torch.Tensor:
    # v uniform on the pinned ancestor's stretch [C_{k-1}, C_k) of the normalised CDF, then the
    # comb frac(v + p / P): point 0 falls in k's stretch, so particle 0's ancestor is k.
    P = cdf.shape[-1]
    total = cdf[:, -1:]
    if pinned is None:  # k = 0: the stretch is [0, C_0), the same numbers without the lookups
        v = u.to(cdf.dtype) * cdf[:, :1] / total
    else:
        edges = torch.nn.functional.pad(cdf, (1, 0))  # (B, P + 1): C_{k-1} at k, C_k at k + 1
        k = pinned.unsqueeze(-1)
        lo, hi = edges.gather(-1, k), edges.gather(-1, k + 1)
        v = (lo + u.to(cdf.dtype) * (hi - lo)) / total  # (B, 1)
    points = torch.frac(v + torch.arange(P, device=cdf.device, dtype=cdf.dtype) / P)
    a = search_cdf(cdf, points, total)
    a[:, 0] = 0 if pinned is None else pinned  # round-off at the stretch's ends must not move the reference
    return a


@dataclass(frozen=True)
class Resampler:
    """A named scheme: how many uniforms it takes per document, how it spreads them, and
    whether (and how) conditional SMC may use it.

    ``resampler(log_weights (B, P), u (B, num_uniforms(P)))`` -> ancestors ``(B, P)``;
    ``resampler.conditioned(log_weights, u, pinned (B,))`` -> ancestors with ``a[:, 0] = pinned``,
    drawn from the scheme's law given that (``pin`` is ``None`` where no conditional form exists).
    """

    name: str
    num_uniforms: Callable[[int], int]
    points: Callable[[torch.Tensor, int], torch.Tensor]
    pin: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    @property
    def conditional(self) -> bool:
        """Whether conditional SMC (particle Gibbs) may use this scheme."""
        return self.pin is not None

    def __call__(self, log_weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return inverse_cdf(log_weights, self.points(u, log_weights.shape[-1]))

    def conditioned(self, log_weights: torch.Tensor, u: torch.Tensor, pinned: torch.Tensor | None) -> torch.Tensor:
        """Ancestors ``(B, P)`` given particle 0's ancestor ``pinned`` ``(B,)`` long (``None``: 0, the
        reference's own, as in plain conditional SMC); ``u`` as for a call."""
        if self.pin is None:
            raise ValueError(f"resampling scheme {self.name!r} has no conditional form")
        return self.pin(weights_cdf(log_weights), u, pinned)


RESAMPLERS: dict[str, Resampler] = {
    "multinomial": Resampler("multinomial", lambda P: P, _iid, _pin_multinomial),
    "systematic": Resampler("systematic", lambda P: 1, _strata, _pin_systematic),
    "stratified": Resampler("stratified", lambda P: P, _strata),
}


def conditional_schemes() -> list[str]:
    """Names of the schemes conditional SMC may use."""
    return sorted(name for name, r in RESAMPLERS.items() if r.conditional)


def get_resampler(scheme: str | Resampler) -> Resampler:
    """Look a scheme up by name (or pass a :class:`Resampler` through)."""
    if isinstance(scheme, Resampler):
        return scheme
    try:
        return RESAMPLERS[scheme]
    except (KeyError, TypeError):
        raise ValueError(f"unknown resampling scheme {scheme!r}; choose one of {sorted(RESAMPLERS)}") from None
