"""The thread trap: a fit beside one busy process, with the package's thread default and with torch's.

torch's intra-op threads spin in OpenMP barriers while they wait for a core, so on a machine
where another process is busy, loops of small operations slow down many times over. The
package runs its hot loops on one thread by default (:mod:`pyro_ssl.runtime`). This script
measures, at the seed size with ``fit``'s default settings:

* ``package default``: ``pyro_ssl.fit`` as a user calls it (``OMP_NUM_THREADS`` unset, so torch
  would use every core);
* ``torch default``: the same with ``pyro_ssl.set_threads(None)``, i.e. torch's own thread
  count (the package's behaviour before issue 13);

each alone and beside one CPU-bound process (a pure-Python loop), and prints the ratio
beside / alone for each. Every measurement is a fresh process; a measurement that passes
``--limit`` seconds is stopped and reported as more than that.

Usage::

    python benchmarks/bench_threads.py            # 200 docs x 100 tokens, 2 epochs (a few minutes)
    python benchmarks/bench_threads.py --quick    # 100 docs x 50 tokens, 1 epoch (under 2 minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import SEED_SIZE, load_average, machine_line  # noqa: E402

BUSY = "import time\nend = time.time() + {seconds}\nx = 0\nwhile time.time() < end:\n    x += 1\n"

CHILD = """
import json, sys, time
sys.path.insert(0, {bench!r})
import torch
import pyro_ssl
from _common import synthetic_corpus
if {torch_default}:
    pyro_ssl.set_threads(None)
tokens, lengths = synthetic_corpus({D}, {T}, {V}, seed=0)
t0 = time.perf_counter()
m = pyro_ssl.fit((tokens, lengths), K={K}, hidden_size={H}, epochs={epochs}, seed=0, vocab_size={V}, progress=False)
print(json.dumps({{"seconds": time.perf_counter() - t0, "threads": pyro_ssl.get_threads() or torch.get_num_threads(),
                  "epochs": [e["seconds"] for e in m.history]}}))
"""


def run(size: dict, epochs: int, torch_default: bool, busy: bool, limit: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    code = CHILD.format(bench=os.path.dirname(os.path.abspath(__file__)), torch_default=torch_default,
                        epochs=epochs, **size)
    hog = subprocess.Popen([sys.executable, "-c", BUSY.format(seconds=limit + 30)]) if busy else None
    try:
        time.sleep(0.5 if busy else 0)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            return {"seconds": None, "wall": time.perf_counter() - t0}
        if proc.returncode:
            raise RuntimeError(proc.stderr[-2000:])
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="100 docs x 50 tokens, 1 epoch")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--limit", type=float, default=None, help="seconds before a measurement is stopped")
    args = p.parse_args(argv)
    size = dict(SEED_SIZE)
    size.pop("P")
    if args.quick:
        size.update(D=100, T=50)
    epochs = args.epochs or (1 if args.quick else 2)
    limit = args.limit or (60.0 if args.quick else 240.0)
    print(machine_line())
    print(f"size: {size['D']} docs x {size['T']} tokens, K={size['K']}, H={size['H']}, V={size['V']}; "
          f"fit defaults, {epochs} epoch(s) incl. start-up; busy process: a pure-Python loop")
    rows = []
    for label, torch_default in (("package default (1 thread)", False), ("torch default threads", True)):
        alone = run(size, epochs, torch_default, False, limit)
        beside = run(size, epochs, torch_default, True, limit)
        rows.append((label, alone, beside))
        print(f"  {label}: alone {_fmt(alone, limit)}, beside a busy process {_fmt(beside, limit)}  "
              f"[load {load_average()}]", flush=True)
    print()
    print("| threads | torch threads in the fit | alone (s) | beside a busy process (s) | beside / alone |")
    print("|---|---|---|---|---|")
    for label, alone, beside in rows:
        ratio = ("> %.1f" % (limit / alone["seconds"]) if beside["seconds"] is None
                 else f"{beside['seconds'] / alone['seconds']:.2f}")
        print(f"| {label} | {alone.get('threads', '?')} | {_fmt(alone, limit)} | {_fmt(beside, limit)} | {ratio} |")
    print(f"\nload average now {load_average()}")
    return 0


def _fmt(r: dict, limit: float) -> str:
    return f"> {limit:.0f}" if r["seconds"] is None else f"{r['seconds']:.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
