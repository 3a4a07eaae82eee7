"""The estimator's verbs against exact answers on a tiny model (all ``3^7`` paths enumerated).

``transform`` (document-topic proportions), ``predict_proba`` (posterior marginals and their
Monte Carlo error), ``decode`` (the best path found), ``perplexity`` and ``score``. The
sampling verbs run full-lag PGAS, whose draws are exact particle Gibbs; every standard error
is measured across independent chains (one value per chain), and tolerances are ``Z_SIGMA``
of them. Each test also states its resolution (the largest SE it accepts), so a verb that is
off by a few hundredths cannot pass.
"""

import math

import pytest
import torch

from pyro_ssl import SSL

from exact import enumerate_paths, exact_marginals
from helpers import tiny_model

Z_SIGMA = 5.0
DOC = [0, 3, 3, 5, 1, 2, 4]  # the smc tests' document: a prior with long memory moves its marginals


def tiny_ssl(seed=8, log_phi=None, **settings):
    """An SSL holding ``tiny_model(seed)`` (K = 3, V = 6, float64)."""
    prior, phi = tiny_model(seed=seed)
    m = SSL(K=3, hidden_size=8, dropout=0.0, dtype=torch.float64, **settings)
    m._build(6)
    m.model.prior.load_state_dict(prior.state_dict())
    m.log_phi = phi if log_phi is None else log_phi
    return m, prior, phi


@pytest.fixture(scope="module")
def problem():
    m, prior, log_phi = tiny_ssl(kernel="ancestor", ancestor_lag="full", emission="leave_out", num_particles=4)
    x = torch.tensor(DOC)
    paths, log_post, log_px = enumerate_paths(prior, log_phi, x)
    return m, paths, log_post, log_px, exact_marginals(paths, log_post, 3)


def test_predict_proba_matches_enumerated_marginals(problem):
    """8000 independent chains on one document; SE across chains <= 0.003 (a marginal off by
    0.015 fails), and the reported SE is that spread."""
    m, _, _, _, exact = problem
    proba, se = m.predict_proba([DOC], num_chains=8000, burn_in=10, num_sweeps=10, seed=1)
    assert proba.shape == se.shape == (1, 7, 3)
    assert torch.allclose(proba.sum(-1), torch.ones(1, 7, dtype=torch.float64))
    assert float(se.max()) <= 0.003  # the test's power
    z = (proba[0] - exact).abs() / se[0].clamp_min(1e-6)
    assert (z <= Z_SIGMA).all(), ((proba[0] - exact).abs().max(), z.max())
    # A planted bug: the same chains under half-strength emissions are far outside the tolerance.
    wrong_phi = torch.log_softmax(0.5 * m.log_phi, -1)
    bad, bad_se = tiny_ssl(log_phi=wrong_phi, kernel="ancestor", ancestor_lag="full", emission="leave_out", num_particles=4)[0].predict_proba(
        [DOC], num_chains=2000, burn_in=10, num_sweeps=5, seed=2)
    assert ((bad[0] - exact).abs() > Z_SIGMA * bad_se[0]).any()


def test_predict_proba_with_the_default_blocked_kernel_matches_enumerated_marginals(problem):
    """The verbs sweep with the model's kernel, by default the blocked one (here blocks of 3,
    stride 2, so the 7 positions need several blocks). 8000 chains, SE <= 0.003."""
    _, _, _, _, exact = problem
    m = tiny_ssl(num_particles=4, block_size=3, block_stride=2)[0]
    assert m.config.sampler.kernel == "blocked"
    proba, se = m.predict_proba([DOC], num_chains=8000, burn_in=10, num_sweeps=10, seed=4)
    assert float(se.max()) <= 0.003
    z = (proba[0] - exact).abs() / se[0].clamp_min(1e-6)
    assert (z <= Z_SIGMA).all(), ((proba[0] - exact).abs().max(), z.max())


def test_predict_proba_shapes_padding_and_single_chain():
    m, _, _ = tiny_ssl()
    docs = [[0, 1, 2, 3, 4], [5, 5], [1, 2, 3]]
    proba, se = m.predict_proba(docs, num_chains=3, burn_in=1, num_sweeps=2)
    assert proba.shape == (3, 5, 3)
    real = torch.tensor([[1] * 5, [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    assert torch.allclose(proba.sum(-1)[real], torch.ones(int(real.sum()), dtype=torch.float64))
    assert (proba[~real] == 0).all() and (se >= 0).all()
    _, se1 = m.predict_proba(docs, num_chains=1, burn_in=0, num_sweeps=2)
    assert torch.isnan(se1).all()  # one chain cannot measure its own error
    with pytest.raises(ValueError, match="num_chains"):
        m.predict_proba(docs, num_chains=0)


def test_transform_matches_enumerated_topic_shares(problem):
    """E[(1/T) sum_t 1{z_t = k} | x] is the mean over t of the exact marginals. 6000 copies of
    the document are independent chains; SE across them <= 0.002."""
    m, _, _, _, exact = problem
    C = 6000
    theta = m.transform([DOC] * C, burn_in=10, num_sweeps=10, seed=3)
    assert theta.shape == (C, 3)
    assert torch.allclose(theta.sum(-1), torch.ones(C, dtype=torch.float64))
    est, se = theta.mean(0), theta.std(0) / math.sqrt(C)
    assert float(se.max()) <= 0.002
    z = (est - exact.mean(0)).abs() / se
    assert (z <= Z_SIGMA).all(), (est, exact.mean(0), z)
    # several chains per document average: same expectation, rows still sum to 1
    theta4 = m.transform([DOC, DOC[:3]], num_chains=4, burn_in=2, num_sweeps=3)
    assert theta4.shape == (2, 3) and torch.allclose(theta4.sum(-1), torch.ones(2, dtype=torch.float64))


def test_decode_finds_the_enumerated_best_path():
    """On three documents the best path found is the exact argmax of p(x, z) (and its log joint)."""
    m, prior, log_phi = tiny_ssl(kernel="ancestor", ancestor_lag="full", emission="leave_out", num_particles=4)
    docs = [DOC, [5, 5, 1, 0, 0, 2, 3], [4, 4, 4, 1, 1, 0, 2]]
    paths, lj = m.decode(docs, num_sweeps=20, seed=0)
    for d, doc in enumerate(docs):
        all_paths, log_post, log_px = enumerate_paths(prior, log_phi, torch.tensor(doc))
        joint = log_post + log_px
        assert paths[d] == all_paths[joint.argmax()].tolist()
        assert float(lj[d]) == pytest.approx(float(joint.max()), abs=1e-9)
        # and it is not merely a posterior draw: a single draw is rarely the argmax here
        assert float(joint.max().exp() / log_px.exp()) < 0.5
    short, _ = m.decode([[1, 2]], num_sweeps=2)
    assert len(short[0]) == 2


def test_perplexity_and_score_match_exact_evidence():
    """Filter estimates with P = 1000 over 10 seeds: SE across seeds; the Jensen bias of
    log Zhat at this size (measured < 0.1 SE) is inside the tolerance."""
    m, prior, log_phi = tiny_ssl()
    docs = [DOC, [5, 5, 1, 0, 0], [4, 4, 4, 1, 1, 0, 2, 3, 1]]
    log_p = [float(enumerate_paths(prior, log_phi, torch.tensor(d))[2]) for d in docs]
    N = sum(len(d) for d in docs)
    seeds = tuple(range(10))
    ppl = m.perplexity(docs, num_particles=1000, seeds=seeds)
    exact_ppl = math.exp(-sum(log_p) / N)
    se = ppl.std / math.sqrt(len(seeds))
    assert 0 < se < 0.01
    assert abs(ppl.mean - exact_ppl) <= Z_SIGMA * se, (ppl.mean, exact_ppl, se)
    # completion: the tokens after T1 given the first T1
    T1 = 3
    log_prefix = [float(enumerate_paths(prior, log_phi, torch.tensor(d[:T1]))[2]) for d in docs]
    exact_c = math.exp(-(sum(log_p) - sum(log_prefix)) / (N - T1 * len(docs)))
    c = m.perplexity(docs, T1=T1, num_particles=1000, seeds=seeds)
    assert abs(c.mean - exact_c) <= Z_SIGMA * c.std / math.sqrt(len(seeds)), (c.mean, exact_c)
    # score: per token by default; per_token=False is hmmlearn's total log p(X)
    per_tok = m.score(docs, num_particles=1000, seeds=seeds)
    total = m.score(docs, num_particles=1000, seeds=seeds, per_token=False)
    assert total.mean == pytest.approx(per_tok.mean * N)
    assert abs(total.mean - sum(log_p)) <= Z_SIGMA * total.std / math.sqrt(len(seeds))
    assert ppl.values == pytest.approx([math.exp(-v) for v in per_tok.values], rel=1e-9)  # seed by seed


def test_verbs_use_the_configured_eval_particles():
    m, _, _ = tiny_ssl(eval_particles=7)
    assert m.perplexity([DOC], seeds=(0,)).num_particles == 7
    assert m.score([DOC], seeds=(0,)).num_particles == 7
