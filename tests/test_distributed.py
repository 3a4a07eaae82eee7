"""Keyed randomness and the data-parallel fit: one learning loop, one random stream.

* A sweep with :class:`~pyro_ssl.smc.uniforms.KeyedUniforms` gives each document the same path
  whatever the other documents of its batch (alone, in another order, with other lengths).
* Keyed particle Gibbs is still a correct sampler (marginals against enumeration).
* ``SSL.fit`` in one process and ``fit_distributed`` on two ``gloo`` processes, same seed:
  identical topic paths, counts and ``phi``; LSTM weights equal to float64 round-off. A
  resumed 2-process run continues exactly as the uninterrupted 1-process one.
"""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from pyro_ssl.smc import FULL_LAG, csmc_sweep, particle_filter
from pyro_ssl.smc.resampling import inverse_cdf
from pyro_ssl.smc.uniforms import KeyedUniforms, mix_key

from helpers import ragged_docs as _docs, tiny_model

Z_SIGMA = 5.0


def _sweep(prior, log_phi, x, lengths, ids, ref, lag, P=5, key=(3, 1), resampling="multinomial"):
    T = x.shape[1]
    u = KeyedUniforms(11, ids, lengths, T, P, key, dtype=torch.float64)
    return csmc_sweep(prior, log_phi, x, lengths, P, ref, ancestor_lag=lag, resampling=resampling, uniforms=u)


# ---------------------------------------------------------------------------- keyed noise
def test_mix_key_is_stable_and_order_sensitive():
    assert mix_key(1, 2, 3) == mix_key(1, 2, 3)
    assert len({mix_key(1, 2, 3), mix_key(3, 2, 1), mix_key(1, 2, 4), mix_key(1, "sweep", 3)}) == 4
    assert 0 <= mix_key(2**70, -5) < 2**63


def test_noise_of_a_document_does_not_depend_on_its_batch():
    a = KeyedUniforms(0, [4, 9], [3, 5], T=5, num_particles=2, key=(1, 0))
    b = KeyedUniforms(0, [9], [5], T=8, num_particles=2, key=(1, 0))
    assert torch.equal(a.proposal(2)[1], b.proposal(2)[0])
    assert torch.equal(a.resample(4, 2)[1], b.resample(4, 2)[0])
    assert torch.equal(a.final()[1], b.final()[0])
    c = KeyedUniforms(0, [9], [5], T=5, num_particles=2, key=(2, 0))  # another epoch
    assert not torch.equal(a.proposal(0)[1], c.proposal(0)[0])


def test_inverse_cdf_is_multinomial():
    g = torch.Generator().manual_seed(0)
    w = torch.tensor([[0.1, 0.6, 0.3]], dtype=torch.float64)
    u = torch.rand(1, 200000, generator=g, dtype=torch.float64)
    idx = inverse_cdf(w.log(), u)
    freq = torch.bincount(idx[0], minlength=3).double() / u.shape[1]
    assert torch.allclose(freq, w[0], atol=5 * (0.25 / u.shape[1]) ** 0.5)


@pytest.mark.parametrize("lag", [0, 2, FULL_LAG])
def test_keyed_sweep_paths_do_not_depend_on_batch_composition(lag):
    prior, log_phi = tiny_model()
    x, lengths = _docs()
    D = x.shape[0]
    ids = torch.arange(100, 100 + D)
    ref = torch.randint(3, x.shape, generator=torch.Generator().manual_seed(2))
    full = _sweep(prior, log_phi, x, lengths, ids, ref, lag)
    for d in range(D):  # each document alone, at its own length
        n = int(lengths[d])
        alone = _sweep(prior, log_phi, x[d : d + 1, :n], lengths[d : d + 1], ids[d : d + 1], ref[d : d + 1, :n], lag)
        assert torch.equal(alone.path[0], full.path[d, :n])
        assert torch.allclose(alone.log_Z[0], full.log_Z[d], atol=1e-12)
    perm = torch.tensor([5, 2, 6, 0])  # another composition and order
    T = int(lengths[perm].max())
    part = _sweep(prior, log_phi, x[perm, :T], lengths[perm], ids[perm], ref[perm, :T], lag)
    assert torch.equal(part.path, full.path[perm, :T])
    other_key = _sweep(prior, log_phi, x, lengths, ids, ref, lag, key=(4, 1))
    assert not torch.equal(other_key.path, full.path)


@pytest.mark.parametrize("resampling", ["multinomial", "systematic", "stratified"])
def test_keyed_particle_filter_does_not_depend_on_batch(resampling):
    prior, log_phi = tiny_model()
    x, lengths = _docs(seed=5)
    ids = torch.arange(x.shape[0])
    full = _sweep(prior, log_phi, x, lengths, ids, None, 0, resampling=resampling)
    half = slice(2, 5)
    T = int(lengths[half].max())
    part = _sweep(prior, log_phi, x[half, :T], lengths[half], ids[half], None, 0, resampling=resampling)
    assert torch.equal(part.path, full.path[half, :T])
    assert torch.allclose(part.log_Z, full.log_Z[half], atol=1e-12)


def test_generator_and_keyed_sources_run_the_same_sweep():
    prior, log_phi = tiny_model()
    x, lengths = _docs()
    ref = torch.zeros_like(x)
    a = csmc_sweep(prior, log_phi, x, lengths, 4, ref, ancestor_lag=2, generator=torch.Generator().manual_seed(0))
    b = csmc_sweep(prior, log_phi, x, lengths, 4, ref, ancestor_lag=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.path, b.path)
    pf = particle_filter(prior, log_phi, x, lengths, 4, uniforms=KeyedUniforms(0, range(7), lengths, x.shape[1], 4))
    assert pf.path.shape == x.shape


@pytest.mark.parametrize("P,lag", [(4, 0), (2, FULL_LAG)])
def test_keyed_particle_gibbs_marginals_match_enumeration(P, lag):
    """Keyed draws are still the right draws: one keyed sweep from exact posterior draws leaves
    p(z | x) invariant, against enumeration of all 3^7 paths (the design of
    tests/test_smc.py: SE across 256,000 independent chains, <= 0.001, so a marginal off by
    0.005 fails). Planted bug: keyed proposals read from the ancestor slots (a particle's topic
    then correlates with its own resampling draw) fails the full-lag case by 7.8 SE (0.0072)."""
    from test_smc import INVARIANCE_CHAINS, RESOLUTION, _exact_draws, _pg_problem

    prior, log_phi, x, paths, log_post, exact = _pg_problem()
    start = _exact_draws(paths, log_post, INVARIANCE_CHAINS, seed=1)
    K, T = prior.K, x.shape[0]
    per_chain = []
    for lo in range(0, INVARIANCE_CHAINS, 64_000):
        ref = start[lo : lo + 64_000]
        c = ref.shape[0]
        lengths = torch.full((c,), T)
        u = KeyedUniforms(7, torch.arange(lo, lo + c), lengths, T, P, (0, 0), dtype=torch.float64)
        path = csmc_sweep(prior, log_phi, x.expand(c, T), lengths, P, ref, ancestor_lag=lag, uniforms=u).path
        per_chain.append(torch.nn.functional.one_hot(path, K).double())
    per_chain = torch.cat(per_chain)
    est, se = per_chain.mean(0), per_chain.std(0) / per_chain.shape[0] ** 0.5
    assert float(se.max()) <= RESOLUTION
    z = (est - exact).abs() / se.clamp_min(1e-6)
    assert (z <= Z_SIGMA).all(), ((est - exact).abs().max(), z.max())


# ---------------------------------------------------------------------------- distributed fit
SETTINGS = dict(K=3, epochs=3, hidden_size=8, num_particles=4, ancestor_lag=2, batch_size=7, mstep_iters=2,
                dropout=0.2, lr=0.05, seed=5, init="smc")
FIT = dict(SETTINGS, dtype=torch.float64, progress=False, return_paths=True)


def _corpus(D=23, V=15, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 16, (D,), generator=g)
    return [torch.randint(V, (int(n),), generator=g).tolist() for n in lengths]


def _summary(fit):
    return {
        "paths": fit.paths,
        "counts": fit.counts.cpu(),
        "log_phi": fit.ssl.log_phi.cpu(),
        "weights": {k: v.cpu() for k, v in fit.ssl.model.state_dict().items()},
        "history": fit.history,
    }


def _worker(rank, world_size, init_method, data_dir, ckpt_dir, out_dir, extra):
    import faulthandler

    import torch.distributed as dist

    faulthandler.enable(all_threads=True)  # a crash in a worker prints where every thread was

    from pyro_ssl.data.ondisk import OnDiskCorpus
    from pyro_ssl.distributed import fit_distributed, leave_worker

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
    try:
        data = OnDiskCorpus.open(data_dir)
        fit = dict(FIT, **extra)
        straight = fit_distributed(data, **fit)
        # Interrupted after 2 epochs, resumed by every rank from rank 0's checkpoint.
        fit_distributed(data, **dict(fit, epochs=2), checkpoint_dir=ckpt_dir)
        resumed = fit_distributed(data, **fit, checkpoint_dir=ckpt_dir, resume=True)
        torch.save({"straight": _summary(straight), "resumed": _summary(resumed),
                    "local_docs": len(straight.em.local_lengths)},
                   os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()  # every rank past its last collective before any tears its group down
    finally:
        dist.destroy_process_group()
    leave_worker()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("extra", [dict(preset="heuristic"),
                                   dict(warmup_epochs=1, block_size=5, block_stride=3, batch_size=11)],
                         ids=["heuristic", "default-warmup-then-exact"])
def test_two_gloo_processes_match_ssl_fit_in_one_process(tmp_path, extra):
    """The heuristic E-step, and the default: one warm-up epoch, then the exact blocked collapsed
    E-step, where every rank takes part in every acceptance decision of the global minibatch.
    Each rank sweeps an even share of every minibatch or group, whichever rank stores the
    documents (planted bug: the new paths not summed back fails both cases; documents of different
    lengths: different block counts; groups of 5, 5 and 1 of each minibatch of 11 and 11, a
    quarter of the 23 documents, and a last minibatch of 1: a rank with no share)."""
    from pyro_ssl import SSL
    from pyro_ssl.data.ondisk import write_ondisk
    from pyro_ssl.io import CHECKPOINT_FILE

    docs = _corpus()
    write_ondisk(docs, tmp_path / "corpus", V=15)  # the workers read it
    one = SSL(dtype=torch.float64, **dict(SETTINGS, **extra)).fit(docs, vocab_size=15, progress=False)
    assert len(one.history) == 3
    ckpt = tmp_path / "ckpt"
    os.makedirs(ckpt)
    mp.spawn(_worker, args=(2, f"tcp://127.0.0.1:{_free_port()}", str(tmp_path / "corpus"), str(ckpt), str(tmp_path),
                            extra), nprocs=2, join=True)
    assert (ckpt / CHECKPOINT_FILE).is_file()  # written by rank 0
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert sorted(r["local_docs"] for r in ranks) == [11, 12]  # each rank swept only its shard
    ref = {"paths": one._em.gather_paths(), "counts": one._em.counts, "log_phi": one.log_phi,
           "weights": one.model.state_dict(), "history": one.history}
    for r in ranks:
        for run in ("straight", "resumed"):
            got = r[run]
            # Discrete state and everything computed from integer counts: exactly equal.
            assert torch.equal(got["paths"], ref["paths"])
            assert torch.equal(got["counts"], ref["counts"])
            assert torch.equal(got["log_phi"], ref["log_phi"])
            # LSTM weights: gradients summed in another order, float64 round-off only.
            for k, w in ref["weights"].items():
                assert torch.allclose(got["weights"][k], w, rtol=0, atol=1e-10), k
            for a, b in zip(got["history"], ref["history"]):
                assert a["log_joint_per_token"] == pytest.approx(b["log_joint_per_token"], abs=1e-9)
                assert a["update_rate"] == pytest.approx(b["update_rate"], abs=1e-12)
    # The paths moved, and the counts are the paths' counts.
    assert max(ref["history"][-1]["update_rate"]) > 0
    assert float(ref["counts"].sum()) == sum(len(d) for d in docs)


def test_resume_on_one_process_and_checkpoint_contents(tmp_path):
    from pyro_ssl.distributed import fit_distributed
    from pyro_ssl.io import CHECKPOINT_FILE, load_checkpoint

    docs = _corpus(D=10)
    cfg = dict(FIT, init="uniform", emission="global", batch_size=4, phi_update="gibbs")
    full = fit_distributed(docs, **cfg)
    fit_distributed(docs, **dict(cfg, epochs=1), checkpoint_dir=tmp_path)
    state = load_checkpoint(tmp_path / CHECKPOINT_FILE)  # checksummed, weights_only=True
    assert state["epoch"] == 1 and state["em"]["paths"].numel() == sum(map(len, docs)) and len(state["history"]) == 1
    resumed = fit_distributed(docs, **cfg, checkpoint_dir=tmp_path, resume=True)
    assert torch.equal(resumed.paths, full.paths)
    assert torch.equal(resumed.counts, full.counts)
    assert torch.equal(resumed.ssl.log_phi, full.ssl.log_phi)
    with pytest.raises(ValueError, match="different training data"):
        fit_distributed(docs[:-1], **cfg, checkpoint_dir=tmp_path, resume=True)


def test_distributed_rejects_hmm_start_before_any_work():
    from pyro_ssl.distributed import fit_distributed

    with pytest.raises(ValueError, match="hmm"):
        fit_distributed(_corpus(D=4), **dict(FIT, init="hmm"))


def test_command_line_world_size_one(tmp_path):
    from pyro_ssl.data.ondisk import write_ondisk
    from pyro_ssl.distributed import main

    write_ondisk(_corpus(D=8), tmp_path / "c", V=15)
    rc = main(["--data", str(tmp_path / "c"), "-K", "3", "--epochs", "1", "--hidden-size", "8", "--particles", "3",
               "--batch-size", "4", "--mstep-iters", "1", "--out", str(tmp_path / "model"), "--log",
               str(tmp_path / "log.jsonl"), "--quiet"])
    assert rc == 0 and (tmp_path / "model" / "config.json").is_file()
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 1


def test_keyed_dropout_masks_do_not_depend_on_batch():
    from pyro_ssl.smc import uniforms

    def masks(ids, lengths, T):
        u = uniforms.keyed_document_uniforms(torch.tensor(ids), torch.tensor(lengths), T, 40, 0, "dropout", 1, 2)
        keep = (u >= 0.25).double() / 0.75
        return keep[..., :16], keep[..., 16:]

    a_in, a_out = masks([3, 7], [5, 9], 9)
    b_in, b_out = masks([7], [9], 12)
    assert torch.equal(a_in[1], b_in[0, :9]) and torch.equal(a_out[1], b_out[0, :9])
    assert not torch.equal(a_in[0, :5], a_in[1, :5])
    big, _ = masks(list(range(64)), [50] * 64, 50)
    kept = (big > 0).double().mean()
    assert abs(float(kept) - 0.75) < 0.01 and torch.allclose(big[big > 0], torch.tensor(1 / 0.75, dtype=torch.float64))


def test_keyed_streams_are_uniform_and_independent():
    """The counter-based generator: moments, lag-1 correlation and the pairs of halves. Planted
    bug: the stream without SplitMix64's output mixing (a bare Weyl sequence) fails the lag-1
    correlation (0.42 against a bound of 0.005)."""
    from pyro_ssl.smc import uniforms

    u = uniforms.keyed_rows(torch.arange(200), 5000, 0, "sweep", 1).reshape(-1)  # 10^6 draws
    n = u.numel()
    assert abs(float(u.mean()) - 0.5) < 5 * (1 / 12 / n) ** 0.5
    assert abs(float(u.var()) - 1 / 12) < 5 * (1 / 180 / n) ** 0.5
    r = float(torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1])
    assert abs(r) < 5 / n**0.5
    counts = torch.histc(u, bins=100, min=0.0, max=1.0)
    chi2 = float(((counts - n / 100) ** 2 / (n / 100)).sum())
    assert chi2 < 99 + 5 * (2 * 99) ** 0.5
    h = uniforms.keyed_document_uniforms(torch.arange(100), torch.full((100,), 100), 100, 100, 0, "dropout")
    h = h.reshape(-1, 2).double()  # the two 24-bit halves of one 64-bit output
    r = float(torch.corrcoef(h.T)[0, 1])
    assert abs(r) < 5 / h.shape[0] ** 0.5
    assert torch.equal(uniforms.keyed_rows(torch.tensor([7]), 10, 3, "init", 0)[0], uniforms.keyed_uniform(10, 3, "init", 0, 7))


def test_documented_launch_commands_parse():
    import re
    import shlex
    from pathlib import Path

    from pyro_ssl.distributed import build_parser

    text = (Path(__file__).resolve().parent.parent / "docs" / "scaling.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M)
    commands = [ln.strip() for b in blocks for ln in b.replace("\\\n", " ").splitlines()
                if "-m pyro_ssl.distributed" in ln and not ln.strip().startswith("#")]
    assert len(commands) >= 3
    for cmd in commands:
        args = shlex.split(cmd)
        build_parser().parse_args(args[args.index("pyro_ssl.distributed") + 1 :])


def _shared_sums_worker(rank, shared, calls, out_dir):
    import time

    shared = shared.for_rank(rank)
    got = []
    for c in range(calls):
        g = torch.Generator().manual_seed(1000 * c + rank)
        n = int(torch.randint(1, 40_000, (1,), generator=torch.Generator().manual_seed(c)))  # same size on every rank
        t = torch.randn(n, generator=g, dtype=torch.float64)
        op = "max" if c % 5 == 4 else "sum"
        if c % 3 == rank:  # one rank late now and then: the others run ahead into the next call
            time.sleep(0.002)
        assert shared.reduce(t, op)
        got.append(t)
    i = torch.arange(6, dtype=torch.int64) * (rank + 1)
    assert shared.reduce(i)
    too_big = torch.ones(shared.capacity // 8 + 1, dtype=torch.float64)
    assert not shared.reduce(too_big) and bool((too_big == 1).all())  # left for the process group
    assert not shared.reduce(torch.ones(4, 4, dtype=torch.float64).t()[0])  # not contiguous
    torch.save({"got": got, "ints": i}, os.path.join(out_dir, f"sums{rank}.pt"))


def test_shared_memory_sums_equal_the_plain_sum_on_every_rank(tmp_path):
    """:class:`SharedSums` over 3 processes: every call's result is the rank-ordered sum (or max),
    bit for bit on every rank, with ranks arriving late in turn. Planted bug: one slot set instead
    of two (a fast rank writes its next call into a slot a slow rank still reads) fails here."""
    from pyro_ssl.distributed import SharedSums

    W, calls = 3, 150
    shared = SharedSums(W)
    procs = mp.spawn(_shared_sums_worker, args=(shared, calls, str(tmp_path)), nprocs=W, join=False)
    shared.close_parent_ends()
    while not procs.join():
        pass
    res = [torch.load(tmp_path / f"sums{r}.pt") for r in range(W)]
    for c in range(calls):
        n = int(torch.randint(1, 40_000, (1,), generator=torch.Generator().manual_seed(c)))
        parts = [torch.randn(n, generator=torch.Generator().manual_seed(1000 * c + r), dtype=torch.float64)
                 for r in range(W)]
        want = parts[0].clone()
        for p in parts[1:]:
            want = torch.maximum(want, p) if c % 5 == 4 else want + p
        for r in range(W):
            assert torch.equal(res[r]["got"][c], want), (c, r)
    for r in range(W):
        assert torch.equal(res[r]["ints"], torch.arange(6) * 6)


def test_fit_with_workers_returns_the_one_process_model(tmp_path):
    """``pyro_ssl.fit(..., workers=2)`` (two gloo processes, the hot sums in shared memory) gives
    the model of ``workers=1``."""
    import pyro_ssl

    docs = _corpus()
    kw = dict(SETTINGS, dtype=torch.float64, vocab_size=15, progress=False)
    one = pyro_ssl.fit(docs, **kw)
    two = pyro_ssl.fit(docs, workers=2, **kw)
    # After the start every sum went through shared memory; counted per epoch (two epochs of the
    # same minibatch layout make the same calls), not since the start.
    calls = [(e["comm_calls_shared"], e["comm_calls_group"]) for e in two.history]
    assert calls[1] == calls[2] and calls[2][0] > 0 and calls[2][1] == 0, calls
    assert torch.equal(one.log_phi, two.log_phi)
    for name, w in one.model.state_dict().items():
        assert torch.allclose(w, two.model.state_dict()[name], atol=1e-10, rtol=0), name
    assert len(two.history) == len(one.history)
    for a, b in zip(one.history, two.history):
        assert abs(a["log_joint_per_token"] - b["log_joint_per_token"]) < 1e-9
    with pytest.raises(TypeError, match="workers=1"):
        pyro_ssl.fit(docs, workers=2, callback=lambda m, e: False, **kw)
    with pytest.raises(ValueError, match="workers"):
        pyro_ssl.fit(docs, workers=0, **kw)


def test_workers_score_the_validation_set_and_stop_early_as_one_process():
    """With ``eval_data`` and ``patience``, each of two processes scores half the validation
    documents (keyed as in the whole set) and the sums are summed: the recorded values equal one
    process's up to the order of the sums, and early stopping restores the same best epoch
    (``lr`` high enough that validation worsens within a few epochs)."""
    import pyro_ssl

    docs = _corpus(D=30)
    valid = _corpus(D=9, seed=3)
    tokens = torch.zeros(len(valid), max(map(len, valid)), dtype=torch.long)
    for i, d in enumerate(valid):
        tokens[i, : len(d)] = torch.tensor(d)
    lengths = torch.tensor([len(d) for d in valid])
    kw = dict(SETTINGS, epochs=8, warmup_epochs=1, lr=0.3, patience=2, dtype=torch.float64, vocab_size=15,
              progress=False, eval_data=(tokens, lengths, 2), eval_particles=12)
    one = pyro_ssl.fit(docs, **kw)
    two = pyro_ssl.fit(docs, workers=2, **kw)
    ppl = [[e.get("completion_ppl") for e in m.history] for m in (one, two)]
    assert len(ppl[0]) < 8 and ppl[0][-1] is not None, ppl  # it did stop early
    assert ppl[1] == pytest.approx(ppl[0], rel=1e-9), ppl
    assert two.best_epoch == one.best_epoch < len(one.history)
    assert torch.equal(two.log_phi, one.log_phi)  # the best epoch's state, restored on every rank


def test_hot_loops_run_on_the_package_thread_setting_and_restore_the_callers():
    import pyro_ssl
    from pyro_ssl.runtime import hot_loop

    seen = []
    probe = hot_loop(lambda: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        probe()
        assert seen[-1] == 1 and torch.get_num_threads() == 2  # default one thread, caller's 2 restored
        pyro_ssl.set_threads(2)
        torch.set_num_threads(1)
        probe()
        assert seen[-1] == 2 and torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="threads"):
            pyro_ssl.set_threads(0)
    finally:
        pyro_ssl.set_threads(1)
        torch.set_num_threads(before)
