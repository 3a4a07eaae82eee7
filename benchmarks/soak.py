"""Soak: thousands of random small problems through every verb; prints tried / crashed / NaN (issue 15).

Each problem (``tests/properties.py``: 1-5 documents of length 1-40, vocabularies down to 1,
K down to 1, 2-4 particles, float32/float64, every kernel, look-ahead, emission, phi update,
start and batch size, T1 below and above the lengths) is fitted for 1-2 epochs, scored,
completed, predicted, sampled, saved and loaded. A crash is any exception; ``nan`` any NaN/inf
in an output, parameter or history entry; ``other`` a failed round trip or range property.

    python benchmarks/soak.py                   # 2,000 problems (about 4 minutes on one core)
    python benchmarks/soak.py --examples 200 --seed 1
    python benchmarks/soak.py --quick           # 200 problems (under 2 minutes)
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
import traceback
import warnings

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from properties import check_problem, problems  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="200 problems")
    args = p.parse_args(argv)
    if args.quick:
        args.examples = 200
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    counts = collections.Counter()
    kinds = collections.Counter()
    first: dict[str, str] = {}
    t0 = time.perf_counter()

    @seed(args.seed)
    @settings(max_examples=args.examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(problems())
    def run(problem):
        counts["tried"] += 1
        try:
            bad = check_problem(problem)
        except Exception as e:  # recorded, never raised: hypothesis then runs every example
            counts["crashed"] += 1
            key = f"{type(e).__name__}: {str(e)[:120]}"
            kinds[key] += 1
            first.setdefault(key, f"{problem}\n{traceback.format_exc()}")
            return
        if any(b.startswith("nan") for b in bad):
            counts["nan"] += 1
        elif bad:
            counts["other"] += 1
        for b in bad:
            kinds[b] += 1
            first.setdefault(b, str(problem))
        if counts["tried"] % 100 == 0:
            print(f"  {counts['tried']} tried, {counts['crashed']} crashed, {counts['nan']} NaN, "
                  f"{counts['other']} other ({time.perf_counter() - t0:.0f} s)", flush=True)

    run()
    print(f"tried {counts['tried']}  crashed {counts['crashed']}  NaN {counts['nan']}  other {counts['other']}  "
          f"({time.perf_counter() - t0:.0f} s, seed {args.seed})")
    for k, n in kinds.most_common():
        print(f"  {n:5d}  {k}\n         first: {first[k][:2000]}")
    return 1 if counts["crashed"] or counts["nan"] or counts["other"] else 0


if __name__ == "__main__":
    sys.exit(main())
