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

from ..config import FINAL_DRAWS, FULL_LAG
from ..model import LSTMPrior, LSTMState, StepWeights, length_mask
from ..runtime import hot_loop, no_autograd
from .resampling import Resampler, conditional_schemes, get_resampler, inverse_cdf, search_cdf
from .uniforms import GeneratorUniforms, UniformSource

__all__ = ["SweepResult", "csmc_sweep", "particle_filter", "FULL_LAG", "FINAL_DRAWS", "metropolised_index"]



@dataclass
class SweepResult:
    """Output of one sweep over a batch of ``B`` documents of padded length ``T``.

    Attributes:
        path: ``(B, T)`` long, the returned topic path (padding filled with 0); ``None`` when
            the sweep ran with ``trace=False``.
        log_Z: ``(B,)`` ``log Zhat``, the log of the particle estimate of ``p(x | theta, phi)``
            (unbiased on the natural scale when run without a reference).
        log_incr: ``(B, T)`` ``log sum_p W_{t-1}^p alpha_t^p``, the estimated predictive
            ``log p(x_t | x_<t)``; 0 at padding.
        ess: ``(B, T)`` effective sample size of ``W_t``; 0 at padding.
        num_ancestors: ``(B, T)`` distinct time-``t`` ancestors of the final particle system
            (path degeneracy shows as 1 at early steps); only when ``diagnostics=True``.
        particles: ``(B, P, T)`` every final particle's traced path; only with ``diagnostics``.
        log_weights: ``(B, P)`` final normalised log weights.
        chosen: ``(B,)`` long, the final particle whose path is ``path`` (drawn from
            ``log_weights`` plus any final potential); ``None`` where no particle was drawn.
    """

    path: torch.Tensor | None
    log_Z: torch.Tensor
    log_incr: torch.Tensor
    ess: torch.Tensor
    log_weights: torch.Tensor
    num_ancestors: torch.Tensor | None = None
    particles: torch.Tensor | None = None
    chosen: torch.Tensor | None = None


def _lookahead_log_prob(
    prior: LSTMPrior,
    weights: StepWeights,
    state: LSTMState,
    log_pi_t: torch.Tensor,
    ref_rows: torch.Tensor,
    mask: torch.Tensor,
    t: int,
    stop: int,
    min_len: int,
) -> torch.Tensor:
    """``sum_{s=t}^{stop-1} log p(z*_s | z^p_{<t}, z*_{t:s-1})`` for every candidate ``p``.

    Args:
        weights: :meth:`~pyro_ssl.model.LSTMPrior.step_weights`.
        state: candidates' LSTM states ``s_t^p`` (already advanced with ``z^p_{t-1}``),
            each ``(B * P, H)``.
        log_pi_t: ``(B, P, K)`` candidates' ``log p(z_t | z^p_<t)``.
        ref_rows: ``(T, B * P, 1)`` long, the reference's topic at each step repeated for every
            particle row (so each look-ahead step is a view, not an expand-and-copy).
        mask: ``(B, T)``; min_len: the shortest length (before it no step is masked).
        stop: one past the last look-ahead step (``min(t + lag, longest length)``).
    Returns:
        ``(B, P)``. Emission terms are omitted: they do not depend on the candidate.
    """
    B, P, K = log_pi_t.shape
    N = B * P
    total = log_pi_t.view(N, K).gather(-1, ref_rows[t]).view(B, P)
    for s in range(t + 1, stop):
        # Every candidate is fed the reference's own topics z*_{t..s-1}.
        log_pi, state = prior.step(ref_rows[s - 1].view(N), state, weights)
        term = log_pi.gather(-1, ref_rows[s]).view(B, P)
        if s < min_len:  # every document still running: where(True, term, 0) is term itself
            total += term
        else:
            total += torch.where(mask[:, s].unsqueeze(-1), term, 0.0)
    return total


SKIP_IF_ALL_CARRY = True
"""Under adaptive resampling, skip a step's ancestor draw and reordering when every document carries
its weights on (the same draws: every ancestor is then its own particle). Needs a host read per
step, so only on a CPU."""

DEDUP_MAX_SURVIVORS = 0.85
"""Step only the resampled survivors when at most this share of particles survives."""


def _step_resampled(
    prior: LSTMPrior,
    weights: StepWeights,
    z_prev: torch.Tensor,
    state: LSTMState,
    flat: torch.Tensor,
    dedup: bool,
) -> tuple[torch.Tensor, LSTMState]:
    """Advance the particles chosen by the ancestors ``flat`` one LSTM step.

    Args:
        z_prev: ``(N,)`` previous topics and ``state`` ``(N, H)`` of the particles before
            resampling (``N = B * P``, row ``b * P + p``).
        flat: ``(N,)`` row of each new particle's ancestor.
        dedup: allow stepping each surviving ancestor once.
    Returns:
        ``(log_pi (N, K), state (N, H))`` of the resampled particles.

    Multinomial resampling keeps only about ``1 - (1 - 1/P)^P`` (65% at ``P = 10``) of the
    particles, and the copies of one ancestor would run the very same step; so when few enough
    survive, step the survivors once and copy their results to the offspring. Same numbers,
    fewer rows through the GEMM and the gate nonlinearities.
    """
    if dedup:
        N = flat.shape[0]
        alive = torch.zeros(N, dtype=torch.bool, device=flat.device).index_fill_(0, flat, True)
        src = alive.nonzero().squeeze(-1)  # (M,) survivors; M is read on the host
        if src.shape[0] <= DEDUP_MAX_SURVIVORS * N:
            log_pi, state = prior.step(
                z_prev.index_select(0, src),
                LSTMState(state.h.index_select(0, src), state.c.index_select(0, src)),
                weights,
            )
            pos = (alive.cumsum(0) - 1).index_select(0, flat)  # survivor index of each ancestor
            return log_pi.index_select(0, pos), LSTMState(state.h.index_select(0, pos), state.c.index_select(0, pos))
    state = LSTMState(state.h.index_select(0, flat), state.c.index_select(0, flat))
    return prior.step(z_prev.index_select(0, flat), state, weights)


@no_autograd
@hot_loop
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
    uniforms: UniformSource | None = None,
    generator: torch.Generator | None = None,
    diagnostics: bool = False,
    log_emission: torch.Tensor | None = None,
    start: tuple[LSTMState, torch.Tensor] | None = None,
    final_log_potential=None,
    trace: bool = True,
    resample_below: float | None = None,
    final_draw: str = "gibbs",
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
        resampling: scheme name from :data:`~pyro_ssl.smc.resampling.RESAMPLERS`; must be
            ``conditional`` when a reference is given (``"multinomial"`` or ``"systematic"``).
        ancestor_lag: ``0`` disables ancestor sampling; an integer ``L > 0`` redraws the
            reference's ancestor at each step using ``L`` steps of its future prior
            probability (a truncation, exact when ``L`` reaches the document's end);
            :data:`FULL_LAG` looks ahead to the end. Needs a reference.
        uniforms: where every draw's uniforms come from
            (:class:`~pyro_ssl.smc.uniforms.UniformSource`; e.g. keyed by document in
            learning); default fresh uniforms from ``generator``.
        generator: torch generator on the model's device, used when ``uniforms`` is omitted.
        start: optional ``(LSTMState (B, H), z_prev (B,))``: every particle of document ``b``
            starts from this state and previous topic instead of the zero state and the start
            symbol (a sweep over a block of positions after a fixed prefix).
        final_log_potential: optional ``fn(state, z_last) -> (B, P)``, given the particles'
            last LSTM states ``(B * P, H)`` and topics ``(B * P,)``; added to the final log
            weights before the returned path is chosen (the fixed future's prior probability
            in a blocked sweep, :mod:`pyro_ssl.smc.blocked`).
        diagnostics: also trace every particle back (``particles``, ``num_ancestors``).
        log_emission: optional ``(B, T, K)`` per-document ``log p(x_t | z_t = k)`` used instead
            of ``log_phi[:, x]`` (e.g. leave-document-out topics during learning).
        resample_below: ``None`` resamples at every step; a fraction ``r`` in ``(0, 1]`` resamples a
            document's particles only when their effective sample size is below ``r * P`` and
            otherwise carries their weights on (adaptive resampling; the decision is a symmetric
            function of the weights, so conditional SMC stays valid: Huggins and Roy 2015,
            "conditional adaptive resampling particle filter"). Fewer resampling steps mean
            fewer lineages collapsing onto the reference. Not with ancestor sampling.
        final_draw: how the returned particle is chosen from the final weights (:data:`FINAL_DRAWS`):
            ``"metropolised"`` (a reference, no ancestor sampling) proposes another particle than
            the reference and accepts by Metropolis-Hastings (:func:`metropolised_index`).
        trace: keep the ``(T, B, P)`` ancestry and return a path. ``False`` (scoring: only the
            increments are wanted) keeps memory at ``O(T B)`` instead of ``O(T B P)`` (160 MB for
            one 20,000-token document at ``P = 1000``); the random draws, and so every
            increment, are the same.

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
                f"use one of {conditional_schemes()} when a reference path is given"
            )
        if reference.shape != x.shape:
            raise ValueError(f"reference shape {tuple(reference.shape)} != x shape {tuple(x.shape)}")
    if ancestor_lag == FULL_LAG:
        lag = T
    else:
        lag = int(ancestor_lag)
        if lag < 0:
            raise ValueError(f"ancestor_lag must be >= 0 or {FULL_LAG!r}, got {ancestor_lag}")
    if not trace and (reference is not None or diagnostics):
        raise ValueError("trace=False is for the plain filter without diagnostics (no path is traced)")
    if lag > 0 and reference is None:
        raise ValueError("ancestor sampling needs a reference path")
    if resample_below is not None:
        if isinstance(resample_below, bool) or not 0.0 < float(resample_below) <= 1.0:
            raise ValueError(f"resample_below must be None or a fraction in (0, 1], got {resample_below!r}")
        if lag > 0:
            raise ValueError("resample_below (adaptive resampling) is not combined with ancestor sampling")
    if log_phi.shape[0] != prior.K:
        raise ValueError(f"log_phi has {log_phi.shape[0]} topics, prior has {prior.K}")
    if final_draw not in FINAL_DRAWS:
        raise ValueError(f"final_draw must be one of {FINAL_DRAWS}, got {final_draw!r}")
    if final_draw == "metropolised" and (reference is None or lag > 0):
        raise ValueError("final_draw='metropolised' needs a reference path and no ancestor sampling (ancestor_lag=0): "
                         "it moves off the reference's own index")

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
    # Particles live flattened as rows b * P + p, so reordering them is one index_select.
    offsets = (torch.arange(B, device=device) * P).unsqueeze(-1)  # (B, 1)
    identity = torch.arange(P, device=device).expand(B, P)
    log_P = math.log(P)
    # Two host syncs per sweep instead of one per step: before the shortest document ends
    # every step is active (no masking); after the longest ends the look-ahead stops.
    min_len, max_len = (int(lengths.min()), int(lengths.max())) if B else (0, 0)
    if max_len > T:
        raise ValueError(f"lengths must be <= T={T} (the token width), got a length of {max_len}")
    # Sharing steps between resampled duplicates needs the survivor count on the host every
    # step: cheap on a CPU, a pipeline stall on a GPU.
    # With adaptive resampling most particles keep their own ancestor, so the survivors rarely
    # fall below the threshold and the count would be paid for nothing.
    dedup = device.type == "cpu" and resample_below is None
    skip_if_carried = SKIP_IF_ALL_CARRY and device.type == "cpu"
    if uniforms is None:
        uniforms = GeneratorUniforms(B, P, generator=generator, device=device, dtype=dtype)
    num_resample = resampler.num_uniforms(P)

    if start is None:
        state = LSTMState(
            torch.zeros(N, H, device=device, dtype=dtype), torch.zeros(N, H, device=device, dtype=dtype)
        )
        z_prev = torch.full((N,), prior.start_symbol, device=device, dtype=torch.long)
    else:
        s0, z0 = start
        state = LSTMState(s0.h.repeat_interleave(P, 0).contiguous(), s0.c.repeat_interleave(P, 0).contiguous())
        z_prev = z0.to(device=device, dtype=torch.long).repeat_interleave(P, 0)
    log_w = torch.full((B, P), -log_P, device=device, dtype=dtype)
    # Compact ancestry: int32 halves the (T, B, P) storage that dominates memory at scale.
    ancestors = torch.empty(T if trace else 0, B, P, dtype=torch.int32, device=device)
    topics = torch.empty(T if trace else 0, B, P, dtype=torch.int32, device=device)
    log_incr = torch.zeros(T, B, device=device, dtype=dtype)
    ess = torch.zeros(T, B, device=device, dtype=dtype)
    if reference is not None:
        reference = reference.to(device).clamp(0, K - 1)
        if lag > 0:
            # (T, N, 1): z*_t for every particle row b * P + p, laid out once for the look-ahead.
            ref_rows = reference.T.repeat_interleave(P, dim=1).unsqueeze(-1)

    for t in range(T):
        active = mask[:, t] if t >= min_len else None  # before the shortest document ends: all True
        # With ancestor sampling every candidate's pi_t is needed before resampling, so step
        # first and reorder the results; otherwise resample first and step only what survives
        # (see _step_resampled). Both give the same numbers: the step is a deterministic
        # function of the particle's history.
        step_first = t == 0 or (lag > 0 and reference is not None)
        if step_first:
            log_pi, state = prior.step(z_prev, state, weights)  # (N, K)
        if t == 0:
            a = identity
        else:
            u_res = uniforms.resample(t, num_resample)  # taken either way: the same stream
            if resample_below is not None:  # documents whose weights are still even keep their particles
                carry = ess[t - 1] >= float(resample_below) * P  # (B,)
                still = carry if t < min_len else carry | ~active
                # Most steps of adaptive resampling resample no document at all: then every
                # ancestor is its own particle, so skip the draw (a host read, so on a CPU only).
                all_carry = skip_if_carried and bool(still.all())
            else:
                all_carry = False
            if all_carry:
                a = identity
                log_pi, state = prior.step(z_prev, state, weights)  # step_first is False here
            else:
                if reference is None:
                    a = resampler(log_w, u_res)
                else:
                    if lag > 0:
                        look = _lookahead_log_prob(
                            prior, weights, state, log_pi.view(B, P, K), ref_rows, mask, t, min(t + lag, max_len),
                            min_len
                        )
                        pinned = inverse_cdf(log_w + look, uniforms.ancestor(t)).squeeze(-1)
                    else:
                        pinned = None  # the reference's own ancestor, 0
                    a = resampler.conditioned(log_w, u_res, pinned)
                if resample_below is not None:
                    a = torch.where(carry.unsqueeze(-1), identity, a)
                if t >= min_len:  # padding steps keep every particle where it is
                    a = torch.where(active.unsqueeze(-1), a, identity)
                flat = (a + offsets).view(-1)
                if step_first:
                    log_pi = log_pi.index_select(0, flat)
                    state = LSTMState(state.h.index_select(0, flat), state.c.index_select(0, flat))
                else:
                    log_pi, state = _step_resampled(prior, weights, z_prev, state, flat, dedup)
        # Fully adapted proposal and weight from one exp: gamma = pi * phi[:, x_t] is shifted by
        # its row max, its running sum is both the sampling CDF and (last entry) alpha. log_pi
        # is this step's own buffer (fresh from the step or the reordering), so it is reused.
        log_gamma = log_pi.view(B, P, K).add_(log_em[t].unsqueeze(1))  # (B, P, K)
        shift = log_gamma.amax(-1, keepdim=True)
        cdf = log_gamma.sub_(shift).exp_().cumsum_(-1)
        total = cdf[..., -1:]  # >= 1: the max entry contributes exp(0)
        log_alpha = (shift + total.log()).squeeze(-1)  # (B, P)
        z_t = search_cdf(cdf, uniforms.proposal(t), total).squeeze(-1)
        if reference is not None:
            z_t[:, 0] = reference[:, t]
        if resample_below is not None:
            # Carried (normalised) weights where no resampling happened, uniform where it did;
            # the increment is then the logsumexp itself: shift log P in so the code below applies.
            if t > 0:
                log_alpha = log_alpha + torch.where(carry.unsqueeze(-1), log_w + log_P, 0.0)
        # Weights were reset to uniform by resampling, so the predictive is the mean alpha.
        lse = torch.logsumexp(log_alpha, dim=-1)
        new_log_w = log_alpha - lse.unsqueeze(-1)
        w = new_log_w.exp()
        if t < min_len:
            # Written straight into their rows: the same numbers, one copy fewer each.
            log_w = new_log_w
            torch.sub(lse, log_P, out=log_incr[t])
            torch.sum(w.mul_(w), -1, out=ess[t]).reciprocal_()
        else:
            ess_t = (w * w).sum(-1).reciprocal_()
            log_w = torch.where(active.unsqueeze(-1), new_log_w, log_w)
            log_incr[t] = torch.where(active, lse - log_P, 0.0)
            ess[t] = torch.where(active, ess_t, 0.0)
        if trace:
            ancestors[t] = a
            topics[t] = z_t
        z_prev = z_t.view(-1)

    log_incr, ess = log_incr.T.contiguous(), ess.T.contiguous()
    final_w = log_w if final_log_potential is None else log_w + final_log_potential(state, z_prev)
    if final_draw == "metropolised":
        r = metropolised_index(final_w, uniforms.final(), uniforms.final_accept())
    else:
        r = inverse_cdf(final_w, uniforms.final())  # drawn either way: the same stream with trace=False
    particles = lineage = None
    if diagnostics:  # every particle traced back; the returned path is one of them
        particles, lineage = _trace_back(topics, ancestors, identity, return_lineage=True)
        path = particles.gather(1, r.long().unsqueeze(-1).expand(B, 1, T)).squeeze(1)
    elif trace:
        path = _trace_back(topics, ancestors, r).squeeze(1)
    path = path.masked_fill(~mask, 0) if trace else None
    result = SweepResult(path=path, log_Z=log_incr.sum(-1), log_incr=log_incr, ess=ess, log_weights=log_w,
                         chosen=r.squeeze(-1))
    if diagnostics:
        result.particles = particles.masked_fill(~mask.unsqueeze(1), 0)
        result.num_ancestors = _count_distinct(lineage).masked_fill(~mask, 0)
    return result


def metropolised_index(log_weights: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The final particle, ``(B, 1)`` long, by a Metropolised Gibbs step (Liu 1996) from index 0.

    In conditional SMC the returned index is a Gibbs step on the extended target, whose
    conditional law given the particles is the final weights ``W``, and the current index is the
    reference's, 0. Drawing from ``W`` stays at 0 with probability ``W_0``. Instead propose
    ``k != 0`` with probability ``W_k / (1 - W_0)`` (from ``u``) and accept it when
    ``v < (1 - W_0) / (1 - W_k)``: reversible for ``W`` (``W_i q(i, j) a(i, j) = W_i W_j min(1 / (1 -
    W_i), 1 / (1 - W_j))``, symmetric), so the sweep stays exact, and it leaves the reference
    whenever no other particle outweighs it (Peskun: never fewer moves than the Gibbs draw).

    Args:
        log_weights: ``(B, P)`` unnormalised final log weights (particle 0 the reference).
        u, v: ``(B, 1)`` uniforms for the proposal and the decision.
    """
    lw = log_weights.double()
    W = torch.softmax(lw, -1)
    rest = W[:, 1:].sum(-1, keepdim=True)  # 1 - W_0, summed so it stays accurate when W_0 is near 1
    others = lw.clone()
    others[:, 0] = float("-inf")
    k = inverse_cdf(others.masked_fill(rest == 0, 0.0), u)  # rows without another particle: rejected below
    accept = v.double() * (rest - W.gather(-1, k) + W[:, :1]) < rest  # 1 - W_k = W_0 + (1 - W_0) - W_k
    return torch.where(accept, k, torch.zeros_like(k))


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
    uniforms: UniformSource | None = None,
    generator: torch.Generator | None = None,
    diagnostics: bool = False,
    trace: bool = True,
) -> SweepResult:
    """Fully adapted particle filter (no reference): ``log Zhat`` and predictive increments
    (``trace=False``: no path, memory linear in ``T`` without the ``P`` factor)."""
    return csmc_sweep(
        prior,
        log_phi,
        x,
        lengths,
        num_particles,
        None,
        resampling=resampling,
        uniforms=uniforms,
        generator=generator,
        diagnostics=diagnostics,
        trace=trace,
    )
