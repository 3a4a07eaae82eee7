"""The collapsed E-step's pieces (pyro_ssl.infer.collapsed), checked against direct formulas.

Its exactness against enumeration is in tests/test_emission.py; the data-parallel equality in
tests/test_distributed.py.
"""

import pytest
import torch

from pyro_ssl import SSL
from pyro_ssl.config import SSLConfig
from pyro_ssl.infer.collapsed import collapsed_mh, visit_order_log_emission
from pyro_ssl.infer.mstep import topic_word_counts


def _random(N=6, T=11, K=3, V=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randint(K, (N, T), generator=g)
    x = torch.randint(V, (N, T), generator=g)
    lengths = torch.randint(1, T + 1, (N,), generator=g)
    mask = torch.arange(T) < lengths.unsqueeze(-1)
    return z, x, lengths, mask


def _log_urn(rest, z, x, n, K, V, beta):
    own = topic_word_counts(z[None], x[None], n[None], K, V)
    return float((torch.lgamma(rest + own + beta) - torch.lgamma(rest + beta)).sum()
                 - (torch.lgamma(rest.sum(-1) + own.sum(-1) + V * beta) - torch.lgamma(rest.sum(-1) + V * beta)).sum())


def _sequential_decisions(z, prop, x, lengths, outside, log_q, extra, K, V, beta):
    """The direct reference for one group: documents in order, each judged by the urn in closed
    form against the others' paths as decided so far. Returns ``(u, accepted, chosen paths, edges)``
    with each uniform that matters put 1e-9 (in log) on alternating sides of its ratio."""
    N = z.shape[0]
    chosen, u, want, edge = z.clone(), torch.full((N,), 0.5, dtype=torch.float64), [], 0
    for d in range(N):
        others = torch.cat([chosen[:d], chosen[d + 1 :]]), torch.cat([x[:d], x[d + 1 :]])
        rest = topic_word_counts(*others, torch.cat([lengths[:d], lengths[d + 1 :]]), K, V) + outside
        lq = lambda p: float(log_q[d, torch.arange(int(lengths[d])), p[: int(lengths[d])]].sum())  # noqa: E731
        log_a = _log_urn(rest, prop[d], x[d], lengths[d], K, V, beta) - lq(prop[d]) \
            - _log_urn(rest, z[d], x[d], lengths[d], K, V, beta) + lq(z[d]) + float(extra[d])
        if log_a < -1e-6:  # a decision that depends on the ratio: put u at its edge
            u[d] = torch.tensor(log_a + (1e-9 if edge % 2 else -1e-9), dtype=torch.float64).exp()
            edge += 1
        want.append(bool(torch.log(u[d]) < log_a))
        if want[-1]:
            chosen[d] = prop[d]
    return u, want, chosen, edge


def test_collapsed_mh_takes_the_sequential_metropolis_hastings_decisions():
    """Against a direct implementation (:func:`_sequential_decisions`), two independent groups in
    one call, with the kernel's extra log ratios.

    Each uniform is put 1e-9 (in log) on one side or the other of the reference's acceptance
    ratio, alternately, so any error in a ratio flips a decision. Measured power (each planted,
    then removed): decisions against the counts at the start (no sequential update) and the
    within-document topic counts left out both fail here; so do (2026-12-03, the Gamma-ratio
    form of the step) the topics' Gamma terms left out and a key's repeated entries not
    telescoped from the key's own start; and (2026-12-03, third session, all documents decided
    in rounds) stopping after the first or second round, earlier documents' changes counted
    without their acceptance, and groups sharing keys."""
    K, V, beta, N = 2, 2, 0.1, 16
    groups = []
    for seed in (3, 7):
        z, x, lengths, mask = _random(N=N, K=K, V=V, seed=seed)
        prop, _, _, _ = _random(N=N, K=K, V=V, seed=seed + 1)
        prop = torch.where(mask, prop, 0)
        prop[0] = z[0]  # an unchanged proposal is always accepted
        outside = torch.randint(0, 2, (K, V), generator=torch.Generator().manual_seed(seed + 3)).double()
        rest = outside * 3 + beta
        log_q = (rest / rest.sum(-1, keepdim=True)).log().T[x]  # (N, T, K): any fixed table
        extra = torch.randn(N, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 0.5
        extra[0] = 0.0
        u, want, chosen, edge = _sequential_decisions(z, prop, x, lengths, outside, log_q, extra, K, V, beta)
        assert edge >= 4 and 0 < sum(want) < N
        groups.append(dict(z=z, x=x, mask=mask, prop=prop, log_q=log_q, extra=extra, u=u, want=want,
                           counts=topic_word_counts(z, x, lengths, K, V) + outside,
                           final=topic_word_counts(chosen, x, lengths, K, V) + outside))
    stack = lambda k: torch.stack([gr[k] for gr in groups])  # noqa: E731
    counts = stack("counts")
    acc = collapsed_mh(counts, stack("x"), stack("mask"), stack("z"), stack("prop"), stack("log_q"), beta,
                       stack("u"), stack("extra"))
    for i, gr in enumerate(groups):
        assert acc[i].tolist() == gr["want"]
        assert torch.equal(counts[i], gr["final"])


def test_collapsed_needs_a_reversible_kernel():
    with pytest.raises(ValueError, match="reversible"):
        SSLConfig.from_flat(emission="collapsed", kernel="ancestor", ancestor_lag=5)
    with pytest.raises(ValueError, match="no effect"):
        SSLConfig.from_flat(emission="collapsed", kernel="blocked", phi_update="gibbs")
    SSLConfig.from_flat(emission="collapsed", kernel="blocked")
    SSLConfig.from_flat(emission="collapsed", kernel="ancestor", ancestor_lag=0)
    SSLConfig.from_flat(ancestor_lag=5)  # the default: blocked after a warm-up whose look-ahead this is


@pytest.mark.parametrize("kernel", [dict(kernel="blocked", block_size=6, block_stride=3), dict(kernel="ancestor", ancestor_lag=0)])
def test_collapsed_fit_keeps_counts_and_reports_acceptance(kernel):
    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(12, (int(n),), generator=g).tolist() for n in torch.randint(5, 25, (30,), generator=g)]
    m = SSL(K=3, hidden_size=8, epochs=2, batch_size=8, emission="collapsed", warmup_epochs=0, seed=1, **kernel).fit(
        docs, vocab_size=12, progress=False)
    em = m._em
    recount = em._local_counts()
    assert torch.equal(recount, em.counts)
    h = m.history[-1]
    assert 0.0 < h["acceptance_rate"] <= 1.0
    assert max(h["update_rate"]) > 0


def test_collapsed_sweeps_small_corpora_in_groups_of_a_quarter():
    """Each proposal's table leaves out the window of the documents decided before it in its
    group; on short documents a window is most of a document, so with one group of the whole
    corpus the later documents would propose from little more than the prior. The collapsed
    E-step decides a minibatch in groups of at most D // 4 documents, and accepts more."""
    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(12, (int(n),), generator=g).tolist() for n in torch.randint(5, 25, (24,), generator=g)]
    rates = {}
    for group in (None, 24):
        m = SSL(K=3, hidden_size=8, epochs=3, warmup_epochs=1, seed=2)
        m.fit(docs, vocab_size=12, epochs=1, progress=False)
        assert m._em._collapsed_group == 6
        if group is not None:
            m._em._collapsed_group = group  # the former behaviour: the whole corpus at once
        m.fit(docs, vocab_size=12, epochs=2, progress=False)
        assert torch.equal(m._em._local_counts(), m._em.counts)
        rates[group] = sum(e["acceptance_rate"] for e in m.history[1:]) / 2
    assert rates[None] > rates[24] + 0.1, rates


@pytest.mark.parametrize("s, e", [(4, 7), (0, 11)])
def test_visit_order_table_leaves_out_only_what_changes_before_the_decision(s, e):
    """Against the formula written out token by token: document ``j``'s table is ``phi`` from the
    current counts less the window ``[s, e)`` of documents ``0 .. j`` (itself and those decided
    before it), two groups with their own counts in one call; ``(K, V)`` counts equal the same
    counts repeated. Measured power (planted, then removed): leaving out the window of documents
    ``0 .. j-1`` only (the document's own window then counts, so its proposal reads its current
    block) or of ``0 .. j+1`` fails here."""
    K, V, beta, G, S, T = 3, 5, 0.3, 2, 6, 11
    xs, zs, masks, counts = [], [], [], []
    for grp in range(G):
        z, x, lengths, mask = _random(N=S, T=T, K=K, V=V, seed=5 + grp)
        other = torch.randint(0, 4, (K, V), generator=torch.Generator().manual_seed(grp)).double()
        xs.append(x), zs.append(z), masks.append(mask)
        counts.append(other + topic_word_counts(z, x, lengths, K, V))
    x, z, mask, counts = torch.stack(xs), torch.stack(zs), torch.stack(masks), torch.stack(counts)
    got = visit_order_log_emission(counts, x, z, mask, s, e, beta)
    assert got.shape == (G, S, e - s, K)
    for grp in range(G):
        for j in range(S):
            c = counts[grp].clone()
            for jj in range(j + 1):
                for t in range(s, e):
                    if mask[grp, jj, t]:
                        c[z[grp, jj, t], x[grp, jj, t]] -= 1
            want = ((c + beta) / (c + beta).sum(-1, keepdim=True)).log()[:, x[grp, j, s:e]].T
            assert torch.allclose(got[grp, j], want, atol=1e-12)
    shared = visit_order_log_emission(counts[0], x[:1], z[:1], mask[:1], s, e, beta)
    assert torch.allclose(shared, got[:1], atol=1e-12)
    # One rank's share of the documents (a data-parallel fit builds only its own): the same numbers.
    for a, b in [(0, S), (0, 3), (2, 5), (4, S), (5, S), (3, 3)]:
        part = visit_order_log_emission(counts, x, z, mask, s, e, beta, docs=(a, b))
        assert torch.equal(part, got[:, a:b]), (a, b)
    with pytest.raises(ValueError, match="docs must be"):
        visit_order_log_emission(counts, x, z, mask, s, e, beta, docs=(4, 2))


def test_blocked_sweep_puts_its_block_tables_ratio_in_the_decision():
    """With ``block_proposal`` the sweep's CSMC runs under each block's table and the log ratio it
    hands the acceptor is ``log q(current) - log q(proposed)`` over the block (whole future scored
    by the particles, so nothing else): computed here from the recorded tables. Measured power:
    the ratio left out (the statistical test in tests/test_emission.py passes that mutant at its
    40,000 chains) fails here."""
    from helpers import tiny_model
    from pyro_ssl.smc.blocked import blocked_csmc_sweep

    prior, log_phi = tiny_model(K=3, V=6, seed=1)
    g = torch.Generator().manual_seed(0)
    B, T = 5, 9
    x = torch.randint(6, (B, T), generator=g)
    ref = torch.randint(3, (B, T), generator=g)
    lengths = torch.tensor([9, 8, 9, 3, 9])
    mask = torch.arange(T) < lengths.unsqueeze(-1)
    counts = torch.randint(0, 5, (3, 6), generator=g).double() + topic_word_counts(ref, x, lengths, 3, 6)
    tables, seen = [], []  # one entry per block, in sweep order (two blocks start at 0)

    def block_proposal(rows, s, e, current):
        q = visit_order_log_emission(counts, x[rows][None], current[None], mask[rows][None], s, e, 0.2)[0]
        tables.append((s, rows.clone(), q))
        return q

    def accept(i, rows, current, proposed, log_ratio):
        seen.append((current.clone(), proposed.clone(), log_ratio.clone()))
        return torch.rand(len(rows), generator=g) < 0.5

    blocked_csmc_sweep(prior, log_phi, x, lengths, 4, ref, block_size=4, stride=2, generator=g, accept=accept,
                       block_proposal=block_proposal)
    assert len(seen) == len(tables) >= 4
    moved = 0
    for (s, rows, q), (current, proposed, log_ratio) in zip(tables, seen):
        e = s + q.shape[1]
        real = (torch.arange(s, e) < lengths[rows].unsqueeze(-1))
        lq = lambda p: (q.gather(-1, p[:, s:e].unsqueeze(-1)).squeeze(-1) * real).sum(-1)  # noqa: E731
        assert torch.allclose(log_ratio, lq(current) - lq(proposed), atol=1e-12)
        moved += int((current != proposed).any(-1).sum())
    assert moved >= 5  # the ratio was checked on real moves, not only on unchanged blocks
