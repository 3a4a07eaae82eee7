"""Batched (conditional) SMC for the Topical SSL (SPEC section 2).

One tensor program over documents x particles. Each particle carries its LSTM state and is
advanced exactly one LSTM step per time step; resampling reorders the carried states.

Per time step ``t`` (0-based here, 1-based in the SPEC):

1. ancestors ``a ~ W_{t-1}`` (``t > 0``); particle 0 keeps ancestor 0, or with ancestor
   sampling draws it from ``W_{t-1}^p * p(z*_{t:t+L-1} | z^p_{<t})``;
2. every particle advances its LSTM with ``embed(z_{t-1})`` to get ``pi_t``. The step is a
   deterministic function of the particle's history, so where it is computed does not change
   a number: with ancestor sampling it runs before resampling (the candidates' ``pi_t`` is
   needed) and the results are reordered; otherwise it runs after, once per surviving
   ancestor, and is copied to the ancestor's offspring;
3. fully adapted proposal ``gamma(k) ∝ pi_t(k) phi_k[x_t]``; particle 0 takes ``z*_t``;
4. weights ``alpha_t^p = sum_k pi_t^p(k) phi_k[x_t]`` for every particle.

Steps at or beyond a document's length neither resample nor change its weights. Without a
reference the same code is the fully adapted particle filter returning ``log Zhat``.

Performance notes (``docs/performance.md``): particles are stored flattened as rows
``b * P + p`` so reordering is one ``index_select``; the LSTM step uses a precomputed input
table and one sigmoid over all gates (:meth:`~pyro_ssl.model.LSTMPrior.step_weights`); the
proposal's CDF and the weight ``alpha`` come from one ``exp``; ancestry is stored as int32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..model import LSTMPrior, LSTMState, StepWeights, length_mask
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


def _lookahead_log_prob(
    prior: LSTMPrior,
    weights: StepWeights,
    state: LSTMState,
    log_pi_t: torch.Tensor,
    ref: torch.Tensor,
    active: torch.Tensor,
) -> torch.Tensor:
    """``sum_{s=t}^{t+L-1} log p(z*_s | z^p_{<t}, z*_{t:s-1})`` for every candidate state.

    Args:
        weights: :meth:`~pyro_ssl.model.LSTMPrior.step_weights`.
        state: candidates' LSTM states ``s_t`` (already advanced with their ``z_{t-1}``),
            each ``(M, H)``.
        log_pi_t: ``(M, K)`` candidates' ``log p(z_t | z_<t)``.
        ref: ``(M, L)`` the reference topics ``z*_{t:t+L}`` of each candidate's document;
            active ``(M, L)`` true where those steps are inside the document.
    Returns:
        ``(M,)``. Emission terms are omitted: they do not depend on the candidate.
    """
    total = log_pi_t.gather(-1, ref[:, :1]).squeeze(-1)
    for j in range(1, ref.shape[1]):
        # Every candidate is fed the reference's own topics z*_{t..t+j-1}.
        log_pi, state = prior.step(ref[:, j - 1].contiguous(), state, weights)
        term = log_pi.gather(-1, ref[:, j : j + 1]).squeeze(-1)
        total += torch.where(active[:, j], term, 0.0)
    return total


def _distinct_inputs(key: torch.Tensor, dedup: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct step inputs: ``key`` ``(N,)`` -> ``(distinct keys (M,), row of each key (N,))``.

    Particles with equal keys have equal LSTM inputs, hence equal outputs, so each distinct
    key is stepped once. Resampling makes such copies: multinomial resampling keeps only
    about ``1 - (1 - 1/P)^P`` (65% at ``P = 10``) of the ancestors, and copies of one ancestor
    that draw the same topic stay identical. ``torch.unique`` needs its output size on the
    host (a stall per step on a GPU), so without ``dedup`` every particle is its own row.
    """
    if dedup:
        return torch.unique(key, sorted=True, return_inverse=True)
    return key, torch.arange(key.shape[0], device=key.device)


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
    log_emission: torch.Tensor | None = None,
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
        log_emission: optional ``(B, T, K)`` per-document ``log p(x_t | z_t = k)`` used instead
            of ``log_phi[:, x]`` (e.g. leave-document-out topics during learning).

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
    # (T, B, K): log phi_k[x_t], one contiguous slab per step.
    if log_emission is None:
        log_em = log_phi.T[x.T]
    else:
        log_em = log_emission.to(device=device, dtype=dtype).transpose(0, 1).contiguous()
    weights = prior.step_weights()
    H = prior.hidden_size
    N = B * P
    # Particles live flattened as rows b * P + p: ancestors become row indices.
    offsets = (torch.arange(B, device=device) * P).unsqueeze(-1)  # (B, 1)
    identity = torch.arange(P, device=device).expand(B, P)
    log_P = math.log(P)
    # Two host syncs per sweep instead of one per step: before the shortest document ends
    # every step is active (no masking); after the longest ends the look-ahead stops.
    min_len, max_len = (int(lengths.min()), int(lengths.max())) if B else (0, 0)
    dedup = device.type == "cpu"

    # LSTM states are stored once per distinct state: particle n's is row sid[n] of state_u.
    # A particle's next LSTM input is (its state, its last topic); encoded with its document
    # as one integer key, "which particles would compute the same step" is a torch.unique,
    # and resampling moves integers instead of (N, H) states.
    doc = torch.arange(B, device=device).repeat_interleave(P)  # (N,)
    Kp = K + 1  # topics and the start symbol

    def input_key(rows: torch.Tensor, sid: torch.Tensor, z_prev: torch.Tensor) -> torch.Tensor:
        """Key ``(doc * N + state row) * (K + 1) + last topic`` of the particles ``rows``."""
        return (doc[rows] * N + sid[rows]) * Kp + z_prev[rows]

    state_u = LSTMState(torch.zeros(1, H, device=device, dtype=dtype), torch.zeros(1, H, device=device, dtype=dtype))
    sid = torch.zeros(N, dtype=torch.long, device=device)
    z_prev = torch.full((N,), prior.start_symbol, device=device, dtype=torch.long)
    all_rows = torch.arange(N, device=device)
    log_w = torch.full((B, P), -log_P, device=device, dtype=dtype)
    # Compact ancestry: int32 halves the (T, B, P) storage that dominates memory at scale.
    ancestors = torch.empty(T, B, P, dtype=torch.int32, device=device)
    topics = torch.empty(T, B, P, dtype=torch.int32, device=device)
    log_incr = torch.zeros(T, B, device=device, dtype=dtype)
    ess = torch.zeros(T, B, device=device, dtype=dtype)
    if reference is not None:
        reference = reference.to(device).clamp(0, K - 1)

    for t in range(T):
        active = mask[:, t]
        # With ancestor sampling every candidate's pi_t is needed before resampling, so the
        # current particles are stepped first; otherwise resampling comes first and only the
        # inputs that survive it are stepped. Same numbers either way: the step is a
        # deterministic function of the particle's history.
        look_first = t > 0 and lag > 0 and reference is not None
        if look_first:
            keys, inv = _distinct_inputs(input_key(all_rows, sid, z_prev), dedup)
        else:
            if t == 0:
                a = identity
            else:
                a = resampler(log_w, P, generator)
                if reference is not None:
                    a[:, 0] = 0
                if t >= min_len:  # padding steps keep every particle where it is
                    a = torch.where(active.unsqueeze(-1), a, identity)
            flat = (a + offsets).view(-1)
            keys, sid_next = _distinct_inputs(input_key(flat, sid, z_prev), dedup)
        # Step each distinct input once: (M, K) log-priors and (M, H) states.
        z_in, s_in = keys % Kp, (keys // Kp) % N
        state_in = LSTMState(state_u.h.index_select(0, s_in), state_u.c.index_select(0, s_in))
        log_pi_u, state_u = prior.step(z_in, state_in, weights)
        if look_first:
            stop = min(t + lag, max_len)
            rows_doc = keys // (Kp * N)
            ref_rows = reference[:, t:stop].index_select(0, rows_doc)  # (M, L)
            act_rows = mask[:, t:stop].index_select(0, rows_doc)
            look = _lookahead_log_prob(prior, weights, state_u, log_pi_u, ref_rows, act_rows)
            look = look.index_select(0, inv).view(B, P)
            a = resampler(log_w, P, generator)
            a[:, 0] = sample_categorical(log_w + look, generator)
            if t >= min_len:
                a = torch.where(active.unsqueeze(-1), a, identity)
            sid_next = inv.index_select(0, (a + offsets).view(-1))
        sid = sid_next
        log_pi = log_pi_u.index_select(0, sid)  # (N, K)
        # Fully adapted proposal and weight from one exp: gamma = pi * phi[:, x_t] is shifted by
        # its row max, its running sum is both the sampling CDF and (last entry) alpha.
        log_gamma = log_pi.view(B, P, K) + log_em[t].unsqueeze(1)  # (B, P, K)
        shift = log_gamma.amax(-1, keepdim=True)
        cdf = log_gamma.sub_(shift).exp_().cumsum_(-1)
        total = cdf[..., -1:]  # >= 1: the max entry contributes exp(0)
        log_alpha = (shift + total.log()).squeeze(-1)  # (B, P)
        u = torch.rand(B, P, 1, generator=generator, device=device, dtype=dtype)
        z_t = torch.searchsorted(cdf, u * total, right=True).squeeze(-1).clamp_(max=K - 1)
        if reference is not None:
            z_t[:, 0] = reference[:, t]
        # Weights were reset to uniform by resampling, so the predictive is the mean alpha.
        lse = torch.logsumexp(log_alpha, dim=-1)
        new_log_w = log_alpha - lse.unsqueeze(-1)
        w = new_log_w.exp()
        ess_t = (w * w).sum(-1).reciprocal_()
        if t < min_len:
            log_w = new_log_w
            log_incr[t] = lse - log_P
            ess[t] = ess_t
        else:
            log_w = torch.where(active.unsqueeze(-1), new_log_w, log_w)
            log_incr[t] = torch.where(active, lse - log_P, 0.0)
            ess[t] = torch.where(active, ess_t, 0.0)
        ancestors[t] = a
        topics[t] = z_t
        z_prev = z_t.view(-1)

    log_incr, ess = log_incr.T.contiguous(), ess.T.contiguous()
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

    ``topics`` and ``ancestors`` are ``(T, B, P)`` integer tensors (any integer dtype).
    Returns ``(B, N, T)`` long paths (and the ``(T, B, N)`` particle index at each step).
    """
    T, B, _ = topics.shape
    N = idx.shape[1]
    idx = idx.long()
    paths = torch.empty(B, N, T, dtype=torch.long, device=topics.device)
    lineage = torch.empty(T, B, N, dtype=torch.long, device=topics.device) if return_lineage else None
    for t in range(T - 1, -1, -1):
        paths[:, :, t] = topics[t].gather(1, idx)
        if lineage is not None:
            lineage[t] = idx
        idx = ancestors[t].gather(1, idx).long()
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
