"""Random small problems and what must hold on each (issue 15): shared by
``tests/test_properties.py`` (a bounded, derandomised sample) and ``benchmarks/soak.py`` (thousands).

A problem is a corpus (1-5 documents of length 1-40, wildly unequal allowed, vocabularies down to
one word, identical documents), settings (K down to 1, particles, float32/float64, every kernel,
look-ahead, emission, phi update, start, batch sizes below and above the corpus, dropout, sweeps)
and a completion prefix ``T1`` below and above the document lengths. :func:`check_problem` fits it
(1-2 epochs), scores it, completes it, predicts, samples, saves and loads it, and returns the
failed properties: no crash, no NaN/inf in any output, parameter or history entry, round trips
identical.
"""

from __future__ import annotations

import math
import tempfile

import torch
from hypothesis import strategies as st

import pyro_ssl


@st.composite
def problems(draw):
    V = draw(st.integers(1, 7))
    D = draw(st.integers(1, 5))
    lengths = [draw(st.sampled_from([1, 1, 2, 3, 5, 8, 13, 40])) for _ in range(D)]
    same = draw(st.booleans())
    docs = [[draw(st.integers(0, V - 1)) for _ in range(n)] for n in lengths]
    if same:  # identical documents
        docs = [list(docs[0]) for _ in range(D)]
    kernel = draw(st.sampled_from(["ancestor", "blocked"]))
    emission = draw(st.sampled_from(["leave_out", "global", "collapsed"]))
    settings = dict(
        K=draw(st.integers(1, 3)),
        hidden_size=draw(st.sampled_from([1, 4])),
        num_particles=draw(st.integers(2, 4)),
        ancestor_lag=draw(st.sampled_from([0, 1, 3, "full"])) if kernel == "blocked" or emission != "collapsed" else 0,
        kernel=kernel,
        block_size=draw(st.integers(1, 4)),
        emission=emission,
        phi_update=draw(st.sampled_from(["smoothed", "gibbs"])) if emission == "global" else "smoothed",
        init=draw(st.sampled_from(["smc", "uniform", "hmm"])),
        batch_size=draw(st.integers(1, D + 2)),
        mstep_iters=draw(st.integers(0, 2)),
        dropout=draw(st.sampled_from([0.0, 0.3])),
        sweeps_per_epoch=draw(st.integers(1, 2)),
        warmup_epochs=draw(st.integers(0, 2)),
        beta=draw(st.sampled_from([1e-3, 0.1, 2.0])),
        seed=draw(st.integers(0, 2**31)),
    )
    settings["block_stride"] = draw(st.integers(1, settings["block_size"]))
    return dict(docs=docs, V=V, settings=settings, epochs=draw(st.integers(1, 2)),
                dtype=draw(st.sampled_from([torch.float32, torch.float64])),
                T1=draw(st.integers(0, max(lengths) + 2)))


def _finite(x) -> bool:
    if torch.is_tensor(x):
        return not x.is_floating_point() or bool(torch.isfinite(x).all())
    if isinstance(x, float):
        return math.isfinite(x)
    if isinstance(x, (list, tuple)):
        return all(_finite(v) for v in x)
    if isinstance(x, dict):
        return all(_finite(v) for v in x.values())
    return True


def check_problem(p: dict) -> list[str]:
    """Run every verb on problem ``p``; returns the violated properties ("nan: ...", "roundtrip: ...").
    Exceptions propagate (a crash)."""
    bad = []
    docs, V, dtype = p["docs"], p["V"], p["dtype"]
    m = pyro_ssl.fit(docs, epochs=p["epochs"], vocab_size=V, dtype=dtype, progress=False, **p["settings"])
    if not _finite(m.log_phi):
        bad.append("nan: log_phi")
    for k, v in m.model.state_dict().items():
        if not _finite(v):
            bad.append(f"nan: weight {k}")
    for e in m.history:
        if not _finite(e):
            bad.append(f"nan: history epoch {e.get('epoch')}")
    if len(m.history) != p["epochs"]:
        bad.append(f"history: {len(m.history)} epochs, expected {p['epochs']}")
    est = m.score(docs, num_particles=3, seeds=(0, 1))
    if not _finite(est.values):
        bad.append(f"nan: score {est.values}")
    tokens, lengths, _, _ = pyro_ssl.estimator.as_tokens(docs, V)
    if bool((lengths > p["T1"]).any()):
        ppl = m.completion_perplexity(tokens, lengths, p["T1"], num_particles=3, seeds=(0,))
        if not (_finite(ppl.values) and ppl.mean >= 1.0 - 1e-6):
            bad.append(f"nan: completion perplexity {ppl.values}")
    else:
        try:
            m.completion_perplexity(tokens, lengths, p["T1"], num_particles=3, seeds=(0,))
            bad.append("validation: T1 >= every length was accepted")
        except ValueError:
            pass
    paths = m.predict(docs, num_sweeps=1, seed=1)
    K = m.K
    if [len(z) for z in paths] != [len(d) for d in docs] or any(not 0 <= k < K for z in paths for k in z):
        bad.append("predict: paths of the wrong length or outside [0, K)")
    z, w = m.sample(2, 3, temperature=0.7, seed=2)
    if int(z.min()) < 0 or int(z.max()) >= K or int(w.min()) < 0 or int(w.max()) >= V:
        bad.append("sample: ids out of range")
    with tempfile.TemporaryDirectory() as d:
        loaded = pyro_ssl.SSL.load(m.save(d))
        if not torch.equal(loaded.log_phi, m.log_phi):
            bad.append("roundtrip: log_phi")
        for (k, a), b in zip(m.model.state_dict().items(), loaded.model.state_dict().values()):
            if not torch.equal(a, b):
                bad.append(f"roundtrip: weight {k}")
        if loaded.score(docs, num_particles=3, seeds=(0, 1)).values != est.values:
            bad.append("roundtrip: score differs after load")
        if loaded.get_params() != m.get_params() or loaded.dtype != m.dtype:
            bad.append("roundtrip: settings")
    return bad
