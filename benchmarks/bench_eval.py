"""Evaluation benchmark: completion perplexity with 1,000 particles over 200 x 170 tokens.

Times ``pyro_ssl.evaluation.completion_log_likelihood`` (the fully adapted particle filter,
systematic resampling, first half of each document observed, second half scored) at its
default chunking (``pyro_ssl.evaluation.default_chunk_size``: 6 documents at these sizes),
and ``filter_log_increments`` at a few other chunk sizes (documents per filter pass; ``all``: one
pass over every document, the default before 2026-12-04), each with its time over the
default's, and the default call on ``--workers`` processes (each filtering an even share of
the documents; the processes' start-up included). Every document draws from its own keyed
stream, so neither the chunking nor the processes change the estimate (up to round-off).

Usage::

    python benchmarks/bench_eval.py             # about 2-4 minutes on one core
    python benchmarks/bench_eval.py --quick     # 20 documents
    python benchmarks/bench_eval.py --docs 60 --chunks 5,20,all   # about a minute
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import load_average, machine_line, random_log_phi, synthetic_corpus, table  # noqa: E402

from pyro_ssl.evaluation import completion_log_likelihood, default_chunk_size, filter_log_increments  # noqa: E402
from pyro_ssl.model import LSTMPrior  # noqa: E402
from pyro_ssl.smc.uniforms import KeyedStepUniforms  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--docs", type=int, default=200)
    p.add_argument("--length", type=int, default=170)
    p.add_argument("--particles", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--chunks", default="20,all", help="extra chunk sizes to time, 'all' for one pass ('' for none)")
    p.add_argument("--workers", default="2", help="process counts to time (completion_log_likelihood(..., workers=N), "
                   "start-up included; '' for none)")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.docs, args.chunks = 20, "all"
    torch.set_num_threads(args.threads)
    K, H, V = 50, 64, 5000
    print(machine_line())
    torch.manual_seed(0)
    tokens, lengths = synthetic_corpus(args.docs, args.length, V, seed=0)
    log_phi = random_log_phi(K, V, seed=0)
    prior = LSTMPrior(K, H).eval()
    T1 = args.length // 2
    P = args.particles
    rows = []

    load0 = load_average()
    c0, w0 = time.process_time(), time.perf_counter()
    ll, n = completion_log_likelihood(prior, log_phi, tokens, lengths, T1, P, seed=0)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    default_chunk = default_chunk_size(P, K, H)
    ppl = math.exp(-ll / n)
    base = wall
    rows.append(("completion_log_likelihood", f"default ({min(default_chunk, args.docs)})", f"{wall:.1f}", "1.00",
                 f"{cpu:.1f}", f"{ppl:.1f}", load0))
    steps = args.docs * args.length * P
    print(f"{args.docs} docs x {args.length} tokens, P={P}, K={K}, H={H}, V={V}; held-out tokens {n}; "
          f"completion perplexity {ppl:.1f} (random model: compare V={V})")
    print(f"throughput: {steps / cpu / 1e6:.2f} M particle-steps per CPU second")
    for chunk in [args.docs if c == "all" else int(c) for c in args.chunks.split(",") if c]:
        load0 = load_average()
        c0, w0 = time.process_time(), time.perf_counter()
        inc = filter_log_increments(prior, log_phi, tokens, lengths, P, seed=0, chunk_size=chunk)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        held = (torch.arange(args.length) < lengths[:, None]) & (torch.arange(args.length) >= T1)
        ppl_c = math.exp(-float(inc[held].sum()) / int(held.sum()))
        rows.append(("filter_log_increments", str(chunk), f"{wall:.1f}", f"{wall / base:.2f}", f"{cpu:.1f}", f"{ppl_c:.1f}",
                     load0))
    for w in [int(c) for c in args.workers.split(",") if c]:
        load0 = load_average()
        w0 = time.perf_counter()
        ll_w, n_w = completion_log_likelihood(prior, log_phi, tokens, lengths, T1, P, seed=0, workers=w)
        wall = time.perf_counter() - w0
        # CPU here is this process's only: the workers' own time is not in it
        rows.append((f"completion_log_likelihood, workers={w}", f"default ({min(default_chunk, args.docs)})",
                     f"{wall:.1f}", f"{wall / base:.2f}", "-", f"{math.exp(-ll_w / n_w):.1f}", load0))
    print(table(rows, ("call", "chunk (docs)", "wall s", "over the default", "CPU s", "perplexity",
                       "load average before")))
    # What a GPU's pass adds: its keyed uniforms are made on the CPU (every document in one pass there).
    w0 = time.perf_counter()
    u = KeyedStepUniforms(0, torch.arange(args.docs), P, resample_slots=1)
    for t in range(args.length):
        u.resample(t, 1), u.proposal(t)
    print(f"keyed uniforms of every document and step in one pass (what a GPU's pass adds on the CPU): "
          f"{time.perf_counter() - w0:.3f} s")
    print(f"peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
          f"load average now {load_average()}")


if __name__ == "__main__":  # the guard the spawned workers need
    main()
