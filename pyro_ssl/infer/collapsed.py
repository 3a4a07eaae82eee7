"""The collapsed E-step: topic paths from ``p(z | x, theta)`` with ``phi`` integrated out, exactly.

With ``phi ~ Dirichlet(beta)`` integrated out, a document's emissions given every other
assignment are a Polya urn: token ``t`` of document ``d`` has probability
``(n^{-d}_{k w} + c_t + beta) / (n^{-d}_k + c'_t + V beta)`` under topic ``k``, where ``n^{-d}``
counts the other documents and ``c_t``, ``c'_t`` count the *earlier tokens of the same
document* with the same (topic, word) and the same topic. That is not a fixed emission table,
so conditional SMC cannot sweep under it directly; it is used here as the target of a
Metropolis-Hastings step whose proposal is a conditional-SMC update:

1. every document of a minibatch ``B`` is swept (plain or blocked CSMC) under the fixed table
   ``phi^{-B}`` from the documents *outside* the minibatch, which does not change while the
   minibatch is updated. Conditional SMC is reversible for its own target (Chopin and Singh
   2015), here ``p~(z_d) ∝ p(z_d | theta) prod_t phi^{-B}_{z_t}[x_t]``;
2. the documents are then visited one after another (in the minibatch's order) and document
   ``d``'s proposal ``z'`` is accepted with probability
   ``min(1, [urn(z') / q(z')] / [urn(z) / q(z)])``, where ``urn`` is the Polya urn above with
   ``n^{-d}`` the *current* counts of every other document (those already visited included)
   and ``q(z) = prod_t phi^{-B}_{z_t}[x_t]``. The LSTM prior cancels.

A reversible proposal corrected by this ratio leaves the collapsed conditional of each document
invariant (Metropolis-Hastings with a ``p~``-reversible proposal kernel), so every minibatch
update leaves ``p(z | x, theta)`` invariant: no approximation. The sequential visit is what
makes parallel proposals exact; it costs a few small tensor operations per document.

Shapes: ``G`` independent groups (one in a fit; independent chains in tests), ``S`` documents
per group visited in order, ``T`` padded length, ``K`` topics, ``V`` words.
"""

from __future__ import annotations

import torch

__all__ = ["within_document_counts", "urn_log_density", "collapsed_mh", "proposal_log_emission"]


def within_document_counts(z: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, K: int, V: int):
    """Counts of earlier tokens of the same row: same (topic, word) ``c`` and same topic ``c'``.

    Args:
        z, x: ``(N, T)`` topics and words; mask ``(N, T)`` real positions.
    Returns:
        ``(c_pair, c_topic)``, each ``(N, T)`` float64 (0 at padding). Linear memory in ``T``:
        ``c_pair`` by a stable sort of the (topic, word) keys, ``c_topic`` by a cumulative sum.
    """
    N, T = z.shape
    pos = torch.arange(T, device=z.device).expand(N, T)
    # Padding gets keys no real token has, one per position, so it never joins a run.
    key = torch.where(mask, z.long() * V + x.long(), K * V + pos)
    sk, perm = torch.sort(key, dim=1, stable=True)
    starts = torch.ones_like(mask)
    starts[:, 1:] = sk[:, 1:] != sk[:, :-1]
    run_start = torch.where(starts, pos, torch.zeros_like(pos)).cummax(1).values
    c_pair = torch.empty_like(pos).scatter_(1, perm, pos - run_start)
    oh = torch.nn.functional.one_hot(z.long().clamp(0, K - 1), K) * mask.unsqueeze(-1)  # (N, T, K)
    c_topic = (oh.cumsum(1) - oh).gather(2, z.long().clamp(0, K - 1).unsqueeze(-1)).squeeze(-1)
    m = mask.to(torch.float64)
    return c_pair.to(torch.float64) * m, c_topic.to(torch.float64) * m


def urn_log_density(n_kw: torch.Tensor, n_k: torch.Tensor, c_pair: torch.Tensor, c_topic: torch.Tensor,
                    mask: torch.Tensor, beta: float, V: int) -> torch.Tensor:
    """``sum_t log((n_{z_t x_t} + c_t + beta) / (n_{z_t} + c'_t + V beta))`` over real positions.

    Args:
        n_kw, n_k: ``(N, T)`` the other documents' counts at each token's (topic, word) and topic.
        c_pair, c_topic: ``(N, T)`` from :func:`within_document_counts`; mask ``(N, T)``.
    Returns:
        ``(N,)`` float64: the log Polya-urn probability of the row's words given its topics.
    """
    lp = (n_kw + c_pair + beta).log() - (n_k + c_topic + V * beta).log()
    return torch.where(mask, lp, torch.zeros_like(lp)).sum(-1)


def proposal_log_emission(counts_outside: torch.Tensor, x: torch.Tensor, beta: float) -> torch.Tensor:
    """The proposal's emission table ``log phi^{-B}_k[x_t]``, ``(..., T, K)`` for words ``x`` ``(..., T)``.

    ``counts_outside``: ``(K, V)`` counts of the documents outside the minibatch, or ``(G, K, V)``
    one per group (then ``x`` is ``(G, S, T)``).
    """
    rest = counts_outside.to(torch.float64) + beta
    log_phi = rest.log() - rest.sum(-1, keepdim=True).log()  # (..., K, V)
    if log_phi.ndim == 2:
        return log_phi.T[x]
    G, S, T = x.shape
    return log_phi.gather(2, x.reshape(G, 1, S * T).expand(G, log_phi.shape[1], S * T)).transpose(1, 2).reshape(
        G, S, T, -1)


def _gamma_ratio(n: torch.Tensor, keys: torch.Tensor, delta: torch.Tensor, offset: float) -> torch.Tensor:
    """``sum over distinct keys k of lgamma(n_k + D_k + offset) - lgamma(n_k + offset)``, per row.

    Args:
        n: ``(G, M)`` float64 current counts (every ``n_k + partial sum >= 0``).
        keys: ``(G, E)`` long indices into ``n``; delta ``(G, E)`` float64 changes, ``D_k`` their
            sum per key. Entries of one key are telescoped in sorted order, so each key is
            counted once without forming its total.
    Returns:
        ``(G,)`` float64.
    """
    E = keys.shape[1]
    sk, perm = torch.sort(keys, dim=1, stable=True)
    sd = delta.gather(1, perm)
    pos = torch.arange(E, device=keys.device).expand_as(sk)
    starts = torch.ones_like(sk, dtype=torch.bool)
    starts[:, 1:] = sk[:, 1:] != sk[:, :-1]
    run_start = torch.where(starts, pos, torch.zeros_like(pos)).cummax(1).values
    cs = sd.cumsum(1)
    before = (cs - sd).gather(1, run_start)  # the cumulative sum just before each key's run
    after = cs - before  # the key's partial change up to and including this entry
    base = n.gather(1, sk) + offset
    return (torch.lgamma(base + after) - torch.lgamma(base + after - sd)).sum(1)


@torch.no_grad()
def collapsed_mh(counts: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, current: torch.Tensor,
                 proposed: torch.Tensor, log_q: torch.Tensor, beta: float, u: torch.Tensor,
                 extra: torch.Tensor | None = None) -> torch.Tensor:
    """Sequential Metropolis-Hastings acceptance of proposed paths under the collapsed posterior.

    Visits documents ``s = 0 .. S-1`` in order (all groups at once); document ``s`` is judged
    against the current counts of every other document, which include the decisions already
    taken for ``0 .. s-1``.

    The urn's probability of a document depends on its paths only through its own (topic, word)
    counts ``m`` (the tokens are exchangeable): ``prod_{kw} Gamma(n_kw + m_kw + beta) /
    Gamma(n_kw + beta)`` over ``prod_k Gamma(n_k + m_k + V beta) / Gamma(n_k + V beta)``, with
    ``n`` the other documents' counts. ``n + m`` are the current counts ``N`` (the document
    included), so the ratio of the proposal to the current path needs only ``N`` and the change
    ``Delta`` of ``m`` at the positions that differ: ``sum lgamma(N_kw + Delta_kw + beta) -
    lgamma(N_kw + beta)`` minus the same over topics with ``V beta``. Only the columns where some
    proposal differs are read, so after a block of the blocked kernel the step costs the block's
    width, not the document's.

    Args:
        counts: ``(G, K, V)`` float64 topic-word counts of *all* documents at their current paths
            (these included); updated in place to the counts after the decisions.
        x: ``(G, S, T)`` words; mask ``(G, S, T)`` real positions.
        current, proposed: ``(G, S, T)`` current paths and the proposals (equal outside what the
            proposal updated).
        log_q: ``(G, S, T, K)`` the proposal's emission table (:func:`proposal_log_emission`), which
            the proposal kernel is reversible for (with the LSTM prior).
        u: ``(G, S)`` uniforms for the decisions.
        extra: optional ``(G, S)`` float64 further log-ratio terms of the proposal kernel, added to
            each decision (the blocked sweep's ``future_lag`` correction).
    Returns:
        ``(G, S)`` bool, accepted (a proposal equal to the current path counts as accepted).
    """
    G, S, T = x.shape
    K, V = counts.shape[-2:]
    accepted = torch.ones(G, S, dtype=torch.bool, device=x.device)
    differs = (current != proposed) & mask
    cols = differs.reshape(-1, T).any(0).nonzero().squeeze(-1)
    if len(cols) == 0:
        return accepted
    lo, hi = int(cols.min()), int(cols.max()) + 1
    d = differs[..., lo:hi].to(torch.float64)  # (G, S, W)
    zc, zp = current[..., lo:hi].long(), proposed[..., lo:hi].long()
    xw = x[..., lo:hi].long()
    lq = log_q[..., lo:hi, :].to(torch.float64)
    q_ratio = ((lq.gather(3, zp.unsqueeze(-1)) - lq.gather(3, zc.unsqueeze(-1))).squeeze(-1) * d).sum(-1)
    log_u = u.to(torch.float64).log() + q_ratio
    if extra is not None:
        log_u = log_u - extra.to(torch.float64)
    flat = counts.view(G, K * V)
    tot = counts.sum(-1)  # (G, K); exact integers in float64
    for s in range(S):
        ds = d[:, s]
        pair_keys = torch.cat([zc[:, s] * V + xw[:, s], zp[:, s] * V + xw[:, s]], 1)
        topic_keys = torch.cat([zc[:, s], zp[:, s]], 1)
        delta = torch.cat([-ds, ds], 1)
        log_ratio = _gamma_ratio(flat, pair_keys, delta, beta) - _gamma_ratio(tot, topic_keys, delta, V * beta)
        acc = log_u[:, s] < log_ratio
        accepted[:, s] = acc
        step = delta * acc.unsqueeze(-1).to(torch.float64)
        flat.scatter_add_(1, pair_keys, step)  # the accepted documents' counts move to their proposals
        tot.scatter_add_(1, topic_keys, step)
    return accepted
