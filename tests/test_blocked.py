"""Blocked conditional SMC (``kernel="blocked"``): exact for the LSTM prior, checked against enumeration.

Standard errors are measured across independent chains (each chain's time-average of the kept
sweeps is one independent value), not from ``p(1 - p) / n`` over correlated draws.
"""

import pytest
import torch

from exact import enumerate_paths, exact_marginals
from helpers import tiny_model
from pyro_ssl.smc import csmc_sweep
from pyro_ssl.smc.blocked import block_starts, blocked_csmc_sweep
from pyro_ssl.smc.uniforms import KeyedUniforms

Z_SIGMA = 5.0


def _chain_marginals(sweep, x, chains, sweeps, keep, K=3, seed=1):
    """``(mean (T, K), se (T, K))`` of the kept sweeps' one-hot paths, SE across chains."""
    T = x.numel()
    g = torch.Generator().manual_seed(seed)
    ref = torch.randint(K, (chains, T), generator=g)
    xb, n = x.expand(chains, T), torch.full((chains,), T)
    acc = torch.zeros(chains, T, K, dtype=torch.float64)
    for it in range(sweeps):
        ref = sweep(xb, n, ref, g)
        if it >= sweeps - keep:
            acc += torch.nn.functional.one_hot(ref, K).double()
    per_chain = acc / keep
    return per_chain.mean(0), per_chain.std(0) / chains**0.5


@pytest.mark.parametrize("block_size,stride,P,future_lag", [(3, 2, 3, None), (4, 4, 3, None), (3, 2, 3, 0), (3, 2, 3, 1)])
def test_blocked_marginals_match_enumeration(block_size, stride, P, future_lag):
    """T = 7 is longer than every block, so blocks start inside the document and the future
    factor matters. Planted bugs this test catches (measured): the future factor left out (a
    marginal off by 0.035, 26 SE); the block started from the state one position too early.
    ``future_lag`` 0 and 1: the particles score none or one future position and the block's new
    path is corrected by Metropolis-Hastings for the rest."""
    prior, log_phi = tiny_model()
    x = torch.tensor([0, 3, 3, 5, 1, 2, 4])
    paths, log_post, _ = enumerate_paths(prior, log_phi, x)
    exact = exact_marginals(paths, log_post, 3)

    def sweep(xb, n, ref, g):
        return blocked_csmc_sweep(prior, log_phi, xb, n, P, ref, block_size=block_size, stride=stride, generator=g,
                                  future_lag=future_lag).path

    est, se = _chain_marginals(sweep, x, chains=6000, sweeps=24, keep=12)
    assert float(se.max()) < 0.005  # the test's resolution
    z = (est - exact).abs() / se.clamp_min(1e-4)
    assert (z <= Z_SIGMA).all(), ((est - exact).abs().max(), z.max())


def test_one_block_over_the_whole_document_is_the_plain_sweep():
    """No prefix and no future: the blocked sweep is conditional SMC, draw for draw."""
    prior, log_phi = tiny_model()
    g = torch.Generator().manual_seed(3)
    lengths = torch.tensor([5, 9, 2, 7])
    x = torch.randint(6, (4, 9), generator=g)
    ref = torch.randint(3, (4, 9), generator=g)
    ids = torch.arange(4)
    plain = csmc_sweep(prior, log_phi, x, lengths, 4, ref, uniforms=KeyedUniforms(0, ids, lengths, 9, 4, (1,)))
    blocked = blocked_csmc_sweep(prior, log_phi, x, lengths, 4, ref, block_size=9, stride=9,
                                 uniforms=lambda i, s, n, T, rows: KeyedUniforms(0, ids[rows], n, T, 4, (1,)))
    assert torch.equal(plain.path, blocked.path)


def test_block_grid_covers_every_position():
    for T, b, s in [(1, 20, 10), (20, 20, 10), (21, 20, 10), (100, 20, 10), (7, 3, 2), (7, 4, 4)]:
        covered = set()
        blocks = block_starts(T, b, s)
        for lo, hi in blocks:
            assert 0 <= lo < hi <= T and hi - lo <= b
            covered |= set(range(lo, hi))
        assert covered == set(range(T))
        if s < b:  # overlapping: every position is in the later half of some block
            assert all(any(lo + (hi - lo) // 2 <= t < hi or lo == 0 and hi < b for lo, hi in blocks) for t in range(T))
    with pytest.raises(ValueError, match="stride"):
        block_starts(10, 3, 4)


@pytest.mark.parametrize("future_lag,below,resampling,final_draw", [
    (None, None, "multinomial", "gibbs"), (0, None, "multinomial", "gibbs"), (1, None, "multinomial", "gibbs"),
    (None, 0.99, "multinomial", "gibbs"), (1, 0.99, "multinomial", "gibbs"), (1, None, "systematic", "gibbs"),
    (1, 0.5, "systematic", "gibbs"), (1, 0.5, "multinomial", "metropolised"), (1, 0.5, "systematic", "metropolised")])
def test_blocked_sweep_from_exact_draws_stays_exact(future_lag, below, resampling, final_draw):
    """One blocked sweep from 256,000 exact posterior draws (independent chains, SE <= 0.001, so
    a marginal off by 0.005 fails), with the whole fixed future in the particles' weights or
    only its first ``future_lag`` positions and the Metropolis-Hastings correction for the rest.
    Planted bugs this fails on (measured 2026-12-03): the correction dropped (the kernel then
    targets the truncated future); the correction scored from one position late or one early.
    ``below``: adaptive resampling inside the blocks (``block_resample_below``); ``final_draw``:
    how each block picks its new path (``block_final_draw``)."""
    from test_smc import INVARIANCE_CHAINS, RESOLUTION, _exact_draws, _pg_problem

    prior, log_phi, x, paths, log_post, exact = _pg_problem()
    start = _exact_draws(paths, log_post, INVARIANCE_CHAINS, seed=2)
    T, K = x.numel(), prior.K
    g = torch.Generator().manual_seed(5)
    out, moved = [], 0
    for ref in start.split(64_000):
        c = ref.shape[0]
        new = blocked_csmc_sweep(prior, log_phi, x.expand(c, T), torch.full((c,), T), 3, ref, block_size=3, stride=2,
                                 generator=g, future_lag=future_lag, resample_below=below,
                                 resampling=resampling, final_draw=final_draw).path
        out.append(torch.nn.functional.one_hot(new, K).double())
        moved += int((new != ref).sum())
    oh = torch.cat(out)
    est, se = oh.mean(0), oh.std(0) / len(oh) ** 0.5
    assert float(se.max()) <= RESOLUTION
    z = (est - exact).abs() / se.clamp_min(1e-6)
    assert (z <= Z_SIGMA).all(), ((est - exact).abs().max(), z.max())
    assert moved / (len(oh) * T) > 0.05  # it must move, not just return its reference


def test_future_correction_through_a_sweep_equals_scoring_both_paths_to_the_end():
    """The correction keeps the current path's terms in a cache (one pass when the sweep starts,
    then the kept proposals' numbers) and runs only the proposal, from its own state at the
    block's ``cut`` (the chosen particle's, after the scored future positions). Block after block
    of a sweep's grid, with random proposals and random decisions, each ratio must equal scoring
    both paths from the block's start to the end (``future_log_prob``, no cache), and the LSTM
    must run only the changed proposals from ``cut``. Measured power (planted, then removed): the
    cache not updated for kept proposals, or updated for rejected ones, fails at the second block;
    scoring from one position early or late fails at the first."""
    from pyro_ssl.smc import blocked

    K, H = 4, 8
    prior, _ = tiny_model(K=K, H=H, seed=2)
    g = torch.Generator().manual_seed(0)
    B, T, L = 6, 300, 5  # longer than REST_WINDOW: the passes run in pieces
    cur = torch.randint(K, (B, T), generator=g)
    lengths = torch.tensor([300, 250, 300, 61, 64, 299])
    tail = blocked._CurrentTail(prior, cur)
    steps, checked = [], 0  # LSTM positions run (rows x positions)
    hook = prior.lstm.register_forward_hook(lambda mod, inp, out: steps.append(inp[0].shape[0] * inp[0].shape[1]))
    used, alone = 0, 0

    def state_before(path, a):  # the state that has consumed path_{<a-1} (gives p(path_{a-1}))
        state, z0 = prior.initial_state((B,))
        inputs = torch.cat([z0.unsqueeze(1), path[:, : a - 1]], 1)
        return prior.continuation_log_prob(state, inputs, path[:, :a])[1]

    try:
        for s, e in blocked.block_starts(T, 20, 10):
            cut = min(e + L, T)
            if s == 0 or cut >= T:
                continue
            carried, z_in = state_before(cur, s), cur[:, s - 1]
            prop = cur.clone()
            prop[:, s:e] = torch.randint(K, (B, e - s), generator=g)
            prop[s % B] = cur[s % B]  # an unchanged block: 0 without a pass
            at_cut = state_before(prop, cut)
            del steps[:]
            got = tail.log_ratio(prior, at_cut, torch.arange(B), cut, cur, prop, lengths)
            used += sum(steps)
            pos = torch.arange(s, T)
            mask = (pos >= cut) & (pos < lengths.unsqueeze(-1))
            full = [blocked.future_log_prob(prior, carried, z_in, p[:, s:], mask).double() for p in (prop, cur)]
            want = (full[0] - full[1]).masked_fill(~(prop != cur).any(-1) | (lengths <= cut), 0.0)
            assert torch.allclose(got, want, atol=1e-9, rtol=0), (s, got, want)
            changed = (prop != cur).any(-1) & (lengths > cut)
            m = int(lengths[changed].max()) - cut  # the changed rows to their longest end, the last window padded
            W, Q = blocked.REST_WINDOW, blocked._WINDOW_QUANTUM
            alone += int(changed.sum()) * ((m // W) * W + -(-(m % W) // Q) * Q)
            checked += 1
            keep = torch.rand(B, generator=g) < 0.6
            tail.keep(keep)
            cur = torch.where(keep.unsqueeze(-1), prop, cur)
    finally:
        hook.remove()
    assert checked >= 10 and used == alone, (checked, used, alone)


