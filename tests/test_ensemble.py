"""SnapshotEnsemble: snapshots taken along one chain without changing it, the equal-weight
mixture of their predictions, and a save/load round trip."""

import json
import math

import pytest
import torch

import pyro_ssl
from helpers import PETS_AND_MARKETS as TEXTS
from pyro_ssl import SnapshotEnsemble
from pyro_ssl.data import Corpus


SMALL = dict(K=3, hidden_size=8, num_particles=4, batch_size=5, dropout=0.3, ancestor_lag=2, eval_particles=64)


@pytest.fixture(scope="module")
def corpus():
    return Corpus.from_texts(TEXTS, vocab_size=50)


@pytest.fixture(scope="module")
def ensemble(corpus):
    return SnapshotEnsemble(pyro_ssl.SSL(**SMALL), every=2, size=3).fit(corpus, epochs=6, progress=False)


def _batch(corpus):
    return pyro_ssl.baselines.pad_docs(corpus.tolist())


def test_snapshots_are_taken_along_the_same_chain(corpus, ensemble):
    """Members at epochs 2, 4, 6; the base ends where a straight 6-epoch fit ends (snapshots do
    not touch the chain), the last member equals it, and earlier members were not changed by the
    training after them (they differ from the final model)."""
    assert ensemble.epochs == [2, 4, 6]
    straight = pyro_ssl.SSL(**SMALL).fit(corpus, epochs=6, progress=False)
    assert torch.equal(ensemble.base.log_phi, straight.log_phi)
    assert torch.equal(ensemble.members[-1].log_phi, straight.log_phi)
    for a, b in zip(ensemble.members[-1].model.state_dict().values(), straight.model.state_dict().values()):
        assert torch.equal(a, b)
    two = pyro_ssl.SSL(**SMALL).fit(corpus, epochs=2, progress=False)
    assert torch.equal(ensemble.members[0].log_phi, two.log_phi)
    for a, b in zip(ensemble.members[0].model.state_dict().values(), two.model.state_dict().values()):
        assert torch.equal(a, b)
    assert not torch.equal(ensemble.members[0].log_phi, ensemble.members[-1].log_phi)


def test_predictions_are_the_equal_weight_mixture_of_the_members(corpus, ensemble):
    tokens, lengths = _batch(corpus)
    lengths = lengths.clone()
    lengths[0] -= 3  # padding inside the batch
    each = torch.stack([m.token_log_probs(tokens, lengths, seed=1).double() for m in ensemble.members])
    mix = ensemble.token_log_probs(tokens, lengths, seed=1)
    expected = each.exp().mean(0).log()
    mask = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]
    assert torch.allclose(mix[mask], expected[mask], atol=1e-12, rtol=0)
    assert torch.all(mix[~mask] == 0)
    # Jensen: the mixture beats the members' geometric mean at every token where they differ
    # (averaging log-probabilities instead would give equality)
    assert torch.all(mix[mask] >= each.mean(0)[mask] - 1e-12)
    assert float(mix.sum()) > float(each.mean(0).sum()) + 1e-3


def test_completion_perplexity_and_score_follow_from_the_mixture(corpus, ensemble):
    tokens, lengths = _batch(corpus)
    est = ensemble.completion_perplexity(tokens, lengths, T1=4, seeds=(0, 1))
    for s, v in zip((0, 1), est.values):
        lp = ensemble.token_log_probs(tokens, lengths, seed=s)[:, 4:]
        assert v == pytest.approx(math.exp(-float(lp.sum()) / int((lengths - 4).sum())), rel=1e-12)
    sc = ensemble.score(corpus, seeds=(0,))
    lp = ensemble.token_log_probs(tokens, lengths, seed=0)
    assert sc.mean == pytest.approx(float(lp.sum()) / int(lengths.sum()), rel=1e-9)


def test_one_member_is_the_model_itself(corpus, ensemble):
    tokens, lengths = _batch(corpus)
    one = SnapshotEnsemble.from_members(ensemble.members[-1:])
    assert torch.allclose(one.token_log_probs(tokens, lengths, seed=3),
                          ensemble.members[-1].token_log_probs(tokens, lengths, seed=3).double(), atol=1e-12, rtol=0)


def test_save_load_round_trip_and_a_tampered_index(ensemble, corpus, tmp_path):
    tokens, lengths = _batch(corpus)
    path = ensemble.save(tmp_path / "ens")
    back = SnapshotEnsemble.load(path)
    assert back.epochs == ensemble.epochs
    assert torch.equal(back.token_log_probs(tokens, lengths, seed=2), ensemble.token_log_probs(tokens, lengths, seed=2))
    index = json.loads((path / "ensemble.json").read_text())
    index["members"][0] = "../../elsewhere"
    (path / "ensemble.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="not a SnapshotEnsemble index"):
        SnapshotEnsemble.load(path)
    with pytest.raises(FileNotFoundError, match="ensemble.json"):
        SnapshotEnsemble.load(tmp_path / "nothing")


def test_bad_settings_are_refused(corpus):
    with pytest.raises(ValueError, match="too few"):
        SnapshotEnsemble(pyro_ssl.SSL(**SMALL), every=5, size=3).fit(corpus, epochs=8, progress=False)
    trained = pyro_ssl.SSL(**SMALL).fit(corpus, epochs=3, progress=False)
    with pytest.raises(ValueError, match="past the first snapshot"):
        SnapshotEnsemble(trained, every=1, size=2).fit(corpus, epochs=3, progress=False)
    with pytest.raises(ValueError):
        SnapshotEnsemble(pyro_ssl.SSL(**SMALL), every=0)
    with pytest.raises(TypeError):
        SnapshotEnsemble("model")
    with pytest.raises(ValueError, match="at least one member"):
        SnapshotEnsemble.from_members([])
    with pytest.raises(RuntimeError, match="no members"):
        SnapshotEnsemble(pyro_ssl.SSL(**SMALL)).token_log_probs(torch.zeros(1, 2, dtype=torch.long), torch.tensor([2]))
