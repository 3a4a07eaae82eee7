"""Early stopping on a validation set: patience, min_delta, the best state restored, checkpoints."""

import pytest
import torch

from pyro_ssl import SSL
from pyro_ssl.infer.stopping import EarlyStopping

from helpers import simulated_corpus

FAST = dict(K=3, hidden_size=8, num_particles=4, batch_size=20, warmup_epochs=0, seed=0)


def test_patience_logic():
    state = {"w": torch.zeros(2)}
    s = EarlyStopping(patience=2, min_delta=0.1)
    values = [10.0, 9.0, 8.95, 9.5]  # perplexities: improve, improve, too little, worse -> stop
    stops = []
    for epoch, v in enumerate(values, 1):
        state["w"] += 1
        stops.append(s.update({"epoch": epoch, "completion_ppl": v}, lambda: state))
    assert stops == [False, False, False, True]
    assert s.best_epoch == 2 and s.best_value == 9.0 and s.bad == 2
    assert torch.equal(s.best_state["w"], torch.full((2,), 2.0))  # a copy, not the live tensor
    h = EarlyStopping(patience=1)
    assert not h.update({"epoch": 1, "heldout_log_lik": -3.0}, dict)
    assert not h.update({"epoch": 2, "heldout_log_lik": -2.5}, dict)  # higher is better
    assert h.update({"epoch": 3, "heldout_log_lik": -2.6}, dict)
    assert not h.update({"epoch": 4}, dict)  # an epoch without evaluation does not count
    with pytest.raises(ValueError):
        EarlyStopping(0)


def _fit_recording(data, valid, epochs, **settings):
    snaps = {}

    def record(ssl, entry):
        snaps[entry["epoch"]] = (ssl.log_phi.clone(), {k: v.clone() for k, v in ssl.model.state_dict().items()})

    m = SSL(**FAST, **settings).fit(data, epochs=epochs, eval_data=valid, eval_particles=20, callback=record,
                                    progress=False)
    return m, snaps


def test_fit_stops_after_patience_and_restores_the_best_epoch():
    docs = simulated_corpus(D=50, T=20)
    train, valid = docs[:40], docs[40:]
    # min_delta larger than any change: the first evaluation stays the best, so the fit must
    # stop after 1 + patience epochs with epoch 1's state restored.
    m, snaps = _fit_recording(train, valid, 10, patience=2, min_delta=100.0)
    assert len(m.history) == 3 and m.best_epoch == 1
    assert all("heldout_log_lik" in e for e in m.history)
    assert torch.equal(m.log_phi, snaps[1][0]) and not torch.equal(m.log_phi, snaps[3][0])
    for k, v in m.model.state_dict().items():
        assert torch.equal(v, snaps[1][1][k]), k
    assert m._em.epoch == 3  # the counter is not rewound
    # without a stop the best epoch is still restored at the end
    m2, snaps2 = _fit_recording(train, valid, 4, patience=10)
    lls = [e["heldout_log_lik"] for e in m2.history]
    best = max(range(4), key=lambda i: lls[i]) + 1
    assert len(m2.history) == 4 and m2.best_epoch == best
    assert torch.equal(m2.log_phi, snaps2[best][0])
    # a completion set is monitored by perplexity
    t = torch.tensor([d + d[:5] for d in valid])
    m3 = SSL(**FAST, patience=1, min_delta=1e6).fit(train, epochs=5, eval_data=(t, torch.full((10,), 25), 15),
                                                    eval_particles=20, progress=False)
    assert len(m3.history) == 2 and "completion_ppl" in m3.history[0]


def test_warmup_epochs_are_not_watched():
    """The warm-up only places the exact chain: with min_delta larger than any change the first
    evaluation after the warm-up stays the best, whatever the warm-up's values were."""
    docs = simulated_corpus(D=50, T=20)
    m = SSL(**dict(FAST, warmup_epochs=2), patience=1, min_delta=100.0).fit(
        docs[:40], epochs=8, eval_data=docs[40:], eval_particles=20, progress=False)
    assert [e["warmup"] for e in m.history] == [True, True, False, False]
    assert m.best_epoch == 3 and all("heldout_log_lik" in e for e in m.history)


def test_patience_needs_validation_data_and_pg():
    docs = simulated_corpus(D=10, T=10)
    with pytest.raises(ValueError, match="validation"):
        SSL(**FAST, patience=2).fit(docs, epochs=2, progress=False)
    with pytest.raises(ValueError, match="pg"):
        SSL(**FAST, patience=2).fit(docs, epochs=2, eval_data=docs[:2], method="svi", progress=False)


def test_resumed_fit_keeps_the_best_state(tmp_path):
    docs = simulated_corpus(D=30, T=15)
    train, valid = docs[:24], docs[24:]
    kw = dict(eval_data=valid, eval_particles=20, progress=False, checkpoint_dir=tmp_path)
    full = SSL(**FAST, patience=2, min_delta=100.0).fit(train, epochs=6, eval_data=valid, eval_particles=20,
                                                         progress=False)
    SSL(**FAST, patience=2, min_delta=100.0).fit(train, epochs=2, **kw)  # "interrupted" after 2 epochs
    resumed = SSL(**FAST, patience=2, min_delta=100.0).fit(train, epochs=6, resume=True, **kw)
    assert len(resumed.history) == len(full.history) == 3 and resumed.best_epoch == 1
    assert torch.equal(resumed.log_phi, full.log_phi)
