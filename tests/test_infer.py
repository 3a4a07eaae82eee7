"""The particle-Gibbs kernel under pyro.infer.MCMC, ArviZ export, and stochastic-EM fitting."""

import math

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import MCMC

import pyro_ssl
from pyro_ssl.infer import ParticleGibbs, topic_word_counts, to_inference_data
from pyro_ssl.infer.mstep import PriorMStep, smoothed_log_phi
from pyro_ssl.model import TopicalSSL, length_mask

from exact import enumerate_paths, exact_marginals
from helpers import simulated_corpus, tiny_model

Z_SIGMA = 5.0


def tiny_ssl(K=3, V=6, seed=0):
    pyro.set_rng_seed(seed)
    ssl = TopicalSSL(K, V, hidden_size=8, dropout=0.0, beta=0.5).double()
    with torch.no_grad():
        for p in ssl.prior.parameters():
            p.mul_(3.0)
    ssl.prior.eval()
    return ssl


def test_kernel_runs_under_pyro_mcmc_and_matches_enumeration():
    """Fixed phi: the kernel's z draws under ``pyro.infer.MCMC`` leave p(z | x) invariant.

    The model and document are test_smc's exactness problem (tiny_model(seed=8), T = 7; its
    prior's long memory makes broken ancestry or final weights visible). C = 256,000 chains,
    batched as documents in 4 MCMC runs, start from exact posterior draws (``z_init``), so one
    kernel step each is exactly distributed; SE across the chains <= 0.001, so a marginal off
    by 0.005 fails (test_smc explains the design and the planted bugs it catches).
    """
    prior, log_phi = tiny_model(seed=8)
    ssl = tiny_ssl()
    ssl.prior.load_state_dict(prior.state_dict())
    ssl.prior.eval()
    phi = log_phi.exp()
    x1 = torch.tensor([0, 3, 3, 5, 1, 2, 4])
    T = x1.shape[0]
    paths, log_post, _ = enumerate_paths(ssl.prior, log_phi, x1)
    exact = exact_marginals(paths, log_post, 3)
    runs, B = 4, 64_000
    g = torch.Generator().manual_seed(0)
    per_chain, moved = [], 0
    for run in range(runs):
        z0 = paths[torch.multinomial(log_post.exp(), B, replacement=True, generator=g)]
        kernel = ParticleGibbs(ssl, num_particles=4, sample_phi=False, seed=run)
        mcmc = MCMC(kernel, num_samples=1, warmup_steps=0, disable_progbar=True)
        mcmc.run(x1.expand(B, T), torch.full((B,), T), z_init=z0, phi=phi)
        z = mcmc.get_samples()["z"]
        assert z.shape == (1, B, T)
        assert z.dtype.is_floating_point  # Pyro's runner packs sites as float: the pitfall we convert
        z = z.round().long()
        per_chain.append(torch.nn.functional.one_hot(z, 3).double().mean(0))
        moved += int((z[-1] != z0).sum())
    per_chain = torch.cat(per_chain)
    C = per_chain.shape[0]
    est, se = per_chain.mean(0), per_chain.std(0) / math.sqrt(C)
    assert float(se.max()) <= 1e-3  # the test's resolution
    zscore = (est - exact).abs() / se.clamp_min(1e-6)
    assert (zscore <= Z_SIGMA).all(), ((est - exact).abs().max(), zscore.max())
    assert moved / (C * T) > 0.05  # it is a move, not the identity (measured 13% of positions)


def test_kernel_gibbs_phi_and_arviz_round_trip():
    ssl = tiny_ssl()
    x = torch.randint(6, (4, 7))
    lengths = torch.tensor([7, 4, 6, 7])
    kernel = ParticleGibbs(ssl, num_particles=5, seed=2, ancestor_lag=2)
    mcmc = MCMC(kernel, num_samples=6, warmup_steps=2, disable_progbar=True)
    mcmc.run(x, lengths)
    samples = mcmc.get_samples(group_by_chain=True)
    assert samples["phi"].shape == (1, 6, 3, 6)
    assert torch.allclose(samples["phi"].sum(-1), torch.ones(1, 6, 3, dtype=samples["phi"].dtype), atol=1e-5)
    idata = to_inference_data(samples, {"update_rate": torch.rand(1, 6)})
    z = idata.posterior["z"].values
    assert z.dtype == np.int64 and z.shape == (1, 6, 4, 7)
    assert np.array_equal(z, samples["z"].round().long().numpy())
    assert "update_rate" in idata.sample_stats
    mcmc.summary()  # must not raise (the kernel reports no divergences)


def test_smoothed_phi_and_counts():
    z = torch.tensor([[0, 1, 1, 2]])
    x = torch.tensor([[3, 0, 0, 1]])
    c = topic_word_counts(z, x, torch.tensor([3]), 3, 4)
    assert c[1, 0] == 2 and c[0, 3] == 1 and c.sum() == 3
    log_phi = smoothed_log_phi(c, 0.5)
    assert torch.allclose(log_phi.exp()[1, 0], torch.tensor((2 + 0.5) / (2 + 4 * 0.5), dtype=log_phi.dtype))
    # Rao-Blackwellised counts: weights over particle paths.
    zp = torch.stack([z, torch.zeros_like(z)], 1)  # (1, 2, 4)
    cw = topic_word_counts(zp, x, torch.tensor([3]), 3, 4, weights=torch.tensor([[0.25, 0.75]], dtype=torch.float64))
    assert torch.allclose(cw.sum(), torch.tensor(3.0, dtype=torch.float64))
    assert torch.allclose(cw[0, 0], torch.tensor(1.5, dtype=torch.float64))


def test_mstep_increases_likelihood_of_paths():
    ssl = tiny_ssl()
    z = torch.tensor([[0, 1, 2, 0, 1, 2, 0, 1]] * 4)
    lengths = torch.full((4,), 8)
    m = PriorMStep(ssl.prior, lr=0.05)
    before = float(ssl.prior.sequence_log_prob(z).mean().detach())
    for _ in range(60):
        m.step(z, lengths)
    after = float(ssl.prior.sequence_log_prob(z).mean().detach())
    assert after > before + 1.0
    assert not ssl.prior.training
    # Adam state survives a round trip through the param-store scopes.
    state = m.state_dict()
    assert state and all("ssl_prior" in k for k in state)
    assert len(pyro.get_param_store()) == 0  # nothing leaked into the global store


def test_fit_is_reproducible_and_learns_topics():
    docs = simulated_corpus()
    kw = dict(K=3, epochs=6, num_particles=8, hidden_size=8, batch_size=32, lr=0.02, mstep_iters=2,
              progress=False, init="hmm", ancestor_lag=5)
    a = pyro_ssl.fit(docs, **kw)
    b = pyro_ssl.fit(docs, **kw)
    assert torch.equal(a.log_phi, b.log_phi)
    assert [h["log_joint_per_token"] for h in a.history] == [h["log_joint_per_token"] for h in b.history]
    # Topics recovered: each learned topic puts most of its mass on one block of 4 words.
    mass = a.phi.view(3, 3, 4).sum(-1)  # (topic, block)
    assert (mass.max(-1).values > 0.8).all(), mass
    assert len(set(mass.argmax(-1).tolist())) == 3
    entry = a.history[-1]
    for key in ("seconds", "update_rate_quintiles", "ess", "ancestors", "mstep_loss"):
        assert key in entry
    # Block-structured data: the fitted model beats the unigram model on held-out documents.
    test = simulated_corpus(seed=1, D=20)
    ll = a.score(test, num_particles=50, seeds=(0,)).mean
    unigram = -math.log(12)
    assert ll > unigram + 0.3


def test_pgas_escapes_the_symmetric_start_faster_than_plain_csmc():
    """From a random-phi start, ancestor sampling moves early positions and improves the log
    joint more than plain CSMC with the same particles and epochs (same seed), both with
    multinomial resampling, where plain CSMC's early positions degenerate most (systematic
    resampling, the default since 2026-12-04, keeps more lineages alive and narrows the gap)."""
    docs = simulated_corpus()
    kw = dict(K=3, epochs=8, num_particles=8, hidden_size=8, batch_size=32, lr=0.02, mstep_iters=2,
              progress=False, init="smc", resampling="multinomial")
    plain = pyro_ssl.fit(docs, ancestor_lag=0, **kw)
    pgas = pyro_ssl.fit(docs, ancestor_lag=5, **kw)
    first_quintile = lambda m: sum(h["update_rate_quintiles"][0] for h in m.history) / len(m.history)  # noqa: E731
    assert first_quintile(pgas) > 2 * first_quintile(plain)
    assert pgas.history[-1]["log_joint_per_token"] > plain.history[-1]["log_joint_per_token"] + 0.2
    assert pgas.history[-1]["log_joint_per_token"] > pgas.history[0]["log_joint_per_token"]


def test_fit_api_outputs():
    docs = simulated_corpus(D=20, T=12)
    m = pyro_ssl.fit(docs, K=3, epochs=2, num_particles=4, hidden_size=8, progress=False)
    assert len(m.top_words(3)) == 3 and len(m.top_words(3)[0]) == 3
    paths = m.predict(docs[:2], num_sweeps=2)
    assert [len(p) for p in paths] == [12, 12]
    z, w = m.sample(2, 5, temperature=0.5)
    assert z.shape == w.shape == (2, 5) and int(w.max()) < 12
    assert len(m.show_topics(2, 4)) == 2
    tokens = torch.tensor(docs[:4])
    est = m.completion_perplexity(tokens, torch.full((4,), 12), T1=8, num_particles=20, seeds=(0, 1))
    assert len(est.values) == 2
    # Exact bounds: every estimated predictive is a mixture sum_k pi(k) phi_k[x_t] (mixed again
    # over particles), so it lies between min_k and max_k of phi_k[x_t] for every filter run.
    held = m.log_phi[:, tokens[:, 8:]].double()  # (K, 4, 4) log phi_k of each held-out token
    lo = math.exp(-float(held.max(0).values.mean()))
    hi = math.exp(-float(held.min(0).values.mean()))
    assert all(lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9) for v in est.values), (lo, est.values, hi)


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError):
        pyro_ssl.fit([], K=3, progress=False)
    with pytest.raises(ValueError, match="empty"):
        pyro_ssl.fit([[1, 2], []], K=3, progress=False)
    with pytest.raises(ValueError, match="non-negative"):
        pyro_ssl.fit([[1, -2]], K=3, progress=False)
    with pytest.raises(ValueError, match="num_particles"):
        pyro_ssl.SSL(K=3, num_particles=1)
    with pytest.raises(RuntimeError, match="not fitted"):
        pyro_ssl.SSL(K=3).top_words()


def test_leave_out_emission_equals_phi_from_other_documents():
    """Brute force: recount without document d, smooth, read off log phi^{-d}_k[x_t]."""
    from pyro_ssl.infer.mstep import leave_out_log_emission

    g = torch.Generator().manual_seed(0)
    K, V, B, T = 3, 5, 4, 6
    x = torch.randint(V, (B, T), generator=g)
    z = torch.randint(K, (B, T), generator=g)
    lengths = torch.tensor([6, 3, 5, 6])
    counts = topic_word_counts(z, x, lengths, K, V) + 2.0  # plus other documents' counts
    fast = leave_out_log_emission(counts, z, x, lengths, beta=0.3)
    for d in range(B):
        own = topic_word_counts(z[d : d + 1], x[d : d + 1], lengths[d : d + 1], K, V)
        ref = smoothed_log_phi(counts - own, 0.3)
        n = int(lengths[d])
        assert torch.allclose(fast[d, :n], ref[:, x[d, :n]].T, atol=1e-12)


def test_loaded_model_ranks_topics_by_prior_usage(tmp_path):
    docs = simulated_corpus(D=20, T=12)
    m = pyro_ssl.fit(docs, K=3, epochs=2, num_particles=4, hidden_size=8, progress=False)
    m.save(tmp_path / "m")
    loaded = pyro_ssl.SSL.load(tmp_path / "m")
    z, _ = loaded.sample(256, 64, seed=0)
    usage = torch.bincount(z.reshape(-1), minlength=3)
    order = [k for k, _ in loaded.show_topics()]
    assert sorted(order) == [0, 1, 2]
    assert usage[order].tolist() == sorted(usage.tolist(), reverse=True)


def _leave_out_quadratic(counts, z, x, lengths, beta):
    """The former (B, T, T) same-word formula, kept as the reference for the linear one."""
    K, V = counts.shape
    mask = length_mask(lengths, x.shape[1])
    onehot = torch.nn.functional.one_hot(z.clamp(0, K - 1), K).to(counts.dtype) * mask.unsqueeze(-1)
    same_word = (x.unsqueeze(2) == x.unsqueeze(1)).to(counts.dtype)
    own_kw = same_word @ onehot
    own_k = onehot.sum(1, keepdim=True)
    num = (counts.T[x] - own_kw).clamp_min(0.0) + beta
    den = (counts.sum(-1) - own_k).clamp_min(0.0) + V * beta
    return num.log() - den.log()


@pytest.mark.parametrize("seed", range(5))
def test_leave_out_emission_linear_equals_quadratic_formula(seed):
    """Bit for bit, padding included, against the (B, T, T) formula it replaced (issue 15)."""
    from pyro_ssl.infer.mstep import leave_out_log_emission

    g = torch.Generator().manual_seed(seed)
    K, V, B, T = 1 + seed, 1 + 3 * seed, 2 + seed, 1 + 4 * seed
    x = torch.randint(V, (B, T), generator=g)
    z = torch.randint(K, (B, T), generator=g)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    counts = topic_word_counts(z, x, lengths, K, V) + torch.randint(3, (K, V), generator=g).double()
    fast = leave_out_log_emission(counts, z, x, lengths, beta=0.1)
    assert torch.equal(fast, _leave_out_quadratic(counts, z, x, lengths, 0.1))
