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


@pytest.mark.parametrize("block_size,stride,P", [(3, 2, 3), (4, 4, 3)])
def test_blocked_marginals_match_enumeration(block_size, stride, P):
    """T = 7 is longer than every block, so blocks start inside the document and the future
    factor matters. Planted bugs this test catches (measured): the future factor left out (a
    marginal off by 0.035, 26 SE); the block started from the state one position too early."""
    prior, log_phi = tiny_model()
    x = torch.tensor([0, 3, 3, 5, 1, 2, 4])
    paths, log_post, _ = enumerate_paths(prior, log_phi, x)
    exact = exact_marginals(paths, log_post, 3)

    def sweep(xb, n, ref, g):
        return blocked_csmc_sweep(prior, log_phi, xb, n, P, ref, block_size=block_size, stride=stride, generator=g).path

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
