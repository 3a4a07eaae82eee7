"""Where a seed-size epoch spends its time: torch.profiler operator table and cProfile.

One ``StochasticEM.run_epoch`` of the seed's algorithm (200 x 100, P = 10, K = 50, H = 64,
V = 5000, one minibatch of 200, one M-step), after a warm-up epoch, on one thread; or, with
``--config NAME``, the epoch of one of ``bench_exact.py``'s settings (``exact``: fit's exact
default after its warm-up; ``heuristic``; ``exact_p20``; ...).

Usage::

    python benchmarks/profile_epoch.py [--rows 20] [--threads 1] [--quick]   # --quick: the operator table only
    OMP_NUM_THREADS=1 python benchmarks/profile_epoch.py --config exact --rows 40

Also prints the epoch's arithmetic floor: the self time of the matrix products, oneDNN's LSTM
layers, sigmoids and exps (:data:`ARITHMETIC`), split into E-step, M-step and the rest.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import SEED_ALGORITHM, SEED_SIZE, em_config, machine_line, stochastic_em, synthetic_corpus  # noqa: E402

from pyro_ssl.model import TopicalSSL  # noqa: E402


PRODUCTS = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward")
"""The matrix products and oneDNN's LSTM layers (which are mostly matrix products)."""

ARITHMETIC = PRODUCTS + ("aten::sigmoid", "aten::sigmoid_", "aten::exp", "aten::exp_")
"""The operators whose work every implementation of the same algorithm does: the matrix products
(the LSTM steps and output layers), oneDNN's LSTM layers forward and back, and the sigmoids and exps
(gates, proposals). Their self time is a floor for the epoch on this core with these kernels:
everything else (gathers, sampling, bookkeeping, the other elementwise work) could at best cost
nothing. The matrix products run at about 100 GFLOP/s here (MKL and oneDNN); a hand-written
sigmoid or exp might beat torch's, so the products alone (:data:`PRODUCTS`) are printed apart."""

PHASES = (("_collapsed_estep", "E-step"), ("_estep", "E-step"), ("_mstep_minibatch", "M-step"))


def label_phases(em) -> None:
    """Run ``em``'s E-step and M-step methods under ``torch.profiler.record_function`` labels."""
    from torch.profiler import record_function

    def labelled(fn, name):
        def run(*args, **kwargs):
            with record_function(name):
                return fn(*args, **kwargs)
        return run

    for method, name in PHASES:
        setattr(em, method, labelled(getattr(em, method), name))


def arithmetic_floor(events, operators=ARITHMETIC) -> dict:
    """Self CPU seconds of ``operators``, by phase (``E-step``, ``M-step``, ``other``)."""
    labels = {name for _, name in PHASES}
    out = {"E-step": 0.0, "M-step": 0.0, "other": 0.0}
    for ev in events:
        if ev.name not in operators:
            continue
        phase, parent = "other", ev.cpu_parent
        while parent is not None:
            if parent.name in labels:
                phase = parent.name
                break
            parent = parent.cpu_parent
        out[phase] += ev.self_cpu_time_total / 1e6
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="the torch.profiler table only (no cProfile epoch)")
    p.add_argument("--config", help="profile this bench_exact.py setting instead of the seed's algorithm")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    s = SEED_SIZE
    torch.manual_seed(0)
    tokens, lengths = synthetic_corpus(s["D"], s["T"], s["V"])
    if args.config:
        from bench_exact import make

        em = make(args.config, tokens, lengths, s["V"])
    else:
        em = stochastic_em(
            TopicalSSL(s["K"], s["V"], hidden_size=s["H"]),
            tokens,
            lengths,
            em_config(K=s["K"], num_particles=s["P"], batch_size=s["D"], mstep_iters=1, seed=0, **SEED_ALGORITHM),
        )
    em.run_epoch()  # warm-up (initialisation, first-call costs)
    print(machine_line(args.threads))
    from torch.profiler import ProfilerActivity, profile

    label_phases(em)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        entry = em.run_epoch()
    print(f"epoch under the profiler: {entry['seconds']:.3f} s (E-step {entry['estep_seconds']:.3f}, "
          f"M-step {entry['mstep_seconds']:.3f})")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    for label, ops in (("arithmetic kernels", ARITHMETIC), ("of which the matrix products and LSTM layers", PRODUCTS)):
        floor = arithmetic_floor(prof.events(), ops)
        print(f"{label} (" + ", ".join(ops) + "), self CPU seconds: " + ", ".join(f"{k} {v:.3f}" for k, v in floor.items())
              + f"; all {sum(floor.values()):.3f} of the epoch's {entry['seconds']:.3f} s under the profiler")
    if args.quick:
        return
    pr = cProfile.Profile()
    pr.enable()
    entry = em.run_epoch()
    pr.disable()
    print(f"epoch under cProfile: {entry['seconds']:.3f} s")
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).sort_stats("cumulative").print_stats(args.rows)
    print("\n".join(ln for ln in buf.getvalue().splitlines() if ln.strip()))


if __name__ == "__main__":
    main()
