"""The evaluator's particle filters: keyed per document, so chunking (and processes) do not
change what a document is scored with, and still unbiased for ``p(x)``.

Statistical checks follow ``tests/test_smc.py``: float64, fixed seeds, ``Z_SIGMA`` standard
errors measured over independent filters (one per document key).
"""

import math

import pytest
import torch

from pyro_ssl.evaluation import default_chunk_size, filter_log_increments
from pyro_ssl.smc import get_resampler
from pyro_ssl.smc.uniforms import KeyedStepUniforms, keyed_rows

from exact import enumerate_paths
from helpers import ragged_docs, tiny_model

Z_SIGMA = 5.0


def _docs(D=9):
    return ragged_docs(D, seed=2, max_length=13)


@pytest.mark.parametrize("resampling", ["systematic", "multinomial"])
def test_keyed_step_uniforms_are_each_documents_stream_in_any_window(resampling):
    """Step ``t``'s slot ``j`` is output ``2 + t S + j`` of the document's stream, whatever the
    window the source makes at once; output 1 is the final choice's."""
    P, T, ids, seed = 4, 9, torch.tensor([3, 0, 11]), 7
    R = get_resampler(resampling).num_uniforms(P)
    S = R + P
    rows = keyed_rows(ids, 1 + T * S, seed, "filter")  # outputs 1 .. 1 + T S
    want = rows[:, 1:].view(3, T, S).to(torch.float64)
    for window in (1, S * 3 * 2, 1 << 18):  # one step, two steps, all
        u = KeyedStepUniforms(seed, ids, P, resample_slots=R, dtype=torch.float64, window_values=window)
        assert torch.equal(u.final(), rows[:, :1])
        for t in range(T):
            assert torch.equal(u.resample(t, R), want[:, t, :R])
            assert torch.equal(u.proposal(t), want[:, t, R:].unsqueeze(-1))
    u = KeyedStepUniforms(seed, ids, P, resample_slots=R, window_values=1)
    u.proposal(3)
    with pytest.raises(ValueError, match="increasing steps"):
        u.proposal(2)
    with pytest.raises(ValueError, match="resampling slots"):
        u.resample(T - 1, R + 1)


@pytest.mark.parametrize("resampling", ["systematic", "multinomial"])
def test_filter_estimates_do_not_depend_on_the_chunking(resampling):
    """A document's increments are its own stream's whatever the chunk it shares or the rows
    around it (up to floating-point round-off in batched products: float64 here)."""
    prior, log_phi = tiny_model()
    x, lengths = _docs()
    whole = filter_log_increments(prior, log_phi, x, lengths, 16, resampling=resampling, chunk_size=len(x))
    for chunk in (1, 4, None):
        got = filter_log_increments(prior, log_phi, x, lengths, 16, resampling=resampling, chunk_size=chunk)
        assert torch.allclose(got, whole, atol=1e-10, rtol=0), (chunk, (got - whole).abs().max())
    # another seed is another stream
    other = filter_log_increments(prior, log_phi, x, lengths, 16, resampling=resampling, seed=1)
    assert (other - whole).abs().max() > 1e-3


@pytest.mark.parametrize("resampling", ["systematic", "multinomial"])
def test_keyed_filter_evidence_is_unbiased(resampling):
    """``Zhat`` from the keyed filter is unbiased: the mean of ``Zhat / p(x)`` over 20,000
    documents (each its own key) is 1 within ``Z_SIGMA`` standard errors (sd / sqrt(N), measured;
    0.0009-0.0012 here; the means sit 0.7 and 1.5 SE from 1). Planted bug: document keys that repeat every 7 rows fail both cases
    (61 and 273 SE). Proposals that reuse the resampling uniforms do not show here (the fully
    adapted weights do not depend on the drawn topic); the layout test above catches those."""
    prior, log_phi = tiny_model()
    x = torch.tensor([0, 3, 3, 5, 1])
    _, _, log_px = enumerate_paths(prior, log_phi, x)
    N = 20000
    inc = filter_log_increments(prior, log_phi, x.expand(N, 5), torch.full((N,), 5), 4, resampling=resampling,
                                chunk_size=5000)
    ratio = (inc.sum(-1) - log_px).exp()
    se = ratio.std() / math.sqrt(N)
    assert abs(ratio.mean() - 1) < Z_SIGMA * se, (ratio.mean(), se)


def test_default_chunks_hold_a_few_thousand_particles():
    assert default_chunk_size(1000, 50, 64) == 6  # 2^21 floats of (P, 4 H + K) per step
    assert default_chunk_size(10, 50, 64) == 685
    assert default_chunk_size(1000, 3, 8) == 59  # a tiny model: many documents per pass
    assert default_chunk_size(100_000, 50, 64) == 1
    assert default_chunk_size(1000, 50, 64, "cuda") == 400  # a GPU: passes as large as memory allows


def test_two_processes_score_what_one_does():
    """``workers=2`` splits the rows over two spawned processes; each row keeps its key, so the
    estimates are one process's (float64: to round-off), for one seed and for several at once."""
    from pyro_ssl.evaluation import completion_perplexity, seeds_log_increments

    prior, log_phi = tiny_model()
    x, lengths = _docs(D=11)
    one = seeds_log_increments(prior, log_phi, x, lengths, 16, (0, 5))
    two = seeds_log_increments(prior, log_phi, x, lengths, 16, (0, 5), workers=2)
    assert two.shape == one.shape == (2, 11, x.shape[1])
    assert torch.allclose(two, one, atol=1e-10, rtol=0), (two - one).abs().max()
    a = completion_perplexity(prior, log_phi, x, lengths, 3, 16, seeds=(0, 5))
    b = completion_perplexity(prior, log_phi, x, lengths, 3, 16, seeds=(0, 5), workers=3)
    assert a.values == pytest.approx(b.values, rel=1e-12)


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_bad_worker_counts_are_refused(bad):
    prior, log_phi = tiny_model()
    x, lengths = _docs()
    with pytest.raises(ValueError, match="workers"):
        filter_log_increments(prior, log_phi, x, lengths, 4, workers=bad)


def test_run_shares_returns_the_shares_in_order_and_raises_a_share_error():
    from pyro_ssl.runtime import run_shares

    from helpers import share_or_fail

    got = run_shares(share_or_fail, (2,), [(0, 2), (2, 3)])
    assert [t.tolist() for t in got] == [[0, 2], [4]]
    with pytest.raises(Exception, match="share starting at 3 refused"):
        run_shares(share_or_fail, (2,), [(0, 3), (3, 5)])


def test_kept_processes_serve_every_call_and_report_a_share_error():
    """Inside ``kept_processes`` the same processes compute every ``run_shares`` call (so the
    start-up is paid once); a share's error is raised and the processes stay usable (every
    reply is read first); outside, each call starts its own processes. Planted: replies left
    unread after an error make the next call return the failed call's shares."""
    import pyro_ssl.runtime as runtime
    from pyro_ssl.runtime import kept_processes, run_shares

    from helpers import share_or_fail, share_pid

    with kept_processes(2):
        kept = [p.pid for p in runtime._kept.procs]
        first = run_shares(share_pid, (), [(0, 2), (2, 5)])
        assert [t[0].item() for t in first] == kept and [t[1:].tolist() for t in first] == [[0, 2], [2, 5]]
        with pytest.raises(RuntimeError, match="share starting at 3 refused"):
            run_shares(share_or_fail, (2,), [(3, 4), (0, 3)])
        assert [t.tolist() for t in run_shares(share_or_fail, (3,), [(0, 2), (4, 5)])] == [[0, 3], [12]]
        assert [t[0].item() for t in run_shares(share_pid, (), [(7, 8)])] == kept[:1]
    assert runtime._kept is None
    fresh = run_shares(share_pid, (), [(0, 1), (1, 2)])
    assert not {t[0].item() for t in fresh} & set(kept)
    # A process that dies is reported, not waited for; later calls start processes of their own.
    with kept_processes(2):
        runtime._kept.procs[1].kill()
        runtime._kept.procs[1].join()
        with pytest.raises(RuntimeError, match="process 1 ended"):
            run_shares(share_pid, (), [(0, 1), (1, 2)])
        assert [t[1:].tolist() for t in run_shares(share_pid, (), [(0, 1), (1, 2)])] == [[0, 1], [1, 2]]


def test_fit_keeps_its_scoring_processes_for_every_validation_score():
    """``eval_workers=2`` in a one-process fit: every epoch's validation score comes from the
    same two processes, started once, and equals one process's (keyed rows)."""
    import pyro_ssl.runtime as runtime
    from pyro_ssl import SSL

    from helpers import simulated_corpus

    seen = []

    def record(ssl, entry):
        seen.append(tuple(p.pid for p in runtime._kept.procs) if runtime._kept is not None else None)

    settings = dict(K=3, hidden_size=8, num_particles=4, seed=0, epochs=3, dtype=torch.float64)
    docs = simulated_corpus(D=20, T=15)
    train, valid = docs[:16], docs[16:]
    one = SSL(**settings).fit(train, vocab_size=12, eval_data=valid, eval_particles=8, progress=False)
    two = SSL(eval_workers=2, **settings).fit(train, vocab_size=12, eval_data=valid, eval_particles=8,
                                              progress=False, callback=record)
    assert len(seen) == 3 and seen[0] is not None and len(set(seen)) == 1 and len(seen[0]) == 2
    assert runtime._kept is None  # stopped with the fit
    a, b = [e["heldout_log_lik"] for e in one.history], [e["heldout_log_lik"] for e in two.history]
    assert b == pytest.approx(a, rel=1e-10)
