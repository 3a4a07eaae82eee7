"""Validation only: does averaging the SSL's predictions over late-epoch snapshots help? (issue 17)

The protocol's split (``protocol_split``, split seed 1: 200 training, 100 validation reviews;
vocabulary from the training prefixes); one SSL fit, and from epoch ``--start`` on, every
``--every`` epochs a snapshot (LSTM and ``phi``) scores the validation reviews' continuations
(first 100 tokens observed, next 70 scored) with 500 filter particles. Printed per snapshot: its
own completion perplexity, and that of the mixture of the snapshots so far (all, the last 3,
the last 5): ``p(x_t | x_<t) = mean_s p_s(x_t | x_<t)``, a proper predictive at every step. No
test review is read.

    OMP_NUM_THREADS=1 python experiments/snapshots.py --K 100 --beta 0.03 --preset heuristic \\
        --epochs 70 --start 30 --every 5 > docs/results/protocol_ssl_explore_2026-12-03/snapshots_K100.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

import pyro_ssl
from pyro_ssl.data import protocol_split, read_texts

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from protocol import mixture_perplexity  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb" / "imdb_reviews_sample.csv"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--K", type=int, default=100)
    p.add_argument("--beta", type=float, default=0.03)
    p.add_argument("--preset", default=None)
    p.add_argument("--particles", type=int, default=10, help="E-step particles")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=70)
    p.add_argument("--start", type=int, default=30)
    p.add_argument("--every", type=int, default=5)
    p.add_argument("--save", type=Path, default=None,
                   help="write every snapshot's validation token log-probs here (torch.save), to try other windows")
    args = p.parse_args(argv)
    split = protocol_split(read_texts(args.data), T1=100, T2=70, num_train=200, num_val=100, num_test=200,
                           vocab_size=5000, seed=1)
    tok, n, T1 = split.task("val")
    scored = torch.arange(tok.shape[1])[None, T1:] < n[:, None]
    m = pyro_ssl.SSL(K=args.K, beta=args.beta, seed=args.seed, eval_particles=500, preset=args.preset,
                     num_particles=args.particles)
    snaps: list[torch.Tensor] = []

    def ppl(lps: list[torch.Tensor]) -> float:  # the protocol's mixture (log-probs are 0 at padding)
        return round(mixture_perplexity(lps, int(scored.sum())), 2)

    t0 = time.perf_counter()
    m.fit(split.train, epochs=args.start, progress=False)
    while True:
        snaps.append(m.token_log_probs(tok, n, seed=0).double()[:, T1:])
        print(json.dumps({"K": args.K, "beta": args.beta, "preset": args.preset, "seed": args.seed,
                          "epoch": len(m.history), "val_ppl": ppl(snaps[-1:]), "ensemble_of": len(snaps),
                          "ensemble_val_ppl": ppl(snaps), "last3": ppl(snaps[-3:]), "last5": ppl(snaps[-5:]),
                          "wall": round(time.perf_counter() - t0), "load": round(os.getloadavg()[0], 2)}), flush=True)
        if args.save is not None:
            torch.save({"epochs": list(range(args.start, len(m.history) + 1, args.every)), "T1": T1, "lengths": n,
                        "log_probs": torch.stack(snaps)}, args.save)
        if len(m.history) >= args.epochs:
            return 0
        m.fit(split.train, epochs=args.every, progress=False)


if __name__ == "__main__":
    raise SystemExit(main())
