"""Kill a checkpointing fit at many moments, resume, and count identical finishes (issue 15).

Every event of ``tests/killfit.py`` at every occurrence (``minibatch`` 1..9: inside each of
the three epochs; ``write-partial``, ``write-before-rename``, ``write-after-rename`` 1..3: inside
each checkpoint write), for a one-process fit and a two-process gloo fit (the kill hits rank 1
inside epochs and rank 0, the writer, inside writes). Each resume must finish bit-identical
(float64) to the uninterrupted run, and the checkpoint left by the kill must be readable.

    python benchmarks/killtest.py                  # both world sizes, every kill point
    python benchmarks/killtest.py --world 1        # one process only
    python benchmarks/killtest.py --json out.json  # also write the per-kill records
    python benchmarks/killtest.py --quick          # one process, 3 kill points (under 2 minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from killfit import identical, kill_and_resume, reference  # noqa: E402

POINTS = [f"minibatch:{n}" for n in range(1, 10)] + [
    f"{e}:{n}" for e in ("write-partial", "write-before-rename", "write-after-rename") for n in range(1, 4)
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world", type=int, nargs="+", default=[1, 2])
    p.add_argument("--json", default=None)
    p.add_argument("--quick", action="store_true", help="one process, one kill inside an epoch and two inside writes")
    args = p.parse_args(argv)
    points = POINTS
    if args.quick:
        args.world, points = [1], ["minibatch:5", "write-partial:1", "write-after-rename:2"]
    records = []
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for world in args.world:
            t0 = time.perf_counter()
            ref = reference(tmp / f"ref{world}", world)
            ref_s = time.perf_counter() - t0
            rows = []
            for i, kill in enumerate(points):
                rank = 0 if kill.startswith("write") or world == 1 else 1
                try:
                    r = kill_and_resume(tmp / f"w{world}_{i}", world, kill, kill_rank=rank)
                    ok = r["killed"] and not r["leftovers"] and identical(r["final"], ref)
                    row = {k: v for k, v in r.items() if k != "final"}
                except Exception as e:  # a resume that never finished, or an unreadable checkpoint
                    ok, row = False, {"kill": kill, "error": f"{type(e).__name__}: {e}"[:500]}
                row.update(world=world, rank=rank, identical=ok)
                failures += not ok
                rows.append(row)
                print(json.dumps(row), flush=True)
            records += rows
            secs = [r["kill_seconds"] + r["resume_seconds"] for r in rows if "kill_seconds" in r]
            print(f"# world {world}: {sum(r['identical'] for r in rows)}/{len(rows)} kills resumed bit-identical; "
                  f"uninterrupted run {ref_s:.1f} s; kill + resume median {statistics.median(secs):.1f} s, "
                  f"max {max(secs):.1f} s; resume relaunches {sum(r.get('resume_retries', 0) for r in rows)}",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
