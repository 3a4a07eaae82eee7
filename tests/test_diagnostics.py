"""Several chains to ArviZ InferenceData, R-hat / ESS, and per-position sampler statistics."""

import math

import arviz as az
import numpy as np
import pytest
import torch

from pyro_ssl.diagnostics import (
    ancestors_matrix,
    convergence_summary,
    ess_matrix,
    histories_to_inference_data,
    history_trace,
    run_chains,
    update_rate_matrix,
)

SMALL = dict(K=3, hidden_size=8, num_particles=4, batch_size=8)


@pytest.fixture(scope="module")
def docs():
    g = torch.Generator().manual_seed(0)
    return [torch.randint(15, (int(torch.randint(6, 12, (), generator=g)),), generator=g).tolist() for _ in range(14)]


@pytest.fixture(scope="module")
def chains(docs):
    return run_chains(docs[:10], num_chains=3, epochs=4, eval_data=docs[10:], eval_particles=20, **SMALL)


def test_run_chains_inference_data(chains, docs):
    models, idata = chains
    assert len(models) == 3 and [m.seed for m in models] == [0, 1, 2]
    post = idata.posterior
    assert set(post.data_vars) == {"log_joint_per_token", "heldout_log_lik"}
    assert post["log_joint_per_token"].shape == (3, 4)
    for c, m in enumerate(models):
        np.testing.assert_array_equal(post["log_joint_per_token"].values[c], history_trace(m, "log_joint_per_token"))
        held = post["heldout_log_lik"].values[c]
        assert np.all(np.isfinite(held)) and np.all(held < 0)
        # each draw is the model's per-token held-out score at that epoch (recorded by run_chains)
        assert held[-1] == m.history[-1]["heldout_log_lik"]
    assert list(post["draw"].values) == [1, 2, 3, 4]
    T = max(len(d) for d in docs[:10])
    assert idata.sample_stats["update_rate"].shape == (3, 4, T)
    assert idata.sample_stats["ess"].dims == ("chain", "draw", "position")
    assert "mstep_loss" in idata.sample_stats
    # chains from different seeds differ
    assert not np.array_equal(post["log_joint_per_token"].values[0], post["log_joint_per_token"].values[1])


def test_convergence_summary_matches_arviz(chains):
    _, idata = chains
    summ = convergence_summary(idata)
    assert set(summ) == {"log_joint_per_token", "heldout_log_lik"}
    for name, s in summ.items():
        assert s["chains"] == 3 and s["draws"] == 4
        assert math.isclose(s["rhat"], float(az.rhat(idata, var_names=[name])[name]), rel_tol=1e-12)
        assert math.isclose(s["ess_bulk"], float(az.ess(idata, var_names=[name])[name]), rel_tol=1e-12)
        assert s["rhat"] > 0.5 and s["ess_bulk"] > 0


def test_rhat_separates_agreeing_and_disagreeing_chains():
    """Synthetic histories: iid chains around one value give R-hat ~ 1; shifted chains do not."""
    rng = np.random.default_rng(0)
    same = [[{"epoch": i + 1, "log_joint_per_token": float(v)} for i, v in enumerate(rng.normal(0, 1, 200))]
            for _ in range(4)]
    shifted = [[{"epoch": i + 1, "log_joint_per_token": float(v + 5 * c)} for i, v in enumerate(rng.normal(0, 1, 200))]
               for c in range(4)]
    assert abs(convergence_summary(histories_to_inference_data(same))["log_joint_per_token"]["rhat"] - 1) < 0.02
    assert convergence_summary(histories_to_inference_data(shifted))["log_joint_per_token"]["rhat"] > 2


def test_completion_eval_gives_heldout_trace(docs):
    tokens = torch.tensor([d[:6] for d in docs[10:]])
    lengths = torch.full((4,), 6)
    models, idata = run_chains(docs[:10], num_chains=2, epochs=2, eval_data=(tokens, lengths, 3),
                               eval_particles=10, seed=7, **SMALL)
    assert [m.seed for m in models] == [7, 8]
    post = idata.posterior
    assert {"completion_ppl", "heldout_log_lik"} <= set(post.data_vars)
    np.testing.assert_allclose(post["heldout_log_lik"].values, -np.log(post["completion_ppl"].values))


def test_position_matrices(chains):
    m = chains[0][0]
    h = m.history
    ur, es, an = update_rate_matrix(h), ess_matrix(m), ancestors_matrix(h)
    T = len(h[0]["update_rate"])
    assert ur.shape == es.shape == an.shape == (4, T)
    np.testing.assert_array_equal(ur[2], h[2]["update_rate"])
    assert np.all((ur >= 0) & (ur <= 1))
    P = m.config.sampler.num_particles
    assert np.all((es >= 1 - 1e-9) & (es <= P + 1e-9))
    assert np.all((an >= 1 - 1e-9) & (an <= P + 1e-9))
    # ragged rows pad with NaN
    ragged = update_rate_matrix([{"update_rate": [0.5, 0.2]}, {"update_rate": [0.1]}])
    assert ragged.shape == (2, 2) and np.isnan(ragged[1, 1])


def test_bad_inputs():
    with pytest.raises(ValueError, match="num_chains"):
        run_chains([[0, 1]], num_chains=0)
    with pytest.raises(ValueError, match="at least one epoch"):
        histories_to_inference_data([[{"log_joint_per_token": 1.0}]], burn_in=1)
