"""Data-parallel throughput: documents per second of the E-step + M-step for 1 and 2 processes.

Runs :func:`pyro_ssl.distributed.fit_distributed` on a synthetic Zipf corpus written as an
on-disk corpus, once with world size 1 (no process group), then with 2 processes as
``fit(..., workers=2)`` starts them (:func:`~pyro_ssl.distributed.fit_workers`: a gloo group, the
hot sums in shared memory; row "shared"), and with 2 processes whose every sum goes through gloo
over localhost (row "gloo"), one thread per process. The first
epoch includes the initial paths, so the timed figure is the mean over the later epochs
(``--epochs`` minus one); ``comm`` is the time inside ``all_reduce`` (it includes waiting for
the slower rank, so it also measures load imbalance). The table also gives the
communication volume per epoch (``K x V`` float64 counts per minibatch and sweep plus the
LSTM gradients per M-step iteration). A second table times each whole call, start-up included
(spawning the processes and importing torch in each): what ``fit(..., workers=2)`` costs a user
over a fit of ``--epochs`` epochs.

This box has 2 cores shared with other jobs: 2 processes can at best double the throughput,
and only if both cores are free; the load average is printed before and after each run.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_distributed.py            # ~2-4 minutes
    OMP_NUM_THREADS=1 python benchmarks/bench_distributed.py --quick    # ~1 minute
    OMP_NUM_THREADS=1 python benchmarks/bench_distributed.py --quick --warmup-epochs 0   # the exact E-step
    OMP_NUM_THREADS=1 python benchmarks/bench_distributed.py --quick --warmup-epochs 0 --epochs 3 --repeats 3
    OMP_NUM_THREADS=1 python benchmarks/bench_distributed.py --json dist.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from _common import load_average, machine_line, synthetic_corpus  # noqa: E402

from pyro_ssl.data.ondisk import write_ondisk  # noqa: E402
from pyro_ssl.distributed import SharedSums, fit_distributed, fit_workers  # noqa: E402


def _fit_kwargs(args) -> dict:
    return dict(
        K=args.K, epochs=args.epochs, hidden_size=args.hidden, num_particles=args.particles,
        ancestor_lag=args.lag, batch_size=args.batch_size, mstep_iters=args.mstep_iters,
        init="uniform", seed=0, progress=False, dropout=args.dropout,
        **({} if args.warmup_epochs is None else {"warmup_epochs": args.warmup_epochs}),
    )


def _summarise(history, args) -> dict:
    timed = history[1:] if len(history) > 1 else history
    sec = sum(h["seconds"] for h in timed) / len(timed)
    return {
        "all_epochs_seconds": sum(h["seconds"] for h in history),
        "seconds_per_epoch": sec,
        "docs_per_second": args.docs / sec,
        "estep_seconds": sum(h["estep_seconds"] for h in timed) / len(timed),
        "mstep_seconds": sum(h["mstep_seconds"] for h in timed) / len(timed),
        "comm_seconds": sum(h["comm_seconds"] for h in timed) / len(timed),
    }


def _worker(rank, world_size, port, data_dir, kwargs, out, device):
    import torch.distributed as dist

    from pyro_ssl.data.ondisk import OnDiskCorpus
    from pyro_ssl.distributed import fit_distributed

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        # The device named, not fit_distributed's default (cuda:LOCAL_RANK where a GPU is present).
        fit = fit_distributed(OnDiskCorpus.open(data_dir), **kwargs, device=device)
        torch.save(fit.history, os.path.join(out, f"hist{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _measure(config, args, kwargs, data_dir, tmp) -> dict:
    """One fit of ``config`` = (processes, transport or device); its timed epochs' means."""
    W, transport = config
    if args.batch_per_process:
        kwargs = dict(kwargs, batch_size=args.batch_per_process * W)
    load0 = load_average()
    t0 = time.perf_counter()
    if W == 1:
        s = [_summarise(fit_distributed(data_dir, **kwargs, device=args.device).history, args)]
    elif transport == "shared":  # as fit(..., workers=W) runs
        s = [_summarise(fit_workers(data_dir, W, **kwargs).history, args)]  # rank 0's
    elif transport == "gloo":
        mp.spawn(_worker, args=(W, _free_port(), data_dir, kwargs, tmp, args.device), nprocs=W, join=True)
        s = [_summarise(torch.load(os.path.join(tmp, f"hist{r}.pt"), weights_only=False), args) for r in range(W)]
    else:
        raise SystemExit(f"--transports: 'shared' or 'gloo', got {transport!r}")
    wall = time.perf_counter() - t0  # the whole call, as a user waits for it: start-up and every epoch
    # ranks run in lock-step; rank 0's figures, comm as the max over the ranks reported
    return dict(s[0], comm_seconds=max(x["comm_seconds"] for x in s), load_before=load0, load_after=load_average(),
                wall_seconds=wall, outside_epochs_seconds=wall - s[0]["all_epochs_seconds"])


def _latency_worker(rank, W, port, shared, calls, out):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=W)
    shared = shared.for_rank(rank)
    res = {}
    for n in (10, 40_000):
        t = torch.zeros(n, dtype=torch.float32)
        for name, fn in (("gloo", lambda: dist.all_reduce(t)), ("shared", lambda: shared.reduce(t))):
            for _ in range(20):
                fn()
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            res[(name, n)] = (time.perf_counter() - t0) / calls
    if rank == 0:
        torch.save(res, os.path.join(out, "latency.pt"))
    dist.destroy_process_group()


def sum_latency(W: int, tmp: str, calls: int = 300) -> dict:
    """Seconds per sum of 10 and 40,000 float32 values over ``W`` processes: gloo over localhost
    and :class:`~pyro_ssl.distributed.SharedSums` (rank 0's mean over ``calls`` in a row)."""
    shared = SharedSums(W)
    procs = mp.spawn(_latency_worker, args=(W, _free_port(), shared, calls, tmp), nprocs=W, join=False)
    shared.close_parent_ends()
    while not procs.join():
        pass
    return torch.load(os.path.join(tmp, "latency.pt"))


def busier_share(args, W: int) -> tuple[float, int]:
    """Documents of the busiest rank per global minibatch if ranks swept the documents their
    contiguous shards hold (as before the even shares): mean and max over the timed epochs'
    minibatches."""
    from pyro_ssl.data.shard import shard_bounds
    from pyro_ssl.smc.uniforms import keyed_generator

    most = []
    for epoch in range(1, max(args.epochs, 2)):
        order = torch.randperm(args.docs, generator=keyed_generator(0, "order", epoch))
        for g in order.split(args.batch_size):
            most.append(max(int(((g >= lo) & (g < hi)).sum()) for lo, hi in
                            (shard_bounds(args.docs, r, W) for r in range(W))))
    return sum(most) / len(most), max(most)


def comm_volume(args) -> dict:
    """Bytes all-reduced per epoch (payload, one copy)."""
    from pyro_ssl.model import LSTMPrior

    n_params = sum(p.numel() for p in LSTMPrior(args.K, args.hidden).parameters())
    minibatches = -(-args.docs // args.batch_size)
    counts = minibatches * args.K * args.V * 8  # float64 counts delta per minibatch (1 sweep)
    grads = minibatches * args.mstep_iters * n_params * 8 if args.dtype == "float64" else \
        minibatches * args.mstep_iters * n_params * 4
    return {"lstm_params": n_params, "minibatches": minibatches, "counts_MB": counts / 1e6, "grads_MB": grads / 1e6}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=400)
    ap.add_argument("--length", type=int, default=100)
    ap.add_argument("-V", type=int, default=5000)
    ap.add_argument("-K", type=int, default=50)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--particles", type=int, default=10)
    ap.add_argument("--lag", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--mstep-iters", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=None, help="epochs per fit, the first untimed (default 3; 2 with --quick)")
    ap.add_argument("--repeats", type=int, default=1, help="fits of every setting, interleaved; medians reported")
    ap.add_argument("--batch-per-process", type=int, default=None,
                    help="weak scaling: global minibatch = this x world size (overrides --batch-size)")
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--warmup-epochs", type=int, default=None, help="fit's warmup_epochs (default: fit's); 0 times "
                    "the exact E-step (blocked, collapsed) from the first epoch")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--processes", default="1,2", help="comma-separated world sizes (gloo, localhost)")
    ap.add_argument("--device", default="cpu", help="cuda: world size 1 only (one GPU here)")
    ap.add_argument("--transports", default="shared,gloo",
                    help="for world sizes > 1: 'shared' (fit_workers: sums in shared memory), 'gloo' (every sum "
                         "over localhost), or both")
    ap.add_argument("--quick", action="store_true", help="200 documents, 2 epochs")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    if args.quick:
        args.docs = 200
    if args.epochs is None:
        args.epochs = 2 if args.quick else 3
    torch.set_num_threads(1)

    print(machine_line(1))
    print(f"corpus: {args.docs} docs x {args.length} tokens, V={args.V}; K={args.K}, H={args.hidden}, "
          f"P={args.particles}, lag={args.lag}, minibatch {args.batch_size}, {args.mstep_iters} M-step iters; "
          f"timed epochs: {max(args.epochs - 1, 1)}")
    tokens, lengths = synthetic_corpus(args.docs, args.length, args.V, seed=0)
    configs = [(1, args.device)] + [(int(w), t) for w in args.processes.split(",") if int(w) > 1
                                   for t in args.transports.split(",") if args.device == "cpu"]
    runs = {c: [] for c in configs}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = os.path.join(tmp, "corpus")
        write_ondisk([tokens[i, : int(n)] for i, n in enumerate(lengths)], data_dir, V=args.V)
        kwargs = _fit_kwargs(args)
        kwargs["dtype"] = getattr(torch, args.dtype)
        # Repeats interleave the settings, so a change in the machine's load reaches all of them.
        for rep in range(args.repeats):
            for c in configs:
                runs[c].append(_measure(c, args, kwargs, data_dir, tmp))
        lat = sum_latency(2, tmp) if args.device == "cpu" and "2" in args.processes.split(",") else None
    rows = []
    for (W, transport), got in runs.items():
        row = {k: statistics.median(r[k] for r in got) for k in
               ("seconds_per_epoch", "docs_per_second", "estep_seconds", "mstep_seconds", "comm_seconds",
                "wall_seconds", "outside_epochs_seconds")}
        row.update(processes=W, device=transport if W == 1 else f"cpu, {transport}",
                   load_before=got[0]["load_before"], load_after=got[-1]["load_after"],
                   batch_size=args.batch_per_process * W if args.batch_per_process else args.batch_size,
                   paired=[one["seconds_per_epoch"] / r["seconds_per_epoch"] for one, r in zip(runs[configs[0]], got)])
        rows.append(row)
    vol = comm_volume(args)
    base = rows[0]["docs_per_second"]
    print()
    print(f"medians over {args.repeats} interleaved repeat(s); speed-up = ratio of the medians, paired = each "
          "repeat's one-process epoch over this setting's")
    print("| processes (device) | minibatch | docs/s | speed-up | paired | s/epoch | E-step s | M-step s | comm s "
          "| load before -> after |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        paired = ", ".join(f"{x:.2f}" for x in r["paired"])
        print(f"| {r['processes']} ({r['device']}) | {r['batch_size']} | {r['docs_per_second']:.1f} | "
              f"{r['docs_per_second'] / base:.2f}x | {paired} | {r['seconds_per_epoch']:.2f} | {r['estep_seconds']:.2f} | "
              f"{r['mstep_seconds']:.2f} | {r['comm_seconds']:.2f} | {r['load_before']} -> {r['load_after']} |")
    print()
    print(f"the whole call ({args.epochs} epochs, as a user waits for it), median seconds; outside the epochs: starting "
          "the processes, importing, writing the on-disk corpus (fit_workers only), loading the model back")
    print("| processes (device) | call s | speed-up | outside the epochs s |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['processes']} ({r['device']}) | {r['wall_seconds']:.2f} | "
              f"{rows[0]['wall_seconds'] / r['wall_seconds']:.2f}x | {r['outside_epochs_seconds']:.2f} |")
    print()
    print(f"all-reduce payload per epoch: counts {vol['counts_MB']:.1f} MB ({vol['minibatches']} minibatches x "
          f"K x V float64) + gradients {vol['grads_MB']:.2f} MB ({vol['lstm_params']} LSTM parameters x "
          f"{args.mstep_iters} iterations per minibatch)")
    if lat is not None:
        print("one sum over 2 processes (ms): " + ", ".join(
            f"{name} {1e3 * lat[(name, n)]:.3f} ({n} values)" for name in ("gloo", "shared") for n in (10, 40_000)))
        mean, most = busier_share(args, 2)
        print(f"ranks sweep even shares of every minibatch; split by shard instead, the busier of 2 ranks would "
              f"hold {mean:.1f} of a minibatch's {args.batch_size} documents on average, {most} at most")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows, "comm_volume": vol, "machine": machine_line(1)}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
