"""Seed-size benchmark: one CSMC sweep, one M-step, one EM epoch, and two baselines.

The seed's size is 200 documents x 100 tokens, P = 10 particles, K = 50 topics, H = 64 hidden
units, V = 5000 words (synthetic Zipf tokens, a randomly initialised prior). Measured, per
thread count (``torch.set_num_threads``):

* ``csmc_sweep`` with ``diagnostics`` off/on and ``ancestor_lag`` 0 and 5;
* ``particle_filter`` (the unconditional pass, compared with ``SMCFilter``);
* one ``PriorMStep.step`` on 200 x 100 paths;
* one ``StochasticEM.run_epoch`` (``batch_size=200``, ``mstep_iters=1``);

the floor of a filter pass: the library kernels every pass of this model runs (the two matrix
products, the LSTM's sigmoids, the proposal's exps) timed alone at the pass's shapes, whose sum
bounds a pass built on these kernels from below on this core, and the two products apart (they
run at about 100 GFLOP/s here; a hand-written sigmoid might beat torch's); ``--fused`` also times the
LSTM's elementwise part compiled by ``torch.compile``, which needs a C++ compiler;

and, in the same run, two baselines of the same algorithm:

(a) a plain per-document Python loop (vectorised over particles only), timed on a subset of
    documents and extrapolated linearly to 200 (documents are independent);
(b) Pyro's ``pyro.infer.SMCFilter`` running the same model with the fully adapted proposal
    and the same number of particles, one document and one step at a time, timed on a few
    documents and extrapolated.

Usage::

    python benchmarks/bench_sweep.py                 # threads 1, 2, 2 passive: about 5 minutes
    python benchmarks/bench_sweep.py --quick         # fewer repeats, threads 1 only
    python benchmarks/bench_sweep.py --threads 1 --smcfilter-docs 4 --fused   # the floor against SMCFilter

Each thread configuration runs in its own process; ``2p`` sets ``OMP_WAIT_POLICY=PASSIVE``
(OpenMP threads sleep instead of spinning while they wait), which is what keeps two threads
usable on a box where other processes hold the cores.
    python benchmarks/bench_sweep.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402
    SEED_ALGORITHM,
    SEED_SIZE,
    Timing,
    em_config,
    load_average,
    machine_line,
    random_log_phi,
    stochastic_em,
    synthetic_corpus,
    table,
    timeit,
)

from pyro_ssl.evaluation import seeds_log_increments  # noqa: E402
from pyro_ssl.infer.mstep import PriorMStep  # noqa: E402
from pyro_ssl.runtime import kept_processes  # noqa: E402
from pyro_ssl.model import LSTMPrior, TopicalSSL  # noqa: E402
from pyro_ssl.smc.csmc import csmc_sweep, particle_filter  # noqa: E402


# ----------------------------------------------------------------------------- baseline (a)
@torch.no_grad()
def loop_csmc_document(prior: LSTMPrior, log_phi, x, ref, P: int, generator) -> torch.Tensor:
    """Plain conditional SMC for ONE document, vectorised over its ``P`` particles only.

    The same algorithm as ``csmc_sweep`` (lag 0, multinomial resampling, fully adapted
    proposal, reference at particle 0), written the straightforward way: the LSTM cell from
    its weight matrices, ``torch.tanh``, advanced indexing, one Python iteration per token.

    Args:
        x, ref: ``(T,)`` words and reference topics. Returns the new ``(T,)`` path.
    """
    lstm, K, H = prior.lstm, prior.K, prior.hidden_size
    T = x.shape[0]
    h = torch.zeros(P, H)
    c = torch.zeros(P, H)
    z_prev = torch.full((P,), K, dtype=torch.long)
    log_w = torch.full((P,), -math.log(P))
    ancestors, topics = [], []
    for t in range(T):
        gates = F.linear(prior.embed(z_prev), lstm.weight_ih_l0, lstm.bias_ih_l0) + F.linear(
            h, lstm.weight_hh_l0, lstm.bias_hh_l0
        )
        i, f, g, o = gates.chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        log_pi = torch.log_softmax(prior.out(h), -1)
        if t == 0:
            a = torch.arange(P)
        else:
            a = torch.multinomial(torch.softmax(log_w, -1), P, replacement=True, generator=generator)
            a[0] = 0
            log_pi, h, c = log_pi[a], h[a], c[a]
        log_gamma = log_pi + log_phi[:, x[t]]
        log_alpha = torch.logsumexp(log_gamma, -1)
        z = torch.multinomial(torch.softmax(log_gamma, -1), 1, generator=generator).squeeze(-1)
        z[0] = ref[t]
        log_w = log_alpha - torch.logsumexp(log_alpha, -1)
        ancestors.append(a)
        topics.append(z)
        z_prev = z
    r = int(torch.multinomial(log_w.exp(), 1, generator=generator))
    path = torch.empty(T, dtype=torch.long)
    for t in range(T - 1, -1, -1):
        path[t] = topics[t][r]
        r = int(ancestors[t][r])
    return path


# ----------------------------------------------------------------------------- baseline (b)
def make_smcfilter_pair(prior: LSTMPrior, log_phi: torch.Tensor):
    """Model and guide objects for ``pyro.infer.SMCFilter``: the SSL, one token per ``step``.

    The guide proposes ``z_t`` from the fully adapted ``pi * phi[:, x_t]``, so the importance
    weight SMCFilter computes (``log p(z) + log p(x | z) - log q(z)``) is ``log alpha_t``, as in
    our sweep. To be fair to SMCFilter the LSTM step is computed once per token: the guide
    (which may only read the state) leaves it for the model in a cache.
    """
    import pyro
    import pyro.distributions as dist

    from pyro_ssl.model import LSTMState

    class Guide:
        def __init__(self):
            self.cache = None

        def init(self, state):
            pass

        def step(self, state, x_t):
            log_pi, (h, c) = prior.step(state["z"], LSTMState(state["h"], state["c"]))
            self.cache = (log_pi, h, c)
            pyro.sample("z", dist.Categorical(logits=log_pi + log_phi[:, x_t]))

    class Model:
        def __init__(self, guide):
            self.guide = guide

        def init(self, state):
            P = state._num_particles
            state["h"] = torch.zeros(P, prior.hidden_size)
            state["c"] = torch.zeros(P, prior.hidden_size)
            state["z"] = torch.full((P,), prior.K, dtype=torch.long)

        def step(self, state, x_t):
            log_pi, h, c = self.guide.cache
            z = pyro.sample("z", dist.Categorical(logits=log_pi))
            pyro.factor("x", log_phi[z, x_t])
            state["h"], state["c"], state["z"] = h, c, z

    guide = Guide()
    return Model(guide), guide


@torch.no_grad()
def smcfilter_document(prior, log_phi, x, P: int) -> None:
    """One SMCFilter pass over one document (always resampling, like our filter)."""
    from pyro.infer import SMCFilter

    model, guide = make_smcfilter_pair(prior, log_phi)
    smc = SMCFilter(model, guide, num_particles=P, max_plate_nesting=0, ess_threshold=1.0)
    smc.init()
    for t in range(x.shape[0]):
        smc.step(x[t])


# ----------------------------------------------------------------------------- the floor
def lstm_elementwise(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM step's elementwise part as ``LSTMPrior.step`` computes it (the g block pre-doubled).

    ``gates`` ``(N, 4H)`` after the recurrent product and the input rows, ``c`` ``(N, H)``; returns
    ``(h, c)``, each ``(N, H)``. Out of place, so it can be compiled and timed repeatedly.
    """
    i, f, g2, o = gates.sigmoid().chunk(4, dim=-1)
    c = torch.addcmul(f * c, i, g2 * 2.0 - 1.0)
    return ((c * 2.0).sigmoid() * 2.0 - 1.0) * o, c


def _repeat(fn, n: int) -> None:
    """``fn()`` ``n`` times, its results dropped at once (kept, they would cost fresh memory each call)."""
    for _ in range(n):
        fn()


def floor_kernels(prior: LSTMPrior, N: int, T: int, repeats: int, fused: bool) -> dict:
    """The library kernels that every filter pass of this model runs, at the pass's shapes, ``T`` times.

    Per step and particle row (``N`` rows): the recurrent product ``(N, H) x (H, 4H)``, the output
    layer ``(N, H) x (H, K)``, five sigmoids per hidden unit (the four gates, and ``tanh(c)`` as
    ``2 sigmoid(2 c) - 1``) and the proposal's ``K`` exps. Timed alone (no gathers, sampling or
    resampling, no other elementwise work), their sum bounds a pass built on these kernels from
    below on this core, whatever is fused around them. ``fused`` also times :func:`lstm_elementwise` eager and compiled
    by ``torch.compile`` (inductor, static shapes; needs a C++ compiler).
    """
    H, K = prior.hidden_size, prior.K
    g = torch.Generator().manual_seed(0)
    h = torch.randn(N, H, generator=g)
    w_hh, w_out = torch.randn(H, 4 * H, generator=g) * 0.1, torch.randn(H, K, generator=g) * 0.1
    b_out = torch.zeros(K)
    gates, logits = torch.randn(N, 4 * H, generator=g), torch.randn(N, K, generator=g)
    gates_out, c, c_out, e_out = torch.empty(N, 4 * H), torch.randn(N, H, generator=g), torch.empty(N, H), torch.empty(N, K)
    kernels = {
        "recurrent GEMM": lambda: torch.mm(h, w_hh, out=gates_out),
        "output GEMM": lambda: torch.addmm(b_out, h, w_out, out=e_out),
        "sigmoids (5 H per row)": lambda: (torch.sigmoid(gates, out=gates_out), torch.sigmoid(c, out=c_out)),
        "exps (K per row)": lambda: torch.exp(logits, out=e_out),
    }
    out = {}
    with torch.inference_mode():
        for name, fn in kernels.items():
            out[f"floor: {name}"] = timeit(lambda fn=fn: _repeat(fn, T), repeats)
        if fused:
            out["fused: LSTM elementwise, eager"] = timeit(lambda: _repeat(lambda: lstm_elementwise(gates, c), T), repeats)
            try:
                compiled = torch.compile(lstm_elementwise, dynamic=False)
                t0 = time.perf_counter()
                compiled(gates, c)
                out["fused: compile seconds"] = time.perf_counter() - t0
                out["fused: LSTM elementwise, torch.compile"] = timeit(lambda: _repeat(lambda: compiled(gates, c), T),
                                                                        repeats)
            except Exception as e:  # no C++ compiler, or inductor unavailable: say so
                out["fused: not available"] = f"{type(e).__name__}: {str(e)[:200]}"
    return out


# ----------------------------------------------------------------------------- main
def run(threads: int, args) -> dict:
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    s = SEED_SIZE
    D, T, P, K, H, V = s["D"], s["T"], s["P"], s["K"], s["H"], s["V"]
    torch.manual_seed(0)
    tokens, lengths = synthetic_corpus(D, T, V, seed=0)
    log_phi = random_log_phi(K, V, seed=0)
    model = TopicalSSL(K, V, hidden_size=H)
    prior = model.prior.eval()
    ref = torch.randint(K, (D, T))
    gen = torch.Generator().manual_seed(0)
    R = args.repeats
    out: dict = {"threads": threads, "load_before": load_average()}

    def sweep(lag, diag):
        return lambda: csmc_sweep(
            prior, log_phi, tokens, lengths, P, ref, ancestor_lag=lag, diagnostics=diag, generator=gen
        )

    for lag in (0, 5):
        for diag in (False, True):
            out[f"sweep lag={lag} diagnostics={diag}"] = timeit(sweep(lag, diag), R)
    out["particle filter pass"] = timeit(lambda: particle_filter(prior, log_phi, tokens, lengths, P, generator=gen), R)
    if args.processes > 1 and threads == 1:
        # Both cores, as the evaluator uses them: the keyed filter (each document its own stream)
        # in one process, and split over processes kept across calls (kept_processes; their
        # start-up is timed apart, once). Wall time only: the work runs in the other processes.
        keyed = lambda workers: seeds_log_increments(prior, log_phi, tokens, lengths, P, (0,), workers=workers)  # noqa: E731
        out["keyed filter pass, 1 process"] = timeit(lambda: keyed(1), R)
        t0 = time.perf_counter()
        with kept_processes(args.processes):
            keyed(args.processes)  # the first call waits for the processes to start
            out["kept processes' start-up and first pass"] = time.perf_counter() - t0
            out[f"keyed filter pass, {args.processes} kept processes"] = timeit(lambda: keyed(args.processes), R)

    out.update(floor_kernels(prior, D * P, T, R, args.fused))

    mstep = PriorMStep(prior)
    paths = torch.randint(K, (D, T))
    out["M-step (PriorMStep.step)"] = timeit(lambda: mstep.step(paths, lengths), R)

    # The epoch twice: the seed's algorithm (plain CSMC, global phi), and the package's
    # current SSLConfig defaults (e.g. ancestor sampling) at the same batch size and M-steps.
    out["epoch parts"] = {}
    for label, cfg in (
        ("EM epoch, seed algorithm",
         em_config(K=K, num_particles=P, batch_size=D, mstep_iters=1, seed=0, **SEED_ALGORITHM)),
        ("EM epoch, current defaults", em_config(K=K, num_particles=P, batch_size=D, mstep_iters=1, seed=0)),
    ):
        em = stochastic_em(TopicalSSL(K, V, hidden_size=H), tokens, lengths, cfg)
        em.initialize()
        parts = []
        out[f"{label} (run_epoch)"] = timeit(lambda: parts.append(em.run_epoch()), max(3, R // 2))
        last = parts[-1]
        out["epoch parts"][label] = {
            "config": {k: v for k, v in cfg.flat().items()
                       if k in ("ancestor_lag", "emission", "batch_size", "mstep_iters")},
            **{k: round(last[k], 3) for k in ("estep_seconds", "mstep_seconds", "seconds") if k in last},
        }

    # (a) plain loop, on a subset of documents, extrapolated to D.
    n_loop = args.loop_docs
    loop = timeit(
        lambda: [loop_csmc_document(prior, log_phi, tokens[d], ref[d], P, gen) for d in range(n_loop)],
        max(1, R // 3),
    )
    out["loop sweep (extrapolated)"] = loop.scaled(D / n_loop)
    # (b) SMCFilter, a few documents, extrapolated to D.
    if not args.no_smcfilter:
        n_smc = args.smcfilter_docs
        smc = timeit(lambda: [smcfilter_document(prior, log_phi, tokens[d], P) for d in range(n_smc)], 1)
        out["SMCFilter pass (extrapolated)"] = smc.scaled(D / n_smc)
    out["load_after"] = load_average()
    return out


def report(results: list[dict], args) -> str:
    rows = []
    names = [k for k, v in results[0].items() if isinstance(v, Timing)]
    for name in names:
        cells = [name]
        for r in results:
            t = r[name]
            cells += [f"{t.wall:.3f}", f"{t.cpu:.3f}"]
        rows.append(tuple(cells))
    headers = ("seconds (median)",)
    for r in results:
        headers += (f"wall, {r['threads']} thr", f"CPU, {r['threads']} thr")
    lines = [table(rows, headers), ""]
    ratio_rows = []
    for r in results:
        sw = r["sweep lag=0 diagnostics=False"]
        pf = r["particle filter pass"]
        lp = r["loop sweep (extrapolated)"]
        row = [str(r["threads"]), f"{lp.wall / sw.wall:.1f}x", f"{lp.cpu / sw.cpu:.1f}x"]
        if "SMCFilter pass (extrapolated)" in r:
            sm = r["SMCFilter pass (extrapolated)"]
            row += [f"{sm.wall / pf.wall:.0f}x", f"{sm.cpu / pf.cpu:.0f}x"]
        else:
            row += ["-", "-"]
        row += [r["load_before"], r["load_after"]]
        ratio_rows.append(tuple(row))
    lines.append(
        table(
            ratio_rows,
            ("threads", "loop / sweep (wall)", "loop / sweep (CPU)", "SMCFilter / filter (wall)",
             "SMCFilter / filter (CPU)", "load before", "load after"),
        )
    )
    for r in results:
        kept = [k for k in r if k.startswith("keyed filter pass, ") and k.endswith("kept processes")]
        if kept and "SMCFilter pass (extrapolated)" in r:
            sm, one, many = r["SMCFilter pass (extrapolated)"], r["keyed filter pass, 1 process"], r[kept[0]]
            start = r["kept processes' start-up and first pass"]
            lines.append(
                f"both cores, the evaluator's keyed filter (wall): 1 process {one.wall:.3f} s = "
                f"{sm.wall / one.wall:.0f}x SMCFilter; {kept[0][len('keyed filter pass, '):]} {many.wall:.3f} s = "
                f"{sm.wall / many.wall:.0f}x SMCFilter ({one.wall / many.wall:.2f}x one process); the processes' "
                f"start-up with their first pass, once: {start:.2f} s")
    for r in results:
        if "SMCFilter pass (extrapolated)" not in r:
            continue
        sm, pf = r["SMCFilter pass (extrapolated)"].wall, r["particle filter pass"].wall
        floor = {k[len("floor: "):]: v.wall for k, v in r.items() if k.startswith("floor: ")}
        total = sum(floor.values())
        parts = ", ".join(f"{k} {v:.3f}" for k, v in floor.items())
        lines.append(
            f"floor, {r['threads']} thread(s) (wall s per pass, each kernel alone): {parts}; sum {total:.3f} s. "
            f"Ceiling against SMCFilter: {sm / total:.0f}x on one core, {2 * sm / total:.0f}x on two cores split "
            f"perfectly; the filter pass measured {pf:.3f} s = {sm / pf:.0f}x")
        products = floor["recurrent GEMM"] + floor["output GEMM"]
        lines.append(
            f"the two matrix products alone: {products:.3f} s, a ceiling of {sm / products:.0f}x on one core and "
            f"{2 * sm / products:.0f}x on two")
        if "fused: LSTM elementwise, eager" in r:
            eager = r["fused: LSTM elementwise, eager"].wall
            if "fused: LSTM elementwise, torch.compile" in r:
                comp = r["fused: LSTM elementwise, torch.compile"].wall
                lines.append(
                    f"fused LSTM elementwise part per pass: eager {eager:.3f} s, torch.compile (inductor, static "
                    f"shapes) {comp:.3f} s = {eager / comp:.2f}x; compiling took {r['fused: compile seconds']:.1f} s")
            else:
                lines.append(f"fused LSTM elementwise part: eager {eager:.3f} s; compiled not available "
                             f"({r.get('fused: not available')})")
    lines.append("")
    lines.append(
        f"Loop baseline: {args.loop_docs} documents timed, x{SEED_SIZE['D'] / args.loop_docs:g}; "
        f"SMCFilter: {args.smcfilter_docs} documents timed once, x{SEED_SIZE['D'] / args.smcfilter_docs:g}."
    )
    for r in results:
        for label, parts in r["epoch parts"].items():
            lines.append(f"{label}, {r['threads']} thread(s), last epoch (wall s): {parts}")
    return "\n".join(lines)


def _thread_configs(spec: str) -> list[tuple[str, int, bool]]:
    """``"1,2,2p"`` -> [(label, threads, passive OpenMP waiting)]."""
    out = []
    for item in spec.split(","):
        item = item.strip()
        passive = item.endswith("p")
        n = int(item.rstrip("p"))
        out.append((f"{n}{' passive' if passive else ''}", n, passive))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--threads",
        default="1,2,2p",
        help="comma-separated torch thread counts; a trailing 'p' runs with OMP_WAIT_POLICY=PASSIVE",
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--loop-docs", type=int, default=10, help="documents timed for the plain loop")
    p.add_argument("--smcfilter-docs", type=int, default=2, help="documents timed for SMCFilter")
    p.add_argument("--no-smcfilter", action="store_true")
    p.add_argument("--processes", type=int, default=2,
                   help="also time the evaluator's keyed filter pass on this many kept processes (1: not)")
    p.add_argument("--fused", action="store_true",
                   help="also time the LSTM step's elementwise part compiled by torch.compile (needs a C++ compiler)")
    p.add_argument("--quick", action="store_true", help="threads 1, 3 repeats, fewer baseline documents")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.threads, args.repeats, args.loop_docs, args.smcfilter_docs = "1", 3, 4, 1
    if args.child:  # one thread configuration, in its own process (OpenMP reads its env at start)
        label, n = args.child.split(":")
        out = run(int(n), args)
        out["threads"] = label
        print("RESULT " + json.dumps(out, default=lambda o: o.__dict__))
        return
    print(machine_line(1))
    s = SEED_SIZE
    print(f"size: {s['D']} docs x {s['T']} tokens, P={s['P']}, K={s['K']}, H={s['H']}, V={s['V']}")
    results = []
    for label, n, passive in _thread_configs(args.threads):
        env = dict(os.environ, OMP_NUM_THREADS=str(n), MKL_NUM_THREADS=str(n))
        env.pop("OMP_WAIT_POLICY", None)
        if passive:
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        cmd = [sys.executable, os.path.abspath(__file__), "--child", f"{label}:{n}", "--repeats", str(args.repeats),
               "--loop-docs", str(args.loop_docs), "--smcfilter-docs", str(args.smcfilter_docs),
               "--processes", str(args.processes)]
        if args.no_smcfilter:
            cmd.append("--no-smcfilter")
        if args.fused:
            cmd.append("--fused")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            print(f"threads={label}: failed\n{proc.stderr[-3000:]}")
            continue
        r = json.loads(line[-1][len("RESULT "):])
        for k, v in r.items():
            if isinstance(v, dict) and set(v) == {"wall", "cpu", "repeats"}:
                r[k] = Timing(**v)
        results.append(r)
        print(f"... threads={label} done (load {load_average()})", flush=True)
    if not results:
        sys.exit(1)
    print(report(results, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine_line(1), "results": results}, f, indent=1, default=lambda o: o.__dict__)


if __name__ == "__main__":
    main()
