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

**A cheaper exact variant** (``future_lag=L``): scoring the whole fixed future for every particle
is most of the sweep's cost. With ``future_lag=L`` the particles' final weights score only the
first ``L`` future positions, so the block update is conditional SMC for a *different* target
``p~(z_{s:e}) ∝ p(z_{s:e} | outside) / p(z*_{e+L:n} | z_{<e+L})``; its new block path is then a
Metropolis-Hastings proposal, accepted with probability
``min(1, p(z*_{e+L:n} | z'_{<e+L}) / p(z*_{e+L:n} | z_{<e+L}))``: the rest of the future, scored
for the proposed path only (one row per document instead of ``P``; the current path's terms are
kept through the sweep, :class:`_CurrentTail`), continuing from the chosen particle's own LSTM
state after its ``L`` scored positions, so the pass starts at ``e + L``, not at the block's start. Conditional
SMC is reversible for its own target (Chopin and Singh 2015), so this leaves the same block
conditional invariant as the full-future weights: still exact, no truncation in the target.
(Ancestor sampling, whose reversibility is not established, is not used inside blocks.)

**Adaptive resampling** (``resample_below=r``): inside a block the particles are resampled only
when their effective sample size falls below ``r * P``; otherwise each keeps its own ancestor
and carries its weight on. Each resampling step is where lineages merge onto the reference, so
the early positions of a block move more often. The decision is a symmetric function of the
weights, so this is still conditional SMC for the same target (Huggins and Roy 2015, the
conditional adaptive-resampling particle filter) and reversible for it (the joint law of the
reference and the drawn path is symmetric, as in Chopin and Singh 2015), so the corrections
above stay exact.

Shapes: ``B`` documents, ``T`` padded length, ``P`` particles, ``K`` topics, ``H`` hidden units.
"""

from __future__ import annotations

import torch

from ..model import LSTMPrior, LSTMState, StepWeights
from ..runtime import hot_loop, no_autograd
from .csmc import SweepResult, csmc_sweep

__all__ = ["blocked_csmc_sweep", "block_starts", "future_log_prob"]


def block_starts(T: int, block_size: int, stride: int) -> list[tuple[int, int]]:
    """The blocks ``[(s, e), ...]`` covering ``[0, T)``, in sweep order.

    The grid starts ``block_size - stride`` before the document (the first block is cut at 0),
    so with overlapping blocks every position lies in the *later* part of some block, away
    from the block start where the particles' paths have coalesced onto the reference.
    """
    if block_size < 1 or not 1 <= stride <= block_size:
        raise ValueError(f"need block_size >= 1 and 1 <= stride <= block_size, got {block_size}, {stride}")
    blocks, s = [], stride - block_size
    while True:
        blocks.append((max(s, 0), min(s + block_size, T)))
        if s + block_size >= T:
            return blocks
        s += stride


@no_autograd
def future_log_prob(prior: LSTMPrior, state: LSTMState, z_last: torch.Tensor, future: torch.Tensor,
                    mask: torch.Tensor, weights: StepWeights | None = None,
                    return_state: bool = False) -> torch.Tensor | tuple[torch.Tensor, LSTMState]:
    """``sum_s log p(future_s | ...)`` from each row's LSTM ``state`` after it consumed ``z_last``'s
    predecessor: the row feeds ``z_last, future_0, future_1, ...`` and scores ``future``.

    Args:
        state: ``(N, H)`` states that produced the row's last distribution (before ``z_last``).
        z_last: ``(N,)`` the row's last topic.
        future: ``(N, F)`` the fixed future topics; mask ``(N, F)`` its real positions.
        weights: optional :meth:`~pyro_ssl.model.LSTMPrior.step_weights` (computed when omitted).
        return_state: also return the rows' states ``(N, H)`` after the pass: they have consumed
            every topic before ``future``'s last (``z_last`` itself when ``F = 0``), so a pass
            over what follows can continue from them fed ``future[:, -1]``.
    Returns:
        ``(N,)``; 0 for rows without a future. With ``return_state``, ``(total, state)``.
    """
    N, F = future.shape
    total = torch.zeros(N, device=future.device, dtype=prior.dtype)
    if F == 0:
        return (total, state) if return_state else total
    # The particle sweep's own step, not torch.lstm: these are hundreds of rows over a few
    # positions, where oneDNN's LSTM was the slower of the two (it rebuilds its kernel for every
    # new row count). Rows are not deduplicated: with adaptive resampling a block's final
    # particles are rarely copies, and the search for copies cost more than it saved
    # (docs/performance.md, 2026-12-04).
    w = prior.step_weights() if weights is None else weights
    z = z_last
    for f in range(F):
        log_pi, state = prior.step(z, state, w)
        z = future[:, f].clamp(0, prior.K - 1)  # padding may hold anything; it is masked out
        total += log_pi.gather(-1, z.unsqueeze(-1)).squeeze(-1).masked_fill(~mask[:, f], 0.0)
    return (total, state) if return_state else total


REST_WINDOW = 256
"""Positions the correction's LSTM passes cover per call (bounds their memory on long documents)."""

_WINDOW_QUANTUM = 32
"""A pass's last, partial window is padded to a multiple of this many positions: oneDNN keeps a
compiled LSTM for every sequence length it meets (one per length up to REST_WINDOW took 20 MB
more peak memory on a 5,000-token document; a multiple of 8 saved 1-2% of an exact epoch at the
seed size but took a 20,000-token document's exact epoch to 499 MB against 486 MB,
``benchmarks/memory.py --exact --tokens 20000 --score-particles 100``, 2026-12-04)."""


def _path_log_probs(prior: LSTMPrior, state: LSTMState, last: torch.Tensor, path: torch.Tensor,
                    a: int, b: int) -> torch.Tensor:
    """``log p(path_t | path_{<t})`` for ``t = a .. b-1``, ``(N, b - a)``: rows continue from
    ``state`` (which has consumed ``path_{<a-1}``) fed ``last`` (``path_{a-1}``, or the start
    symbol at ``a = 0``) and then ``path_{a:b-1}``; :data:`REST_WINDOW` positions per call."""
    out = []
    for w in range(a, b, REST_WINDOW):
        v = min(w + REST_WINDOW, b)
        inputs, targets = torch.cat([last.unsqueeze(1), path[:, w : v - 1]], 1), path[:, w:v]
        pad = -(v - w) % _WINDOW_QUANTUM
        if pad:  # only the last window is partial, so the state after the padding is never used
            inputs, targets = (torch.nn.functional.pad(u, (0, pad)) for u in (inputs, targets))
        lp, state = prior.continuation_log_prob(state, inputs, targets)
        out.append(lp[:, : v - w])
        last = path[:, v - 1]
    return torch.cat(out, 1)


class _CurrentTail:
    """The current path's prior log-probabilities, kept current through a sweep, so the
    ``future_lag`` correction runs the *proposed* row only (the current path's terms are read).

    ``lp[b, t] = log p(z_t | z_{<t})`` ``(B, T)`` of document ``b``'s current path, valid at every
    position a later block's correction reads (at or after its ``cut``, which grows block by
    block). Filled by one pass over the reference when the sweep starts; :meth:`log_ratio` scores
    a block's proposal and :meth:`keep` moves the kept proposals' numbers in.
    """

    def __init__(self, prior: LSTMPrior, z: torch.Tensor):
        state, z0 = prior.initial_state((z.shape[0],))
        self.lp = _path_log_probs(prior, state, z0, z, 0, z.shape[1])
        self._pending = None

    def log_ratio(self, prior: LSTMPrior, at_cut: LSTMState, idx: torch.Tensor, cut: int, current: torch.Tensor,
                  proposed: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``log p(z*_{cut:n} | proposed_{<cut}) - log p(z*_{cut:n} | current_{<cut})`` per document, float64.

        The proposed row continues from its own LSTM state ``at_cut`` ``(B_i, H)``, which has
        consumed ``proposed_{<cut-1}`` (the block's chosen particle after scoring the first future
        positions, :func:`future_log_prob`), fed ``proposed_{cut-1}``, over ``cut .. n-1``; the
        current path's terms are read from :attr:`lp`. ``idx`` ``(B_i,)``: the documents' batch
        rows; ``current``, ``proposed``: ``(B_i, T)``; lengths ``(B_i,)``. Documents whose block
        did not change get 0 without a pass.
        """
        out = torch.zeros(len(idx), device=current.device, dtype=torch.float64)
        changed = ((proposed != current).any(-1) & (lengths > cut)).nonzero().squeeze(-1)
        self._pending = None
        if len(changed) == 0:
            return out
        rows, n = idx[changed], lengths[changed]
        end = int(n.max())
        lp = _path_log_probs(prior, LSTMState(at_cut.h[changed], at_cut.c[changed]), proposed[changed, cut - 1],
                             proposed[changed], cut, end)
        scored = torch.arange(cut, end, device=current.device) < n.unsqueeze(-1)
        diff = (lp.to(torch.float64) - self.lp[rows, cut:end].to(torch.float64)).masked_fill(~scored, 0.0).sum(-1)
        out[changed] = diff
        self._pending = (changed, rows, lp, cut, end)
        return out

    def keep(self, keep: torch.Tensor) -> None:
        """The block's decisions ``keep`` ``(B_i,)`` bool (rows as in :meth:`log_ratio`): the kept
        proposals become the current paths, so their terms replace the cache from ``cut`` on
        (later blocks read only there)."""
        if self._pending is None:
            return
        changed, rows, lp, cut, end = self._pending
        self._pending = None
        kept = keep[changed]
        self.lp[rows[kept], cut:end] = lp[kept]


@no_autograd
@hot_loop
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
    accept=None,
    future_lag: int | None = None,
    block_proposal=None,
    resample_below: float | None = None,
    resampling: str = "multinomial",
    final_draw: str = "gibbs",
) -> SweepResult:
    """One sweep of blocked conditional SMC over a batch of documents (exact; see module doc).

    Args:
        x, reference: ``(B, T)`` words and the current topic paths; lengths ``(B,)``.
        block_size, stride: the block grid (:func:`block_starts`).
        uniforms: ``fn(block_index, start, block_lengths, block_T, rows) -> UniformSource`` giving
            each block's uniforms (e.g. keyed by document), or ``None`` for fresh draws from
            ``generator``. ``rows`` ``(B_i,)`` are the batch rows of the documents that reach the
            block (shorter ones do not), in the order of ``block_lengths``.
        log_emission: optional ``(B, T, K)`` emission log-probabilities (else ``log_phi[:, x]``;
            unused with ``block_proposal``).
        accept: optional ``fn(block_index, rows, current (B_i, T), proposed (B_i, T), log_ratio (B_i,))
            -> (B_i,) bool`` deciding, per document reaching the block, whether its block update is
            kept: a Metropolis-Hastings correction towards another target (each block update is a
            conditional-SMC kernel, reversible for its block conditional; see
            :mod:`pyro_ssl.infer.collapsed`). ``log_ratio`` (float64) is the sweep's own part of
            the log acceptance ratio (the ``future_lag`` correction; zeros without it), which the
            decision must add to its own. It is called for every block of the grid of ``T``,
            with no rows where no document reaches it. ``None`` keeps every update, or with
            ``future_lag`` decides by ``log_ratio`` alone (uniforms from ``UniformSource.accept``).
        future_lag: ``None`` scores the whole fixed future in every particle's weight; an integer
            ``L >= 0`` scores its first ``L`` positions there and corrects for the rest by a
            Metropolis-Hastings step (exact either way; see the module doc).
        block_proposal: optional ``fn(rows, s, e, current (B_i, T)) -> (B_i, e - s, K)`` float64: each
            block's emission table, which may depend on the path outside the block (fixed during
            the block). Its ratio ``log q(current) - log q(proposed)`` over the block is added to
            ``log_ratio``, so ``accept`` (required) judges against its own target alone (e.g.
            :func:`~pyro_ssl.infer.collapsed.visit_order_log_emission`).
        resample_below: adaptive resampling inside the blocks (:func:`~pyro_ssl.smc.csmc.csmc_sweep`):
            resample only when the effective sample size falls below this fraction of ``P``.
        resampling: the conditional resampling scheme inside the blocks
            (:mod:`~pyro_ssl.smc.resampling`; ``"systematic"`` keeps more lineages alive).
        final_draw: how each block's new path is chosen from its final weights
            (:data:`~pyro_ssl.smc.csmc.FINAL_DRAWS`; ``"metropolised"`` leaves the current path more often).
    Returns:
        :class:`~pyro_ssl.smc.csmc.SweepResult` with ``path``; ``ess`` and ``num_ancestors``
        ``(B, T)`` are averaged over the blocks covering each position; ``log_Z`` and
        ``log_incr`` are zeros (a blocked sweep estimates no evidence).
    """
    B, T = x.shape
    P = int(num_particles)
    if future_lag is not None and (isinstance(future_lag, bool) or int(future_lag) != future_lag or future_lag < 0):
        raise ValueError(f"future_lag must be None or an integer >= 0, got {future_lag!r}")
    if block_proposal is not None and accept is None:
        raise ValueError("block_proposal is a Metropolis-Hastings proposal: it needs accept")
    device, dtype = prior.device, prior.dtype
    x, lengths = x.to(device), lengths.to(device)
    z = reference.to(device).clone()
    if log_emission is None and block_proposal is None:
        log_emission = log_phi.to(device=device, dtype=dtype).T[x]
    ess = torch.zeros(B, T, device=device, dtype=dtype)
    anc = torch.zeros(B, T, device=device, dtype=dtype)
    cover = torch.zeros(B, T, device=device, dtype=dtype)
    pos = torch.arange(T, device=device)
    weights = prior.step_weights()
    # The reference's LSTM state that gives p(z_{s-1} | z_<{s-1}), carried from block to block:
    # the prefix before a block start never changes afterwards, so only the ``stride`` positions
    # between consecutive starts are re-run (T one-step updates per sweep in all).
    carried, carried_at = prior.initial_state((B,))[0], 0  # state giving p(z_{carried_at - 1}); 0: none yet
    z_in = torch.full((B,), prior.start_symbol, device=device, dtype=torch.long)
    tail = _CurrentTail(prior, z) if future_lag is not None else None
    for i, (s, e) in enumerate(block_starts(T, block_size, stride)):
        block_len = (lengths - s).clamp(0, e - s)
        live = block_len > 0
        if not bool(live.any()):
            if accept is None:
                break
            # An acceptance step may be collective (data-parallel): every block takes part.
            none = live.nonzero().squeeze(-1)
            accept(i, none, z[none], z[none], torch.zeros(0, device=device, dtype=torch.float64))
            continue
        for t in range(carried_at, s):  # advance to the state giving p(z_{s-1})
            _, carried = prior.step(z_in, carried, weights)
            z_in = z[:, t]
        # Now ``carried`` gives p(z_{s-1}) and has consumed z_{s-2}; z_in = z_{s-1}.
        carried_at = s
        idx = live.nonzero().squeeze(-1)  # documents reaching this block
        zb, nb = z[idx], lengths[idx]
        start = None
        if s > 0:
            start = (LSTMState(carried.h[idx], carried.c[idx]), z_in[idx])
        # The future scored in the particles' weights: all of it, or its first future_lag positions.
        cut = T if future_lag is None else min(e + int(future_lag), T)
        future = zb[:, e:cut]
        fmask = pos[e:cut].unsqueeze(0) < nb.unsqueeze(-1)

        ends = {}  # the particles' states after the scored future: the correction continues from one

        def potential(state, z_last, future=future, fmask=fmask, ends=ends):
            Bi = future.shape[0]
            f = future.repeat_interleave(P, 0)
            m = fmask.repeat_interleave(P, 0)
            total, ends["state"] = future_log_prob(prior, state, z_last, f, m, weights, return_state=True)
            return total.view(Bi, P)

        u = uniforms(i, s, block_len[idx], e - s, idx.cpu()) if uniforms is not None else None
        q = None if block_proposal is None else block_proposal(idx, s, e, zb)
        res = csmc_sweep(prior, log_phi, x[idx, s:e], block_len[idx], P, zb[:, s:e], resampling=resampling,
                         uniforms=u, generator=generator, diagnostics=True,
                         log_emission=log_emission[idx, s:e] if q is None else q.to(dtype), start=start,
                         final_log_potential=potential, resample_below=resample_below, final_draw=final_draw)
        bm = pos[s:e].unsqueeze(0) < (s + block_len[idx]).unsqueeze(-1)  # real positions of the block
        new = torch.where(bm, res.path, z[idx, s:e])
        if accept is not None or future_lag is not None:
            proposed = zb.clone()
            proposed[:, s:e] = new
            log_ratio = torch.zeros(len(idx), device=device, dtype=torch.float64)
            if cut < T:  # the chosen particle's own state after the scored future
                rows = torch.arange(len(idx), device=device) * P + res.chosen
                at_cut = LSTMState(ends["state"].h[rows], ends["state"].c[rows])
                log_ratio = tail.log_ratio(prior, at_cut, idx, cut, zb, proposed, nb)
            if q is not None:  # the proposal's table: its ratio is this kernel's, not the acceptor's
                old_q, new_q = (q.gather(-1, p.unsqueeze(-1)).squeeze(-1) for p in (zb[:, s:e], new))
                log_ratio = log_ratio - (new_q - old_q).masked_fill(~bm, 0.0).sum(-1)
            if accept is not None:
                keep = accept(i, idx, zb, proposed, log_ratio)
            else:
                uu = u.accept() if u is not None else torch.rand(len(idx), 1, generator=generator, device=device)
                keep = uu.squeeze(-1).to(torch.float64).log() < log_ratio
            new = torch.where(keep.unsqueeze(-1), new, zb[:, s:e])
            if cut < T:
                tail.keep(keep)
        z[idx, s:e] = new
        ess[idx, s:e] += res.ess
        anc[idx, s:e] += res.num_ancestors.to(dtype)
        cover[idx, s:e] += bm.to(dtype)
    mask = pos.unsqueeze(0) < lengths.unsqueeze(-1)
    c = cover.clamp_min(1)
    zeros = torch.zeros(B, device=device, dtype=dtype)
    return SweepResult(path=z.masked_fill(~mask, 0), log_Z=zeros, log_incr=torch.zeros_like(ess),
                       ess=ess / c, log_weights=torch.zeros(B, P, device=device, dtype=dtype),
                       num_ancestors=anc / c)
