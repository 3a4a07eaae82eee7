"""Blocked conditional SMC: an exact particle-Gibbs kernel for the LSTM prior at any length.

Ancestor sampling needs each candidate's prior probability of the reference's *whole* future,
which for an LSTM costs a pass to the document's end per step; truncating it (``ancestor_lag``)
makes the kernel an approximation. Blocking (Singh, Lindsten and Moulines 2017) avoids both:
the sweep updates one block of positions ``[s, e)`` at a time, conditioned on the reference
path outside it. Within the block it is plain conditional SMC started from the reference's LSTM
state at ``s`` (the prefix is fixed, so the state is known); at the block's end each particle's
weight is multiplied by the prior probability of the fixed future ``z*_{e:n}`` under *its own*
LSTM state (one fused LSTM pass over the future, batched over documents and particles), and the
block's new path is drawn from those weights. Emission terms of the future do not depend on the
particle and cancel. Each block update is a conditional-SMC kernel that leaves
``p(z_{s:e} | z_{outside}, x, theta, phi)`` invariant, so the whole sweep leaves ``p(z | x)``
invariant: no truncation.

Blocks of ``block_size`` start every ``stride`` positions (``stride < block_size`` overlaps
them, so a position near one block's start, where particle paths have coalesced, is near the
middle or end of the next block).

Shapes: ``B`` documents, ``T`` padded length, ``P`` particles, ``K`` topics, ``H`` hidden units.
"""

from __future__ import annotations

import torch

from ..model import LSTMPrior, LSTMState
from .csmc import SweepResult, csmc_sweep

__all__ = ["blocked_csmc_sweep", "block_starts", "reference_states", "future_log_prob"]


def block_starts(T: int, block_size: int, stride: int) -> list[int]:
    """First positions of the blocks covering ``[0, T)``: ``0, stride, 2 stride, ...`` while a block
    still covers new positions."""
    if block_size < 1 or not 1 <= stride <= block_size:
        raise ValueError(f"need block_size >= 1 and 1 <= stride <= block_size, got {block_size}, {stride}")
    starts = [0]
    while starts[-1] + block_size < T:
        starts.append(starts[-1] + stride)
    return starts


@torch.no_grad()
def reference_states(prior: LSTMPrior, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM states along ``z`` ``(B, T)``: ``h, c`` each ``(B, T + 1, H)``.

    Entry ``t + 1`` is the state that gives ``p(z_t | z_<t)`` (after consuming the start symbol
    and ``z_0, ..., z_{t-1}``); entry 0 is the zero state. ``nn.LSTM`` returns only the last
    cell state, so the one-step cell is run along ``z``.
    """
    B, T = z.shape
    H = prior.hidden_size
    table = prior.step_weights()
    h = torch.zeros(B, T + 1, H, device=z.device, dtype=prior.dtype)
    c = torch.zeros_like(h)
    state = LSTMState(h[:, 0], c[:, 0])
    z_prev = torch.full((B,), prior.start_symbol, device=z.device, dtype=torch.long)
    for t in range(T):
        _, state = prior.step(z_prev, state, table)
        h[:, t + 1], c[:, t + 1] = state.h, state.c
        z_prev = z[:, t]
    return h, c


@torch.no_grad()
def future_log_prob(prior: LSTMPrior, state: LSTMState, z_last: torch.Tensor, future: torch.Tensor,
                    mask: torch.Tensor) -> torch.Tensor:
    """``sum_s log p(future_s | ...)`` from each row's LSTM ``state`` after it consumed ``z_last``'s
    predecessor: the row feeds ``z_last, future_0, future_1, ...`` and scores ``future``.

    Args:
        state: ``(N, H)`` states that produced the row's last distribution (before ``z_last``).
        z_last: ``(N,)`` the row's last topic.
        future: ``(N, F)`` the fixed future topics; mask ``(N, F)`` its real positions.
    Returns:
        ``(N,)``; 0 for rows without a future.
    """
    N, F = future.shape
    if F == 0:
        return torch.zeros(N, device=future.device, dtype=prior.dtype)
    inputs = torch.cat([z_last.unsqueeze(1), future[:, :-1]], dim=1).clamp(0, prior.K)
    s, _ = prior.lstm(prior.embed(inputs), (state.h.unsqueeze(0).contiguous(), state.c.unsqueeze(0).contiguous()))
    logp = torch.log_softmax(prior.out(s), dim=-1).gather(-1, future.clamp(0, prior.K - 1).unsqueeze(-1)).squeeze(-1)
    return logp.masked_fill(~mask, 0.0).sum(-1)


@torch.no_grad()
def blocked_csmc_sweep(
    prior: LSTMPrior,
    log_phi: torch.Tensor,
    x: torch.Tensor,
    lengths: torch.Tensor,
    num_particles: int,
    reference: torch.Tensor,
    *,
    block_size: int = 20,
    stride: int = 10,
    uniforms=None,
    generator: torch.Generator | None = None,
    log_emission: torch.Tensor | None = None,
) -> SweepResult:
    """One sweep of blocked conditional SMC over a batch of documents (exact; see module doc).

    Args:
        x, reference: ``(B, T)`` words and the current topic paths; lengths ``(B,)``.
        block_size, stride: the block grid (:func:`block_starts`).
        uniforms: ``fn(block_index, start, block_lengths, block_T) -> UniformSource`` giving each
            block's uniforms (e.g. keyed by document), or ``None`` for fresh draws from
            ``generator``.
        log_emission: optional ``(B, T, K)`` emission log-probabilities (else ``log_phi[:, x]``).
    Returns:
        :class:`~pyro_ssl.smc.csmc.SweepResult` with ``path``; ``ess`` and ``num_ancestors``
        ``(B, T)`` are averaged over the blocks covering each position; ``log_Z`` and
        ``log_incr`` are zeros (a blocked sweep estimates no evidence).
    """
    B, T = x.shape
    P = int(num_particles)
    device, dtype = prior.device, prior.dtype
    x, lengths = x.to(device), lengths.to(device)
    z = reference.to(device).clone()
    if log_emission is None:
        log_emission = log_phi.to(device=device, dtype=dtype).T[x]
    ess = torch.zeros(B, T, device=device, dtype=dtype)
    anc = torch.zeros(B, T, device=device, dtype=dtype)
    cover = torch.zeros(B, T, device=device, dtype=dtype)
    pos = torch.arange(T, device=device)
    for i, s in enumerate(block_starts(T, block_size, stride)):
        e = min(s + block_size, T)
        block_len = (lengths - s).clamp(0, e - s)
        live = block_len > 0
        if not bool(live.any()):
            break
        idx = live.nonzero().squeeze(-1)  # documents reaching this block
        zb, nb = z[idx], lengths[idx]
        start = None
        if s > 0:
            # The sweep steps z_{s-1} from the state that gave p(z_{s-1} | z_<{s-1}).
            h, c = reference_states(prior, zb[:, :s])
            start = (LSTMState(h[:, s].contiguous(), c[:, s].contiguous()), zb[:, s - 1])
        future = zb[:, e:]
        fmask = pos[e:].unsqueeze(0) < nb.unsqueeze(-1)

        def potential(state, z_last, future=future, fmask=fmask):
            Bi = future.shape[0]
            f = future.repeat_interleave(P, 0)
            m = fmask.repeat_interleave(P, 0)
            return future_log_prob(prior, state, z_last, f, m).view(Bi, P)

        u = uniforms(i, s, block_len[idx], e - s) if uniforms is not None else None
        res = csmc_sweep(prior, log_phi, x[idx, s:e], block_len[idx], P, zb[:, s:e], resampling="multinomial",
                         uniforms=u, generator=generator, diagnostics=True,
                         log_emission=log_emission[idx, s:e], start=start, final_log_potential=potential)
        bm = pos[s:e].unsqueeze(0) < (s + block_len[idx]).unsqueeze(-1)  # real positions of the block
        z[idx, s:e] = torch.where(bm, res.path, z[idx, s:e])
        ess[idx, s:e] += res.ess
        anc[idx, s:e] += res.num_ancestors.to(dtype)
        cover[idx, s:e] += bm.to(dtype)
    mask = pos.unsqueeze(0) < lengths.unsqueeze(-1)
    c = cover.clamp_min(1)
    zeros = torch.zeros(B, device=device, dtype=dtype)
    return SweepResult(path=z.masked_fill(~mask, 0), log_Z=zeros, log_incr=torch.zeros_like(ess),
                       ess=ess / c, log_weights=torch.zeros(B, P, device=device, dtype=dtype),
                       num_ancestors=anc / c)
