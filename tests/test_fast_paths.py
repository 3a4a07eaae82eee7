"""Fast paths against the straightforward code they replace: the same numbers, bit for bit.

Each optimisation of a hot path (issue 12: the epochs must not be slower than before the
redesign) keeps the random draws and results identical; these tests pin that down against a
literal copy of the code it replaced.
"""

import pytest
import torch

from pyro_ssl.infer.mstep import dropout_masks
from pyro_ssl.smc.uniforms import _unit24_threshold, keyed_document_keep, keyed_document_uniforms

from helpers import tiny_model


@pytest.mark.parametrize("p", [0.0, 1e-9, 2**-24, 0.1, 0.2, 0.25, 1 / 3, 0.5, 0.9, 1 - 2**-24, 1 - 2**-26])
def test_keyed_keep_is_the_uniforms_compared(p):
    ids, lengths = torch.tensor([3, 9, 1, 40]), torch.tensor([5, 9, 1, 7])
    for width in (7, 40):  # odd: the last 64-bit output's high half unused
        u = keyed_document_uniforms(ids, lengths, 9, width, 0, "dropout", 1, 2)
        assert torch.equal(keyed_document_keep(ids, lengths, 9, width, p, 0, "dropout", 1, 2), u >= p)


def test_unit24_threshold_against_every_uniform():
    m = torch.arange(1 << 24, dtype=torch.float32).mul_(1.0 / (1 << 24))  # every 24-bit uniform
    for p in [0.2, 0.1, 1 / 3, 0.7, 0.123456789, 2**-24, 1 - 2**-24]:
        ge = m >= p
        assert _unit24_threshold(p) == (int(ge.to(torch.uint8).argmax()) if bool(ge.any()) else 1 << 24)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p", [0.1, 0.2, 0.3, 0.7])
def test_dropout_masks_equal_the_float_formula(dtype, p):
    prior = tiny_model()[0].to(dtype)
    prior.drop.p = p
    ids, lengths = torch.arange(30), torch.randint(1, 21, (30,), generator=torch.Generator().manual_seed(0))
    E, H = prior.embed_dim, prior.hidden_size
    u = keyed_document_uniforms(ids, lengths, 20, E + H, 0, "dropout", 4)
    want = (u >= p).to(dtype=dtype) / (1.0 - p)  # the formula dropout_masks used before
    got = dropout_masks(prior, ids, lengths, 20, 0, "dropout", 4)
    assert got.embed.dtype == dtype
    assert torch.equal(torch.cat([got.embed, got.hidden], -1), want)


@pytest.mark.parametrize("resampling,final_draw", [("systematic", "metropolised"), ("multinomial", "gibbs")])
def test_skipping_steps_where_every_document_carries_gives_the_same_draws(monkeypatch, resampling, final_draw):
    """Under adaptive resampling a step where no document resamples skips the resampling draw and
    the reordering (``csmc.SKIP_IF_ALL_CARRY``). With it and without it, conditional and plain
    sweeps over documents of different lengths (some ending early, so padding steps count as
    carried) give the same paths, weights and increments bit for bit, from a generator (the same
    stream: the uniforms are taken either way) and from keyed uniforms; and steps are skipped."""
    from pyro_ssl.smc import csmc
    from pyro_ssl.smc.resampling import Resampler
    from pyro_ssl.smc.uniforms import KeyedUniforms

    prior, log_phi = tiny_model()
    g = torch.Generator().manual_seed(0)
    B, T, P = 8, 12, 5
    x = torch.randint(log_phi.shape[1], (B, T), generator=g)
    lengths = torch.randint(3, T + 1, (B,), generator=g)
    ref = torch.randint(prior.K, (B, T), generator=g)
    draws = []
    real = csmc.get_resampler(resampling)

    def counted(fn):  # counts the steps that draw ancestors
        def wrapper(*a):
            draws.append(1)
            return fn(*a)
        return wrapper

    counting = Resampler(real.name, real.num_uniforms, counted(real.points), counted(real.pin))

    def run(skip, reference, keyed):
        monkeypatch.setattr(csmc, "SKIP_IF_ALL_CARRY", skip)
        u = KeyedUniforms(3, torch.arange(B), lengths, T, P, (1,)) if keyed else None
        kw = dict(final_draw=final_draw) if reference is not None else {}
        return csmc.csmc_sweep(prior, log_phi, x, lengths, P, reference, resampling=counting, uniforms=u,
                               generator=torch.Generator().manual_seed(7), resample_below=0.95, diagnostics=True,
                               trace=True, **kw)

    for reference in (ref, None):
        for keyed in (False, True):
            del draws[:]
            fast = run(True, reference, keyed)
            n_fast = len(draws)
            del draws[:]
            slow = run(False, reference, keyed)
            assert len(draws) == T - 1 and 0 < n_fast < T - 1, (len(draws), n_fast)  # some steps skipped
            for name in ("path", "log_Z", "log_incr", "ess", "log_weights", "num_ancestors"):
                a, b = getattr(fast, name), getattr(slow, name)
                assert (a is None and b is None) or torch.equal(a, b), name
