"""Where a two-process epoch loses against one: cProfile of every rank of ``fit(..., workers=N)``.

Fits the seed-size synthetic corpus (200 x 100, V = 5000, K = 50, H = 64, P = 10, minibatches of
50) with ``fit_workers`` on 1 and on ``--workers`` processes, each rank under cProfile, and prints
per function the time per epoch in one process, in rank 0, and their ratio. Two processes
that split the work evenly would show 0.5; a fixed cost per step shows near 1. The profiles
include the first epoch (initial paths, the optimiser's first construction) and start-up, so
read the ratios of the hot functions, not the totals.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/profile_workers.py                    # the exact E-step, ~1 minute
    OMP_NUM_THREADS=1 python benchmarks/profile_workers.py --warmup-epochs 20 # the heuristic
    OMP_NUM_THREADS=1 python benchmarks/profile_workers.py --quick            # 2 epochs
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import load_average, machine_line, synthetic_corpus  # noqa: E402

import pyro_ssl.distributed as distributed  # noqa: E402
from pyro_ssl.data.ondisk import write_ondisk  # noqa: E402

FUNCTIONS = [
    ("em.py", "run_epoch"), ("em.py", "_collapsed_estep"), ("em.py", "_estep"), ("csmc.py", "csmc_sweep"),
    ("model.py", "step"), ("blocked.py", "blocked_csmc_sweep"), ("blocked.py", "_path_log_probs"),
    ("em.py", "accept"), ("collapsed.py", "visit_order_log_emission"), ("collapsed.py", "collapsed_mh"),
    ("distributed.py", "reduce"), ("em.py", "_mstep_minibatch"), ("trace_elbo.py", "loss_and_grads"),
    ("~", "<built-in method torch.lstm>"), ("~", "<method 'run_backward' of 'torch._C._EngineBase' objects>"),
    ("~", "<method 'addmm_' of 'torch._C.TensorBase' objects>"), ("optim.py", "__call__"),
]


def profiled_worker(rank, *args):
    """``fit_workers``' process entry under cProfile (the spawned process imports this module)."""
    prof = cProfile.Profile()
    leave = distributed.leave_worker

    def dump_then_leave():  # the worker ends with os._exit, so no ``finally`` of ours would run
        prof.disable()
        prof.dump_stats(os.path.join(os.environ["PYRO_SSL_PROFILE_DIR"], f"rank{rank}.prof"))
        leave()

    distributed.leave_worker = dump_then_leave
    prof.enable()
    distributed._local_worker(rank, *args)


def _cumulative(path: str) -> dict:
    out = {}
    for (file, _, name), (_, _, _, cum, _) in pstats.Stats(path).stats.items():
        key = (os.path.basename(file), name)
        out[key] = out.get(key, 0.0) + cum
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--warmup-epochs", type=int, default=0, help="fit's warmup_epochs (0: the exact E-step throughout)")
    ap.add_argument("--quick", action="store_true", help="2 epochs")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs = 2
    print(machine_line(1))
    tokens, lengths = synthetic_corpus(200, 100, 5000, seed=0)
    kw = dict(K=50, epochs=args.epochs, hidden_size=64, num_particles=10, batch_size=50, mstep_iters=5,
              init="uniform", seed=0, progress=False, warmup_epochs=args.warmup_epochs)
    distributed._local_worker = profiled_worker  # fit_workers spawns this one (the children import the real one)
    profiles, epochs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "corpus")
        write_ondisk([tokens[i, : int(n)] for i, n in enumerate(lengths)], data, V=5000)
        for W in (1, args.workers):
            out = os.path.join(tmp, f"w{W}")
            os.makedirs(out)
            os.environ["PYRO_SSL_PROFILE_DIR"] = out
            load0 = load_average()
            model = distributed.fit_workers(data, W, **kw)
            timed = model.history[1:]
            epochs[W] = sum(h["seconds"] for h in timed) / len(timed)
            print(f"{W} process(es): {epochs[W]:.3f} s per timed epoch; load {load0} -> {load_average()}")
            profiles[W] = [_cumulative(os.path.join(out, f"rank{r}.prof")) for r in range(W)]
    one, rank0 = profiles[1][0], profiles[args.workers][0]
    print(f"\ncumulative seconds per epoch under cProfile (all {args.epochs} epochs / {args.epochs}); "
          f"ratio = rank 0 of {args.workers} over one process")
    print("| function | 1 process | rank 0 | ratio |")
    print("|---|---|---|---|")
    for key in FUNCTIONS:
        a, b = one.get(key, 0.0), rank0.get(key, 0.0)
        if a == 0.0 and b == 0.0:
            continue
        ratio = f"{b / a:.2f}" if a else "-"
        print(f"| {key[0]}:{key[1]} | {a / args.epochs:.3f} | {b / args.epochs:.3f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
