"""Validation only: average the SSL's predictions over snapshots of several independent chains (issue 17).

Reads the files ``experiments/snapshots.py --save`` writes (each: one chain's snapshots' validation
token log-probabilities, the same filter seed) and prints the completion perplexity of every
chain's own mixture and of the mixtures across chains: all their snapshots, and every other
snapshot of each (the same number of members as one chain's window, so the same scoring cost).
No test review is read.

    for s in 0 1; do OMP_NUM_THREADS=1 python experiments/snapshots.py --K 100 --beta 0.03 --preset heuristic \\
        --particles 20 --seed $s --epochs 60 --start 25 --every 5 --save chain$s.pt; done
    python experiments/chains.py chain0.pt chain1.pt
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from protocol import mixture_perplexity  # noqa: E402  (the protocol's own: log-probs are 0 at padding)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path, help="snapshots.py --save files, one per chain")
    args = p.parse_args(argv)
    runs = {f.stem: torch.load(f) for f in args.files}
    first = next(iter(runs.values()))
    n = int((first["lengths"] - first["T1"]).sum())

    def ppl(lps):
        return round(mixture_perplexity(lps, n), 2)

    for name, r in runs.items():
        print(json.dumps({"chains": [name], "epochs": r["epochs"], "members": len(r["log_probs"]),
                          "val_ppl": ppl(list(r["log_probs"]))}))
    for k in range(2, len(runs) + 1):
        for combo in itertools.combinations(runs, k):
            every = [x for c in combo for x in runs[c]["log_probs"]]
            half = [x for c in combo for x in runs[c]["log_probs"][::k]]
            print(json.dumps({"chains": list(combo), "members": len(every), "val_ppl": ppl(every),
                              "thinned_members": len(half), "thinned_val_ppl": ppl(half)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
