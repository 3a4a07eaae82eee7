"""Scaling: time and peak memory against documents, length, particles, topics (and batch size).

Every configuration runs in a fresh subprocess so its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``; ``tracemalloc`` does not see torch's
allocations) is its own; the figure includes the interpreter, torch and Pyro (``baseline``
is the resident size after imports and data creation, before the timed work).

Axes (one thread unless ``--threads``; P = 10, K = 50, H = 64, V = 5000 unless varied):

* documents 200 -> 25,000 of length 170: one ``StochasticEM.run_epoch`` of the seed's
  algorithm (plain CSMC, global ``phi``, minibatches of 256, one M-step per minibatch), the
  figure the targets name;
* length 100 -> 2,000 (200 documents): one ``csmc_sweep`` with diagnostics, as in an epoch;
* particles 10 -> 1,000 (200 documents x 100 tokens): one ``csmc_sweep``;
* topics 10 -> 200 (200 documents x 170 tokens): one ``csmc_sweep``;
* minibatch size 25 -> 800 (length 170): one sweep, reported per document (cache effects).

Usage::

    python benchmarks/bench_scaling.py            # full, about 6-8 minutes on 2 cores
    python benchmarks/bench_scaling.py --quick    # smaller grids, about 1-2 minutes
    python benchmarks/bench_scaling.py --plot docs/img/scaling.png --json scaling.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

FULL = {
    "documents": [200, 1000, 5000, 25000],
    "length": [100, 250, 500, 1000, 2000],
    "particles": [10, 30, 100, 300, 1000],
    "topics": [10, 25, 50, 100, 200],
    "batch": [25, 50, 100, 200, 400, 800],
}
QUICK = {
    "documents": [200, 1000, 5000],
    "length": [100, 250, 500],
    "particles": [10, 30, 100],
    "topics": [10, 50, 200],
    "batch": [50, 200, 800],
}
BASE = dict(P=10, K=50, H=64, V=5000)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def child(cfg: dict) -> dict:
    """Run one configuration in this (fresh) process; returns the figures."""
    import torch

    torch.set_num_threads(cfg["threads"])
    sys.path.insert(0, HERE)
    from _common import random_log_phi, synthetic_corpus

    from _common import SEED_ALGORITHM, em_config, stochastic_em

    from pyro_ssl.model import TopicalSSL
    from pyro_ssl.smc.csmc import csmc_sweep

    axis, value = cfg["axis"], cfg["value"]
    cfg_batch = cfg.get("batch_size", 256)
    P, K, H, V = BASE["P"], BASE["K"], BASE["H"], BASE["V"]
    D, T = 200, 170
    if axis == "documents":
        D = value
    elif axis == "length":
        T = value
    elif axis == "particles":
        P, T = value, 100
    elif axis == "topics":
        K = value
    elif axis == "batch":
        D = value
    torch.manual_seed(0)
    tokens, lengths = synthetic_corpus(D, T, V, seed=0)
    model = TopicalSSL(K, V, hidden_size=H)
    prior = model.prior.eval()
    out = {"axis": axis, "value": value, "D": D, "T": T, "P": P, "K": K, "threads": cfg["threads"]}
    if axis == "documents":
        em_cfg = em_config(K=K, num_particles=P, batch_size=cfg_batch, mstep_iters=1, seed=0, **SEED_ALGORITHM)
        # Warm up (first-call costs of the LSTM kernels and Pyro) on one minibatch's worth.
        warm = stochastic_em(TopicalSSL(K, V, hidden_size=H), tokens[:cfg_batch], lengths[:cfg_batch],
                             em_cfg.replace(seed=1))
        warm.run_epoch()
        em = stochastic_em(model, tokens, lengths, em_cfg)
        em.initialize()
        out["batch_size"] = em.config.learning.batch_size
        out["baseline_mb"] = _rss_mb()
        c0, w0 = time.process_time(), time.perf_counter()
        entry = em.run_epoch()
        out["wall"], out["cpu"] = time.perf_counter() - w0, time.process_time() - c0
        out["estep_seconds"], out["mstep_seconds"] = entry["estep_seconds"], entry["mstep_seconds"]
    else:
        log_phi = random_log_phi(K, V, seed=0)
        ref = torch.randint(K, (D, T))
        gen = torch.Generator().manual_seed(0)
        if axis == "batch":  # warm up once: small sweeps are dominated by first-call costs
            csmc_sweep(prior, log_phi, tokens, lengths, P, ref, generator=gen, diagnostics=True)
        out["baseline_mb"] = _rss_mb()
        c0, w0 = time.process_time(), time.perf_counter()
        csmc_sweep(prior, log_phi, tokens, lengths, P, ref, generator=gen, diagnostics=True)
        out["wall"], out["cpu"] = time.perf_counter() - w0, time.process_time() - c0
    out["peak_mb"] = _rss_mb()
    out["load"] = os.getloadavg()
    return out


def run_all(grid: dict, threads: int, timeout: float) -> list[dict]:
    results = []
    for axis, values in grid.items():
        for value in values:
            cfg = {"axis": axis, "value": value, "threads": threads}
            cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(cfg)]
            env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
            except subprocess.TimeoutExpired:
                print(f"{axis}={value}: timed out after {timeout:.0f} s", flush=True)
                continue
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                print(f"{axis}={value}: failed\n{proc.stderr[-2000:]}", flush=True)
                continue
            r = json.loads(lines[-1])
            results.append(r)
            print(
                f"{axis:>9} = {value:>6}: wall {r['wall']:8.2f} s  cpu {r['cpu']:8.2f} s  "
                f"peak {r['peak_mb']:7.0f} MB (baseline {r['baseline_mb']:.0f})  "
                f"load {', '.join(f'{x:.2f}' for x in r['load'])}",
                flush=True,
            )
    return results


def slope(xs, ys) -> float:
    """Least-squares slope of log y on log x (1 = linear)."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def summarise(results: list[dict]) -> str:
    sys.path.insert(0, HERE)
    from _common import table

    rows = []
    for r in results:
        per = ""
        if r["axis"] == "batch":
            per = f"{1000 * r['cpu'] / r['D']:.2f} ms/doc (CPU)"
        rows.append(
            (r["axis"], r["value"], f"{r['D']}x{r['T']}", r["P"], r["K"], f"{r['wall']:.2f}", f"{r['cpu']:.2f}",
             f"{r['peak_mb']:.0f}", f"{r['baseline_mb']:.0f}", per)
        )
    text = [table(rows, ("axis", "value", "docs x len", "P", "K", "wall s", "CPU s", "peak MB", "baseline MB", "note"))]
    text.append("")
    by_axis: dict[str, list[dict]] = {}
    for r in results:
        by_axis.setdefault(r["axis"], []).append(r)
    for axis in ("documents", "length", "particles", "topics"):
        rs = by_axis.get(axis, [])
        if len(rs) >= 2:
            xs = [r["value"] for r in rs]
            text.append(
                f"log-log slope of time vs {axis}: CPU {slope(xs, [r['cpu'] for r in rs]):.2f}, "
                f"wall {slope(xs, [r['wall'] for r in rs]):.2f} (1 = linear)"
            )
    docs = [r for r in by_axis.get("documents", []) if r["value"] == 25000]
    if docs:
        r = docs[0]
        ok_t, ok_m = r["wall"] <= 120, r["peak_mb"] <= 4096
        text.append(
            f"target, 25,000-document epoch: {r['wall']:.1f} s wall ({r['cpu']:.1f} s CPU) "
            f"{'<=' if ok_t else '>'} 120 s; peak {r['peak_mb']:.0f} MB {'<=' if ok_m else '>'} 4096 MB"
        )
    return "\n".join(text)


def plot(results: list[dict], path: str) -> None:
    """Top row: seconds (log-log, with a slope-1 guide); bottom row: peak resident MB."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    panels = [("documents", "documents (x170 tokens)\none EM epoch"),
              ("length", "tokens per document\n(200 docs) one sweep"),
              ("particles", "particles\n(200 x 100) one sweep"),
              ("topics", "topics\n(200 x 170) one sweep"),
              ("batch", "minibatch size (x170 tokens)\none sweep")]
    panels = [(a, label) for a, label in panels if any(r["axis"] == a for r in results)]
    fig, axs = plt.subplots(2, len(panels), figsize=(3.4 * len(panels), 6.0), squeeze=False, sharex="col")
    for j, (axis, label) in enumerate(panels):
        rs = [r for r in results if r["axis"] == axis]
        xs = [r["value"] for r in rs]
        ax = axs[0][j]
        ax.loglog(xs, [r["wall"] for r in rs], "o-", label="wall")
        ax.loglog(xs, [r["cpu"] for r in rs], "s--", label="CPU")
        ax.loglog(xs, [rs[0]["cpu"] * x / xs[0] for x in xs], ":", color="grey", label="linear")
        if axis == "documents":
            ax.axhline(120, color="tab:green", lw=0.8, label="2 min target")
        ax.set_ylabel("seconds")
        ax.legend(fontsize=7)
        ax.grid(True, which="major", alpha=0.3)
        mem = axs[1][j]
        mem.semilogx(xs, [r["peak_mb"] for r in rs], "^-", color="tab:red", label="peak")
        mem.semilogx(xs, [r["baseline_mb"] for r in rs], "v:", color="tab:gray", label="after imports + data")
        if axis == "documents":
            mem.axhline(4096, color="tab:green", lw=0.8, label="4 GB target")
        mem.set_ylabel("resident MB")
        mem.set_xlabel(label)
        mem.legend(fontsize=7)
        mem.grid(True, which="major", alpha=0.3)
        for a in (ax, mem):
            a.xaxis.set_major_locator(FixedLocator(xs))
            a.xaxis.set_minor_locator(NullLocator())
            a.set_xticklabels([f"{x:,}" for x in xs], rotation=45, fontsize=7)
    fig.suptitle(f"pyro_ssl batched CSMC scaling, {_cpu_name()}, {results[0].get('threads', 1)} thread(s)", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}")


def _cpu_name() -> str:
    sys.path.insert(0, HERE)
    from _common import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} cores"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--axes", default=None, help="comma-separated subset of " + ",".join(FULL))
    p.add_argument("--plot", default=os.path.join(REPO, "docs", "img", "scaling.png"))
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--json")
    p.add_argument("--timeout", type=float, default=400.0, help="seconds per configuration")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    sys.path.insert(0, HERE)
    from _common import machine_line

    grid = dict(QUICK if args.quick else FULL)
    if args.axes:
        grid = {k: v for k, v in grid.items() if k in args.axes.split(",")}
    print(machine_line(args.threads))
    t0 = time.perf_counter()
    results = run_all(grid, args.threads, args.timeout)
    print(summarise(results))
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine_line(args.threads), "results": results}, f, indent=1)
    if not args.no_plot and results:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
