"""What exactness costs per epoch: the default's exact epoch, the warm-up's heuristic epoch and
the seed's algorithm, interleaved in one run (issues 13 and 16).

Seed size (``_common.SEED_SIZE``: 200 documents x 100 tokens of synthetic Zipf text, V = 5000,
K = 50, H = 64, P = 10), one thread, one process. Three stochastic-EM runs share the corpus:

* ``seed``: preset ``seed`` (plain CSMC, phi from all documents, one minibatch, one M-step);
* ``heuristic``: ``preset="heuristic"`` (the warm-up's E-step for every epoch: lag-5 ancestor
  sampling, leave-out emissions, minibatches of 50 with 5 M-steps);
* ``blocked``: the exact kernel's sweeps without the collapsed correction (blocked conditional
  SMC under leave-out emissions), so ``exact - blocked`` is the correction's cost;
* ``exact``: fit's default after its warm-up (``warmup_epochs=0``: blocked conditional SMC,
  blocks of 20 / stride 10, particles scoring ``block_lookahead`` fixed-future positions, the
  collapsed emissions with their Metropolis-Hastings step, which also corrects for the rest of
  the future);
* ``exact_full_future``: the same with every particle scoring the whole fixed future
  (``block_lookahead="full"``, the default before 2026-12-03's second session);
* ``exact_resample_every_step``: the default with resampling at every step inside the blocks
  (``block_resample_below=1``, the default before 2026-12-03's fourth session);
* ``exact_b10s5``, ``exact_b14s7``: the default with blocks of 10 every 5 positions, or 14 every 7
  (better mixing, more blocks);
* ``exact_p20``: the default with 20 particles;
* ``exact_s20``, ``exact_s20_p20``: blocks that do not overlap (20 every 20), with 10 or 20
  particles (half the blocks; the particles cover each position once instead of twice);
* ``exact_sys*``, ``exact_p15``, ``exact_p20_look2``, ``exact_*_s15``, ``exact_sys_p20_b24s16``:
  combinations of systematic resampling, 15 or 20 particles, 2 scored future positions and blocks
  further apart (``docs/learning.md``, issue 16's mixing bar).

Each repeat runs one epoch of each, rotating which goes first, after one untimed epoch each.
Printed: the median epoch seconds (E-step and M-step apart), and the ratios to the seed's
epoch and to the heuristic's, with the load average.

    OMP_NUM_THREADS=1 python benchmarks/bench_exact.py              # 5 repeats, ~3 minutes
    OMP_NUM_THREADS=1 python benchmarks/bench_exact.py --quick      # 2 repeats, 100 documents
    OMP_NUM_THREADS=1 python benchmarks/bench_exact.py --docs 50 --length 1000 --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import FORMER_EXACT, SEED_SIZE, load_average, machine_line, synthetic_corpus, table  # noqa: E402

CONFIGS = {"seed": dict(preset="seed"), "heuristic": dict(preset="heuristic"),
           "blocked": dict(warmup_epochs=0, emission="leave_out"), "exact": dict(warmup_epochs=0),
           "exact_full_future": dict(warmup_epochs=0, block_lookahead="full"),
           "exact_resample_every_step": dict(warmup_epochs=0, block_resample_below=1.0),
           "exact_b10s5": dict(warmup_epochs=0, block_size=10, block_stride=5),
           "exact_b14s7": dict(warmup_epochs=0, block_size=14, block_stride=7),
           "exact_p20": dict(warmup_epochs=0, num_particles=20),
           "exact_s20": dict(warmup_epochs=0, block_stride=20),
           "exact_s20_p20": dict(warmup_epochs=0, block_stride=20, num_particles=20),
           "exact_sys": dict(warmup_epochs=0, resampling="systematic"),
           "exact_sys_ess75": dict(warmup_epochs=0, resampling="systematic", block_resample_below=0.75),
           "exact_p15": dict(warmup_epochs=0, num_particles=15),
           "exact_sys_p15": dict(warmup_epochs=0, resampling="systematic", num_particles=15),
           "exact_sys_b16s8": dict(warmup_epochs=0, resampling="systematic", block_size=16, block_stride=8),
           "exact_sys_b14s7": dict(warmup_epochs=0, resampling="systematic", block_size=14, block_stride=7),
           "exact_p20_look2": dict(warmup_epochs=0, num_particles=20, block_lookahead=2),
           "exact_p20_s15": dict(warmup_epochs=0, num_particles=20, block_stride=15),
           "exact_sys_p20_s15": dict(warmup_epochs=0, resampling="systematic", num_particles=20, block_stride=15),
           "exact_sys_p15_s15": dict(warmup_epochs=0, resampling="systematic", num_particles=15, block_stride=15),
           "exact_sys_p20_b24s16": dict(warmup_epochs=0, resampling="systematic", num_particles=20, block_size=24,
                                        block_stride=16),
           "exact_sys_p20_look2": dict(warmup_epochs=0, resampling="systematic", num_particles=20, block_lookahead=2),
           "exact_sys_ess75_b16s8": dict(warmup_epochs=0, resampling="systematic", block_resample_below=0.75,
                                         block_size=16, block_stride=8),
           "exact_sys_ess75_p8_b14s7_metro": dict(warmup_epochs=0, resampling="systematic", block_resample_below=0.75,
                                                  num_particles=8, block_size=14, block_stride=7,
                                                  block_final_draw="metropolised"),
           "exact_sys_ess75_b14s7": dict(warmup_epochs=0, resampling="systematic", block_resample_below=0.75,
                                         block_size=14, block_stride=7)}
# "exact" is fit's exact kernel of the day; the rest (but the presets) are relative to the one before
# the tenth session (_common.FORMER_EXACT, "exact_former"), so the figures the docs quote reproduce.
CONFIGS = {name: (c if name == "exact" or "preset" in c else {**FORMER_EXACT, **c}) for name, c in CONFIGS.items()}
CONFIGS["exact_former"] = dict(warmup_epochs=0, **FORMER_EXACT)


def make(name: str, tokens, lengths, V: int):
    from pyro_ssl.config import SSLConfig
    from pyro_ssl.data.shard import TokenShard
    from pyro_ssl.infer.em import StochasticEM
    from pyro_ssl.model import TopicalSSL

    s = SEED_SIZE
    # The particles are each setting's own (the presets' and FORMER_EXACT's 10, the default's own).
    cfg = SSLConfig.from_flat(**{"K": s["K"], "hidden_size": s["H"], "seed": 0, **CONFIGS[name]})
    return StochasticEM(TopicalSSL(s["K"], V, hidden_size=s["H"]), TokenShard(tokens, lengths, V=V), cfg)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--docs", type=int, default=SEED_SIZE["D"])
    p.add_argument("--length", type=int, default=SEED_SIZE["T"], help="tokens per document (the exact epoch's "
                   "cost grows with its square: every block rescores the whole fixed future)")
    p.add_argument("--quick", action="store_true", help="2 repeats on 100 documents (under 2 minutes)")
    p.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS),
                   help="which E-steps to time (seed and heuristic are always in: the ratios are to them)")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.docs = 2, 100
    torch.set_num_threads(1)
    V = SEED_SIZE["V"]
    tokens, lengths = synthetic_corpus(args.docs, args.length, V, seed=0)
    print(machine_line(), flush=True)
    ems = {name: make(name, tokens, lengths, V) for name in CONFIGS
           if name in ("seed", "heuristic") or name in args.configs}
    for em in ems.values():
        em.run_epoch()  # untimed: first calls, and the counts the later epochs start from
    times = {name: {"epoch": [], "estep": [], "mstep": []} for name in ems}
    acceptance = {}
    names = list(ems)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            e = ems[name].run_epoch()
            times[name]["epoch"].append(e["seconds"])
            times[name]["estep"].append(e["estep_seconds"])
            times[name]["mstep"].append(e["mstep_seconds"])
            if name.startswith("exact"):
                acceptance.setdefault(name, []).append(e["acceptance_rate"])
    med = {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()}
    rows = [(n, f"{m['epoch']:.3f}", f"{m['estep']:.3f}", f"{m['mstep']:.3f}", f"{m['epoch'] / med['seed']['epoch']:.2f}",
             f"{m['epoch'] / med['heuristic']['epoch']:.2f}") for n, m in med.items()]
    print(f"{args.docs} documents x {args.length} tokens, K = {SEED_SIZE['K']}, P = {SEED_SIZE['P']}, "
          f"median of {args.repeats} interleaved epochs; load average after: {load_average()}")
    print(table(rows, ("E-step", "epoch s", "E-step s", "M-step s", "x seed", "x heuristic")))
    for name, acc in acceptance.items():
        print(f"{name} epochs' acceptance rate: {', '.join(f'{a:.2f}' for a in acc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
