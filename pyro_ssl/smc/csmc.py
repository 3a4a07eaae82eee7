"""Batched (conditional) SMC for the Topical SSL (SPEC section 2).

One tensor program over documents x particles. Each particle carries its LSTM state and is
advanced exactly one LSTM step per time step; resampling reorders the carried states.

Per time step ``t`` (0-based here, 1-based in the SPEC):

1. every particle advances its LSTM with ``embed(z_{t-1})`` to get ``pi_t`` (the step is a
   deterministic function of the particle's history, so it is computed before resampling and
   the results are reordered with the particles: same numbers, and ancestor sampling can reuse
   them);
2. ancestors ``a ~ W_{t-1}`` (``t > 0``); particle 0 keeps ancestor 0, or with ancestor
   sampling draws it from ``W_{t-1}^p * p(z*_{t:t+L-1} | z^p_{<t})``;
3. fully adapted proposal ``gamma(k) ∝ pi_t(k) phi_k[x_t]``; particle 0 takes ``z*_t``;
4. weights ``alpha_t^p = sum_k pi_t^p(k) phi_k[x_t]`` for every particle.

Steps at or beyond a document's length neither resample nor change its weights. Without a
reference the same code is the fully adapted particle filter returning ``log Zhat``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..model import LSTMPrior, LSTMState, emission_log_probs, length_mask
from .categorical import sample_categorical
from .resampling import Resampler, get_resampler

__all__ = ["SweepResult", "csmc_sweep", "particle_filter", "FULL_LAG"]

FULL_LAG = "full"
"""Pass as ``ancestor_lag`` for exact ancestor sampling (look ahead to the document's end)."""


@dataclass
class SweepResult:
    """Output of one sweep over a batch of ``B`` documents of padded length ``T``.

    Attributes:
        path: ``(B, T)`` long, the returned topic path (padding filled with 0).
        log_Z: ``(B,)`` ``log Zhat``, the log of the particle estimate of ``p(x | theta, phi)``
            (unbiased on the natural scale when run without a reference).
        log_incr: ``(B, T)`` ``log sum_p W_{t-1}^p alpha_t^p``, the estimated predictive
            ``log p(x_t | x_<t)``; 0 at padding.
        ess: ``(B, T)`` effective sample size of ``W_t``; 0 at padding.
        num_ancestors: ``(B, T)`` distinct time-``t`` ancestors of the final particle system
            (path degeneracy shows as 1 at early steps); only when ``diagnostics=True``.
        particles: ``(B, P, T)`` every final particle's traced path; only with ``diagnostics``.
        log_weights: ``(B, P)`` final normalised log weights.
    """

    path: torch.Tensor
    log_Z: torch.Tensor
    log_incr: torch.Tensor
    ess: torch.Tensor
    log_weights: torch.Tensor
    num_ancestors: torch.Tensor | None = None
    particles: torch.Tensor | None = None


def _take(x: torch.Tensor, rows: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Reorder particles: ``x`` ``(B, P, ...)``, ``idx`` ``(B, P)`` -> ``x[b, idx[b, p], ...]``."""
    return x[rows, idx]


def _lookahead_log_prob(
    prior: LSTMPrior,
    table: torch.Tensor,
    state: LSTMState,
    log_pi_t: torch.Tensor,
    reference: torch.Tensor,
    mask: torch.Tensor,
    t: int,
    lag: int,
) -> torch.Tensor:
    """``sum_{s=t}^{t+lag-1} log p(z*_s | z^p_{<t}, z*_{t:s-1})`` for every candidate ``p``.

    Args:
        state: candidates' LSTM states ``s_t^p`` (already advanced with ``z^p_{t-1}``), ``(B, P, H)``.
        log_pi_t: ``(B, P, K)`` candidates' ``log p(z_t | z^p_<t)``.
        reference: ``(B, T)``; mask ``(B, T)``.
    Returns:
        ``(B, P)``. Emission terms are omitted: they do not depend on the candidate.
    """
    B, P, _ = log_pi_t.shape
    T = reference.shape[1]
    ref_t = reference[:, t].view(B, 1, 1).expand(B, P, 1)
    total = log_pi_t.gather(-1, ref_t).squeeze(-1)
    z_in = reference[:, t].view(B, 1).expand(B, P)
    for s in range(t + 1, min(t + lag, T)):
        active = mask[:, s]
        if not bool(active.any()):
            break
        log_pi, state = prior.step(z_in, state, table)
        ref_s = reference[:, s].view(B, 1, 1).expand(B, P, 1)
        total = total + log_pi.gather(-1, ref_s).squeeze(-1) * active.unsqueeze(-1)
        z_in = reference[:, s].view(B, 1).expand(B, P)
    return total


@torch.no_grad()
def csmc_sweep(
    prior: LSTMPrior,
    log_phi: torch.Tensor,
    x: torch.Tensor,
    lengths: torch.Tensor,
    num_particles: int,
    reference: torch.Tensor | None = None,
    *,
    resampling: str | Resampler = "multinomial",
    ancestor_lag: int | str = 0,
    generator: torch.Generator | None = None,
    diagnostics: bool = False,
) -> SweepResult:
    """One (conditional) SMC sweep over a batch of documents.

    Args:
        prior: the LSTM prior (used in eval semantics: no dropout).
        log_phi: ``(K, V)`` log topic-word probabilities.
        x: ``(B, T)`` long word ids, padded.
        lengths: ``(B,)`` long document lengths (``1 <= lengths <= T``).
        num_particles: ``P`` (including the reference when there is one).
        reference: ``(B, T)`` long reference topic paths, or ``None`` for the plain particle
            filter.
        resampling: scheme name from :data:`~pyro_ssl.smc.resampling.RESAMPLERS`; must declare
            ``conditional=True`` when a reference is given.
        ancestor_lag: ``0`` disables ancestor sampling; an integer ``L > 0`` redraws the
            reference's ancestor at each step using ``L`` steps of its future prior
            probability (a truncation, exact when ``L`` reaches the document's end);
            :data:`FULL_LAG` looks ahead to the end. Needs a reference.
        generator: torch generator on the model's device for reproducible draws.
        diagnostics: also trace every particle back (``particles``, ``num_ancestors``).

    Returns:
        :class:`SweepResult`.
    """
    resampler = get_resampler(resampling)
    B, T = x.shape
    P = int(num_particles)
    K = log_phi.shape[0]
    if P < 1:
        raise ValueError(f"num_particles must be >= 1, got {P}")
    if reference is not None:
        if not resampler.conditional:
            raise ValueError(
                f"resampling scheme {resampler.name!r} does not support conditional SMC; "
                "use 'multinomial' when a reference path is given"
            )
        if reference.shape != x.shape:
            raise ValueError(f"reference shape {tuple(reference.shape)} != x shape {tuple(x.shape)}")
    if ancestor_lag == FULL_LAG:
        lag = T
    else:
        lag = int(ancestor_lag)
        if lag < 0:
            raise ValueError(f"ancestor_lag must be >= 0 or {FULL_LAG!r}, got {ancestor_lag}")
    if lag > 0 and reference is None:
        raise ValueError("ancestor sampling needs a reference path")
    if log_phi.shape[0] != prior.K:
        raise ValueError(f"log_phi has {log_phi.shape[0]} topics, prior has {prior.K}")

    device, dtype = prior.device, prior.dtype
    x = x.to(device)
    lengths = lengths.to(device)
    log_phi = log_phi.to(device=device, dtype=dtype)
    mask = length_mask(lengths, T)
    log_em = emission_log_probs(log_phi, x)  # (B, T, K)
    table = prior.input_table()
    rows = torch.arange(B, device=device).unsqueeze(-1)
    identity = torch.arange(P, device=device).expand(B, P)
    log_P = math.log(P)

    state, z_prev = prior.initial_state((B, P))
    log_w = torch.full((B, P), -log_P, device=device, dtype=dtype)
    ancestors = torch.empty(T, B, P, dtype=torch.long, device=device)
    topics = torch.empty(T, B, P, dtype=torch.long, device=device)
    log_incr = torch.zeros(B, T, device=device, dtype=dtype)
    ess = torch.zeros(B, T, device=device, dtype=dtype)
    if reference is not None:
        reference = reference.to(device).clamp(0, K - 1)

    for t in range(T):
        active = mask[:, t]
        log_pi, state = prior.step(z_prev, state, table)  # (B, P, K): pi_t^p before resampling
        if t == 0:
            a = identity
        else:
            a = resampler(log_w, P, generator)
            if reference is not None:
                if lag > 0:
                    look = _lookahead_log_prob(prior, table, state, log_pi, reference, mask, t, lag)
                    a0 = sample_categorical(log_w + look, generator)
                else:
                    a0 = torch.zeros(B, dtype=torch.long, device=device)
                a = torch.cat([a0.unsqueeze(-1), a[:, 1:]], dim=1)
            a = torch.where(active.unsqueeze(-1), a, identity)
            log_pi = _take(log_pi, rows, a)
            state = LSTMState(_take(state.h, rows, a), _take(state.c, rows, a))
        log_gamma = log_pi + log_em[:, t].unsqueeze(1)  # (B, P, K)
        log_alpha = torch.logsumexp(log_gamma, dim=-1)  # (B, P)
        z_t = sample_categorical(log_gamma, generator)
        if reference is not None:
            z_t[:, 0] = reference[:, t]
        # Weights were reset to uniform by resampling, so the predictive is the mean alpha.
        lse = torch.logsumexp(log_alpha, dim=-1)
        new_log_w = log_alpha - lse.unsqueeze(-1)
        log_w = torch.where(active.unsqueeze(-1), new_log_w, log_w)
        log_incr[:, t] = torch.where(active, lse - log_P, torch.zeros_like(lse))
        ess[:, t] = torch.where(active, torch.exp(-torch.logsumexp(2 * new_log_w, -1)), torch.zeros_like(lse))
        ancestors[t] = a
        topics[t] = z_t
        z_prev = z_t

    r = sample_categorical(log_w, generator)
    path = _trace_back(topics, ancestors, r.unsqueeze(-1)).squeeze(1).masked_fill(~mask, 0)
    result = SweepResult(path=path, log_Z=log_incr.sum(-1), log_incr=log_incr, ess=ess, log_weights=log_w)
    if diagnostics:
        particles, lineage = _trace_back(topics, ancestors, identity, return_lineage=True)
        result.particles = particles.masked_fill(~mask.unsqueeze(1), 0)
        result.num_ancestors = _count_distinct(lineage).masked_fill(~mask, 0)
    return result


def _trace_back(topics: torch.Tensor, ancestors: torch.Tensor, idx: torch.Tensor, return_lineage: bool = False):
    """Follow ancestry from final particles ``idx`` ``(B, N)`` back to ``t = 0``.

    Returns ``(B, N, T)`` paths (and the ``(T, B, N)`` particle index at each step).
    """
    T, B, _ = topics.shape
    N = idx.shape[1]
    paths = torch.empty(B, N, T, dtype=torch.long, device=topics.device)
    lineage = torch.empty(T, B, N, dtype=torch.long, device=topics.device) if return_lineage else None
    for t in range(T - 1, -1, -1):
        paths[:, :, t] = topics[t].gather(1, idx)
        if lineage is not None:
            lineage[t] = idx
        idx = ancestors[t].gather(1, idx)
    return (paths, lineage) if return_lineage else paths


def _count_distinct(lineage: torch.Tensor) -> torch.Tensor:
    """Number of distinct particle indices per step: ``(T, B, N)`` -> ``(B, T)``."""
    s = lineage.sort(dim=-1).values
    distinct = 1 + (s[..., 1:] != s[..., :-1]).sum(-1)
    return distinct.T


def particle_filter(
    prior: LSTMPrior,
    log_phi: torch.Tensor,
    x: torch.Tensor,
    lengths: torch.Tensor,
    num_particles: int,
    *,
    resampling: str | Resampler = "systematic",
    generator: torch.Generator | None = None,
    diagnostics: bool = False,
) -> SweepResult:
    """Fully adapted particle filter (no reference): ``log Zhat`` and predictive increments."""
    return csmc_sweep(
        prior,
        log_phi,
        x,
        lengths,
        num_particles,
        None,
        resampling=resampling,
        generator=generator,
        diagnostics=diagnostics,
    )
