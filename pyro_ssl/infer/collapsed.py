"""The collapsed E-step: topic paths from ``p(z | x, theta)`` with ``phi`` integrated out, exactly.

With ``phi ~ Dirichlet(beta)`` integrated out, a document's emissions given every other
assignment are a Polya urn: token ``t`` of document ``d`` has probability
``(n^{-d}_{k w} + c_t + beta) / (n^{-d}_k + c'_t + V beta)`` under topic ``k``, where ``n^{-d}``
counts the other documents and ``c_t``, ``c'_t`` count the *earlier tokens of the same
document* with the same (topic, word) and the same topic. That is not a fixed emission table,
so conditional SMC cannot sweep under it directly; it is used here as the target of a
Metropolis-Hastings step whose proposal is a conditional-SMC update:

1. every document of a group (the documents decided together, in a fixed visit order) is swept
   (plain or blocked CSMC) under a fixed table ``q_d``: ``phi`` from the current counts of
   every token that cannot change before the document's own decision
   (:func:`visit_order_log_emission`). An update changes only a window of positions (one block of
   the blocked kernel, or the whole document), so ``q_d`` leaves out only that window of ``d``
   itself and of the documents decided before it; everything else, the documents decided after
   ``d`` and ``d``'s own tokens outside the block included, counts at its current value.
   Conditional SMC is reversible for its own target (Chopin and Singh 2015), here
   ``p~(z_d) ∝ p(z_d | theta) prod_t q_{d, z_t}[x_t]``. (Until 2026-12-03's fifth session the
   table left out every document of the group, a quarter of the corpus at the seed size:
   acceptance 0.72 then, 0.94 now, K = 10, training seed 0 of the seed's IMDB setup;
   docs/learning.md.)
2. the documents are then visited one after another (in the group's order) and document
   ``d``'s proposal ``z'`` is accepted with probability
   ``min(1, [urn(z') / q_d(z')] / [urn(z) / q_d(z)])``, where ``urn`` is the Polya urn above with
   ``n^{-d}`` the *current* counts of every other document (those already visited included)
   and ``q_d(z) = prod_t q_{d, z_t}[x_t]``. The LSTM prior cancels.

A reversible proposal corrected by this ratio leaves the collapsed conditional of each document
invariant (Metropolis-Hastings with a ``p~``-reversible proposal kernel), so every minibatch
update leaves ``p(z | x, theta)`` invariant: no approximation. The sequential visit is what
makes parallel proposals exact; :func:`collapsed_mh` computes it for all documents at once.

Shapes: ``G`` independent groups (one in a fit; independent chains in tests), ``S`` documents
per group visited in order, ``T`` padded length, ``K`` topics, ``V`` words.
"""

from __future__ import annotations

import torch

from ..runtime import no_autograd

__all__ = ["collapsed_mh", "visit_order_log_emission"]


def visit_order_log_emission(counts: torch.Tensor, x: torch.Tensor, z: torch.Tensor, mask: torch.Tensor,
                             s: int, e: int, beta: float, docs: tuple[int, int] | None = None) -> torch.Tensor:
    """Each document's proposal table for an update of its positions ``[s, e)``: ``phi`` from the
    *current* counts of every token that cannot change before the document's own decision,
    ``log q`` ``(G, S, e - s, K)`` float64; with ``docs=(a, b)`` only documents ``a .. b-1``'s,
    ``(G, b - a, e - s, K)``, the same numbers (the documents after ``b`` do not enter them), so
    each rank of a data-parallel fit builds only its share's tables.

    The decisions visit the ``S`` documents of a group in order, and an update changes only the
    window ``[s, e)`` (a block of the blocked kernel; ``[0, T)`` for whole documents). So while
    document ``j`` waits for its decision, nothing changes but the window tokens of documents
    ``0 .. j-1`` (decided before it) and its own window (the proposal). The table counts
    everything else at its current value: the documents outside the group, the documents after
    ``j`` in the visit order, the earlier ones outside the window, and ``j``'s own tokens outside
    it. It is fixed during ``j``'s update (a proposal may not read what changes before its
    decision), so conditional SMC under it is reversible for its own target and the collapsed
    Metropolis-Hastings step stays exact.

    Args:
        counts: ``(K, V)`` or ``(G, K, V)`` float64 topic-word counts of every document at its
            current path (the group's included).
        x, z: ``(G, S, T)`` the group's words and current paths, documents in visit order;
            mask ``(G, S, T)`` real positions.
    """
    first, stop = (0, x.shape[1]) if docs is None else docs
    if not 0 <= first <= stop <= x.shape[1]:
        raise ValueError(f"docs must be (a, b) with 0 <= a <= b <= {x.shape[1]}, got {docs!r}")
    x, z, mask = x[:, :stop], z[:, :stop], mask[:, :stop]  # later documents do not enter a table
    G, S, T = x.shape
    R = S - first  # documents whose tables are returned
    K, V = counts.shape[-2:]
    counts = counts.to(torch.float64).expand(G, K, V)
    xw, zw, mw = x[..., s:e].long(), z[..., s:e].long().clamp(0, K - 1), mask[..., s:e]
    W = xw.shape[-1]
    g = torch.arange(G, device=x.device).view(G, 1, 1)
    j = torch.arange(S, device=x.device).view(1, S, 1)
    # (topic, word) side: the window tokens of documents 0..j with the token's word, by topic.
    # Sorted by (word, document) they are a run from the word's first token to the last of
    # document j, so a cumulative count of topics along the sorted tokens gives them by two
    # binary searches per token (not per token and topic). The counts are whole numbers, so
    # they do not depend on which other documents the sort held.
    word = (g * V + xw) * S  # (G, S, W): the word's key with document 0
    keys, order = (word + j)[mw].sort()
    seen = torch.nn.functional.pad(
        torch.nn.functional.one_hot(zw[mw][order], K).to(torch.float64).cumsum(0), (0, 0, 1, 0))  # (E + 1, K)
    asked = word[:, first:]  # every position (padding too: its entries go unread)
    lo = torch.searchsorted(keys, asked.reshape(-1))
    hi = torch.searchsorted(keys, (asked + j[:, first:]).reshape(-1), right=True)
    mine = (seen[hi] - seen[lo]).view(G, R, W, K)
    num = counts.gather(2, xw[:, first:].reshape(G, 1, R * W).expand(G, K, R * W)).transpose(1, 2).reshape(G, R, W, K)
    # topic side: the window's topic counts of documents 0..j (inclusive cumulative sum)
    oh = torch.nn.functional.one_hot(zw, K).to(torch.float64) * mw.unsqueeze(-1)  # (G, S, W, K)
    den = counts.sum(-1).unsqueeze(1) - oh.sum(2).cumsum(1)[:, first:] + V * beta  # (G, R, K)
    return (num - mine + beta).log() - den.log().unsqueeze(2)


def _sorted_runs(keys: torch.Tensor):
    """For sorted ``keys`` ``(E,)``: the index where each entry's run of equal keys starts."""
    E = keys.shape[0]
    pos = torch.arange(E, device=keys.device)
    starts = torch.ones(E, dtype=torch.bool, device=keys.device)
    starts[1:] = keys[1:] != keys[:-1]
    return torch.where(starts, pos, torch.zeros_like(pos)).cummax(0).values


class _PrefixUrn:
    """One side (pairs or topics) of the urn's Gamma ratios for many documents visited in order.

    Entries ``e`` are (document ``doc_e``, key ``key_e``, change ``delta_e``) with keys already
    distinct across groups. :meth:`log_ratio` gives, per document, ``sum over its distinct keys k
    of lgamma(N_k + P_k + D_k + offset) - lgamma(N_k + P_k + offset)``, where ``D_k`` is the
    document's own change at ``k`` and ``P_k`` the accepted changes of *earlier* documents at
    ``k``: the counts the document would be judged against if visited one after another.
    Entries are sorted once by (key, document); each call is a few cumulative sums.
    """

    def __init__(self, n: torch.Tensor, doc: torch.Tensor, key: torch.Tensor, delta: torch.Tensor, S: int,
                 offset: float, num_docs: int):
        order = torch.sort(key * S + doc, stable=True).indices
        self.doc, self.key, self.delta = doc[order], key[order], delta[order]
        self.key_start = _sorted_runs(self.key)
        self.run_start = _sorted_runs(self.key * S + self.doc)  # (key, document) runs
        cd = self.delta.cumsum(0)
        self.after = cd - (cd - self.delta)[self.run_start]  # own change up to this entry
        self.base = n[self.key] + offset
        self.num_docs = num_docs

    def log_ratio(self, accepted: torch.Tensor) -> torch.Tensor:
        w = self.delta * accepted[self.doc].to(self.delta.dtype)
        ex = w.cumsum(0) - w
        b = self.base + (ex[self.run_start] - ex[self.key_start]) + self.after  # counts after this entry
        out = torch.zeros(self.num_docs, dtype=self.delta.dtype, device=self.delta.device)
        return out.index_add_(0, self.doc, torch.lgamma(b) - torch.lgamma(b - self.delta))


@no_autograd
def collapsed_mh(counts: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, current: torch.Tensor,
                 proposed: torch.Tensor, log_q: torch.Tensor | None, beta: float, u: torch.Tensor,
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
    lgamma(N_kw + beta)`` minus the same over topics with ``V beta``. Only the positions where a
    proposal differs are read, so after a block of the blocked kernel the step costs the block's
    width, not the document's. The sequential visit is computed for all documents at once, in
    rounds that each recompute every decision from the previous round's (see the code); the
    result is the one-after-another answer, not an approximation of it.

    Args:
        counts: ``(G, K, V)`` float64 topic-word counts of *all* documents at their current paths
            (these included); updated in place to the counts after the decisions.
        x: ``(G, S, T)`` words; mask ``(G, S, T)`` real positions.
        current, proposed: ``(G, S, T)`` current paths and the proposals (equal outside what the
            proposal updated).
        log_q: ``(G, S, T, K)`` the proposal's emission table (:func:`visit_order_log_emission`), which
            the proposal kernel is reversible for (with the LSTM prior); ``None`` when the kernel
            puts its table's ratio in ``extra`` itself (the blocked sweep's ``block_proposal``).
        u: ``(G, S)`` uniforms for the decisions.
        extra: optional ``(G, S)`` float64 further log-ratio terms of the proposal kernel, added to
            each decision (the blocked sweep's ``future_lag`` correction).
    Returns:
        ``(G, S)`` bool, accepted (a proposal equal to the current path counts as accepted).
    """
    G, S, T = x.shape
    K, V = counts.shape[-2:]
    g, s, t = ((current != proposed) & mask).nonzero().unbind(1)  # the changed positions, (E,) each
    if len(g) == 0:
        return torch.ones(G, S, dtype=torch.bool, device=x.device)
    doc = g * S + s
    zc, zp, xw = current[g, s, t].long(), proposed[g, s, t].long(), x[g, s, t].long()
    log_u = u.to(torch.float64).reshape(-1).log()
    if log_q is not None:
        lq = log_q[g, s, t].to(torch.float64)  # (E, K)
        log_u = log_u.index_add(0, doc, (lq.gather(1, zp.unsqueeze(1)) - lq.gather(1, zc.unsqueeze(1))).squeeze(1))
    if extra is not None:
        log_u = log_u - extra.to(torch.float64).reshape(-1)
    # Each changed position leaves (current topic, word) and enters (proposed topic, word).
    both, gg = torch.cat([doc, doc]), torch.cat([g, g])
    sign = torch.cat([torch.full_like(doc, -1), torch.ones_like(doc)]).to(torch.float64)
    topic_keys = torch.cat([zc, zp])
    pair_keys = (gg * K + topic_keys) * V + torch.cat([xw, xw])
    pairs = _PrefixUrn(counts.reshape(-1), both, pair_keys, sign, S, beta, G * S)
    topics = _PrefixUrn(counts.sum(-1).reshape(-1), both, gg * K + topic_keys, sign, S, V * beta, G * S)
    # Document s's decision depends on the decisions before it. Start from "no earlier document
    # accepted" and recompute every decision from the previous round's: after round r the first r
    # documents are right, and a fixed point is the sequential answer. A decision rarely hangs on
    # the other documents' small count changes, so two or three rounds usually settle it.
    acc = torch.zeros(G * S, dtype=torch.bool, device=x.device)
    for _ in range(S + 1):
        new = log_u < pairs.log_ratio(acc) - topics.log_ratio(acc)
        if torch.equal(new, acc):
            break
        acc = new
    counts.view(-1).index_add_(0, pair_keys, sign * acc[both].to(torch.float64))
    return acc.view(G, S)
