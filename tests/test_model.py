"""The Pyro model and the sampler's fast paths compute the same log joint (SPEC section 1)."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyro_ssl.model import LSTMPrior, TopicalSSL, TopicSequence, length_mask, log_joint


@pytest.fixture
def ssl():
    pyro.set_rng_seed(0)
    m = TopicalSSL(K=4, V=7, hidden_size=6, dropout=0.3, beta=0.5).double()
    m.prior.eval()
    return m


def test_traced_log_joint_equals_fast_log_joint(ssl):
    g = torch.Generator().manual_seed(1)
    B, T = 5, 9
    lengths = torch.tensor([9, 3, 7, 1, 9])
    x = torch.randint(7, (B, T), generator=g)
    z = torch.randint(4, (B, T), generator=g)
    phi = torch.distributions.Dirichlet(torch.ones(7, dtype=torch.float64)).sample((4,))
    # Padding holds garbage on purpose: it must not count.
    cond = poutine.condition(ssl.model, data={"z": z, "phi": phi})
    tr = poutine.trace(cond).get_trace(x, lengths)
    traced = tr.log_prob_sum()
    fast = log_joint(ssl.prior, phi.log(), x, z, lengths).sum()
    phi_prior = dist.Dirichlet(torch.full((7,), 0.5, dtype=torch.float64)).log_prob(phi).sum()
    assert torch.allclose(traced, fast + phi_prior, atol=1e-10, rtol=0)
    # And changing a padded entry changes nothing, changing a real one does.
    x2 = x.clone()
    x2[1, 5] = (x2[1, 5] + 1) % 7
    assert torch.allclose(log_joint(ssl.prior, phi.log(), x2, z, lengths), log_joint(ssl.prior, phi.log(), x, z, lengths))
    x2[1, 0] = (x2[1, 0] + 1) % 7
    assert not torch.allclose(log_joint(ssl.prior, phi.log(), x2, z, lengths), log_joint(ssl.prior, phi.log(), x, z, lengths))


def test_step_path_equals_teacher_forced_path(ssl):
    prior = ssl.prior
    g = torch.Generator().manual_seed(2)
    z = torch.randint(4, (3, 8), generator=g)
    seq = prior.sequence_log_prob(z)
    state, z_prev = prior.initial_state((3,))
    table = prior.input_table()
    total = torch.zeros(3, dtype=torch.float64)
    for t in range(8):
        log_pi, state = prior.step(z_prev, state, table)
        total += log_pi.gather(-1, z[:, t : t + 1]).squeeze(-1)
        z_prev = z[:, t]
    assert torch.allclose(seq, total, atol=1e-12)


def test_dropout_only_in_training_mode(ssl):
    z = torch.randint(4, (2, 6))
    prior = ssl.prior
    a, b = prior.sequence_log_prob(z), prior.sequence_log_prob(z)
    assert torch.equal(a, b)
    prior.train()
    c = prior.sequence_log_prob(z)
    prior.eval()
    assert not torch.allclose(a, c)


def test_model_generates_masked_documents(ssl):
    lengths = torch.tensor([4, 2])
    tr = poutine.trace(ssl.model).get_trace(None, lengths, T=4)
    z, x = tr.nodes["z"]["value"], tr.nodes["x"]["value"]
    assert z.shape == x.shape == (2, 4)
    assert z.dtype == torch.long and int(z.max()) < 4
    assert (z[1, 2:] == 0).all()
    assert tr.nodes["phi"]["value"].shape == (4, 7)


def test_topic_sequence_distribution_shapes(ssl):
    d = TopicSequence(ssl.prior, torch.tensor([3, 5]), 5)
    assert d.batch_shape == (2,) and d.event_shape == (5,)
    z = d.sample()
    assert d.log_prob(z).shape == (2,)
    assert length_mask(torch.tensor([3, 5]), 5).sum() == 8


def test_bad_hyperparameters_raise():
    with pytest.raises(ValueError):
        LSTMPrior(0)
    with pytest.raises(ValueError):
        TopicalSSL(3, 5, beta=0.0)
    with pytest.raises(ValueError):
        LSTMPrior(3, dropout=1.0)
