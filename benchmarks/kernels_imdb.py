"""E-step kernels on the seed's IMDB setup: completion perplexity, update rate and cost.

200 reviews of the shared IMDB sample (first 100 tokens train, next 70 scored), V = 5000,
fit's defaults except the kernel settings, completion perplexity with 1,000 filter particles.
Prints one JSON line per (configuration, training seed).

    python benchmarks/kernels_imdb.py --K 10 --configs default heuristic --seeds 0 1 2 --baselines
    python benchmarks/kernels_imdb.py --quick        # 40 reviews, 2 epochs, one seed (under 2 minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pyro_ssl
from pyro_ssl.data import completion_split, load_corpus

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import FORMER_EXACT  # noqa: E402

IMDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb" / "imdb_reviews_sample.csv"
# Each kernel alone (warmup_epochs=0), except "default" (fit's: 20 warm-up epochs of the
# heuristic E-step, then the exact blocked collapsed one); "heuristic" is the former default.
CONFIGS = {
    "default": {},
    "heuristic": dict(preset="heuristic"),
    "default_stride20": dict(block_stride=20),  # the default with blocks that do not overlap
    # The default with the particles scoring only L fixed-future positions, the rest by a
    # Metropolis-Hastings correction (exact either way; cheaper per block).
    "default_look0": dict(block_lookahead=0),
    "default_look2": dict(block_lookahead=2),
    "default_look5": dict(block_lookahead=5),
    "default_look5_p20": dict(block_lookahead=5, num_particles=20),
    "default_look5_stride5": dict(block_lookahead=5, block_stride=5),
    "default_b10s5": dict(block_size=10, block_stride=5),  # shorter blocks, each position still in two
    # adaptive resampling inside the blocks: resample only when the ESS falls below r * P
    "default_ess50": dict(block_resample_below=0.5),
    "default_ess25": dict(block_resample_below=0.25),
    "default_ess05": dict(block_resample_below=0.05),
    "default_ess75": dict(block_resample_below=0.75),
    "default_ess90": dict(block_resample_below=0.9),
    "default_ess50_b10s5": dict(block_resample_below=0.5, block_size=10, block_stride=5),
    "default_b14s7": dict(block_size=14, block_stride=7),
    "default_b16s8": dict(block_size=16, block_stride=8),
    # conditional systematic resampling inside the blocks (fewer lineages die at each resampling)
    "default_sys": dict(resampling="systematic"),
    "default_sys_ess75": dict(resampling="systematic", block_resample_below=0.75),
    "default_sys_ess100": dict(resampling="systematic", block_resample_below=1.0),
    # fewer gradient steps per minibatch in the M-step (fit's default makes 5): the learning schedule
    "default_mstep1": dict(mstep_iters=1),
    "default_mstep2": dict(mstep_iters=2),
    # systematic resampling below ESS 0.75 in blocks of 14 every 7 (mixing_probe.py: within about 2 standard
    # errors of the heuristic in every quintile)
    "default_sys_ess75_b14s7": dict(resampling="systematic", block_resample_below=0.75, block_size=14, block_stride=7),
    # with the Metropolised final draw (block_final_draw): systematic below ESS 0.75, 8 particles in blocks of 14
    # every 7, or 10 particles in blocks of 16 every 8 (mixing_probe.py, tenth session)
    "default_sys_ess75_p8_b14s7_metro": dict(resampling="systematic", block_resample_below=0.75, num_particles=8,
                                             block_size=14, block_stride=7, block_final_draw="metropolised"),
    "default_sys_ess75_b16s8_metro": dict(resampling="systematic", block_resample_below=0.75, block_size=16,
                                          block_stride=8, block_final_draw="metropolised"),
    "blocked": dict(kernel="blocked", emission="leave_out", warmup_epochs=0),
    "blocked_gibbs_global": dict(kernel="blocked", emission="global", phi_update="gibbs", warmup_epochs=0),
    "lag5_gibbs_global": dict(kernel="ancestor", emission="global", phi_update="gibbs", warmup_epochs=0),
    "full_lag": dict(kernel="ancestor", ancestor_lag="full", emission="leave_out", warmup_epochs=0),
    "full_lag_gibbs_global": dict(kernel="ancestor", ancestor_lag="full", emission="global", phi_update="gibbs",
                                  warmup_epochs=0),
    "blocked_collapsed": dict(kernel="blocked", emission="collapsed", warmup_epochs=0),
    "csmc_collapsed": dict(kernel="ancestor", ancestor_lag=0, emission="collapsed", warmup_epochs=0),
}
# "default" is fit's default of the day; the rest (but the presets) are relative to the exact kernel
# before the tenth session (_common.FORMER_EXACT), so the figures docs/learning.md quotes reproduce.
CONFIGS = {name: (c if name == "default" or "preset" in c else {**FORMER_EXACT, **c}) for name, c in CONFIGS.items()}
CONFIGS["former_default"] = dict(FORMER_EXACT)


def _mean(v):
    return round(sum(v) / len(v), 2) if v else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=IMDB)
    p.add_argument("--K", type=int, default=10)
    p.add_argument("--configs", nargs="+", default=["default", "heuristic"], choices=sorted(CONFIGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--docs", type=int, default=200)
    p.add_argument("--eval-particles", type=int, default=1000)
    p.add_argument("--baselines", action="store_true", help="also score the unigram and an EM-fitted HMM with K "
                   "topics on the same split, exactly (benchmarks/learning.py's baselines)")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.docs, args.epochs, args.seeds, args.eval_particles = 40, 2, [0], 100
    if not args.data.is_file():
        print(f"no data at {args.data}", file=sys.stderr)
        return 2
    corpus = load_corpus(args.data, vocab_size=5000)
    split = completion_split(corpus, T1=100, T2=70, num_docs=args.docs, seed=0)
    print(f"# load {os.getloadavg()[0]:.2f}", flush=True)
    if args.baselines:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from learning import baselines

        print(json.dumps({"K": args.K, "baselines": {k: round(v["ppl"], 2) for k, v in
                                                     baselines(split, [args.K], corpus.V).items()}}), flush=True)
    for name in args.configs:
        for seed in args.seeds:
            t0 = time.perf_counter()
            m = pyro_ssl.SSL(K=args.K, seed=seed, **CONFIGS[name]).fit(split.train, epochs=args.epochs, progress=False)
            est = m.completion_perplexity(split.eval_tokens, split.eval_lengths, split.T1,
                                          num_particles=args.eval_particles, seeds=(100,))
            print(json.dumps({"K": args.K, "config": name, "seed": seed, "ppl": round(est.mean, 2),
                              "wall": round(time.perf_counter() - t0, 1),
                              "epoch_s": round(sum(e["seconds"] for e in m.history) / len(m.history), 2),
                              "exact_epoch_s": _mean([e["seconds"] for e in m.history if not e.get("warmup")]),
                              "quintiles": [round(q, 3) for q in m.history[-1]["update_rate_quintiles"]],
                              "acceptance": m.history[-1].get("acceptance_rate")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
