"""Peak memory against document length with the default settings (issue 15).

Each length runs in a fresh subprocess (peak RSS, ``resource.getrusage(...).ru_maxrss``, is a
per-process high-water mark): one document of ``T`` tokens over a 2,000-word vocabulary is fitted
for one epoch with every default (K=50, 10 particles, smc start; the epoch is a warm-up epoch:
ancestor lag 5, leave-document-out emissions) and then scored (``--score-particles`` filter particles, one seed).
The baseline RSS of an idle ``import pyro_ssl`` is reported too.

    python benchmarks/memory.py                          # 5,000 / 20,000 / 100,000 tokens
    python benchmarks/memory.py --tokens 5000 20000 --emission-only   # just the leave-out emission
    python benchmarks/memory.py --revision /work/main --tokens 5000   # an older checkout, for comparison
    python benchmarks/memory.py --quick                  # 5,000 and 20,000 tokens, 100 score particles
    python benchmarks/memory.py --exact --tokens 20000   # the epoch after the warm-up (blocked, collapsed)

``--emission-only`` measures :func:`pyro_ssl.infer.mstep.leave_out_log_emission` alone (K=50):
the piece that was quadratic, a (T, T) float64 same-word tensor, before issue 15.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time, math
import torch
torch.set_num_threads(1)
T, V, mode, P_score = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
import pyro_ssl
def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
base = rss_mb()
g = torch.Generator().manual_seed(0)
# Zipf-like word frequencies, as in text.
w = 1.0 / torch.arange(1, V + 1, dtype=torch.float64)
doc = torch.multinomial(w / w.sum(), T, replacement=True, generator=g)
out = {"T": T, "base_mb": base}
t0 = time.perf_counter()
if mode == "emission":
    from pyro_ssl.infer.mstep import leave_out_log_emission
    K = 50
    z = torch.randint(K, (1, T), generator=g)
    counts = torch.rand(K, V, dtype=torch.float64, generator=g) * 10 + 5
    e = leave_out_log_emission(counts, z, doc.view(1, T), torch.tensor([T]), 0.1)
    out["finite"] = bool(torch.isfinite(e).all())
else:
    kw = dict(warmup_epochs=0) if mode == "exact" else {}
    m = pyro_ssl.fit([doc.tolist()], epochs=1, progress=False, vocab_size=V, **kw)
    out["fit_seconds"] = time.perf_counter() - t0
    out["fit_peak_mb"] = rss_mb()
    out["history_finite"] = math.isfinite(m.history[-1]["log_joint_per_token"])
    t1 = time.perf_counter()
    est = m.score([doc.tolist()], num_particles=P_score, seeds=(0,))
    out["score_seconds"] = time.perf_counter() - t1
    out["log_lik_per_token"] = est.mean
    out["finite"] = math.isfinite(est.mean) and out["history_finite"]
out["seconds"] = time.perf_counter() - t0
out["peak_mb"] = rss_mb()
print(json.dumps(out))
"""


def measure(T: int, V: int, mode: str, score_particles: int, revision: str | None = None, timeout: float = 3600) -> dict:
    """Run one measurement in a fresh process; returns its JSON record (or the failure)."""
    root = os.path.abspath(revision or os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    # `python -c` puts the working directory first on sys.path: run from the checkout measured.
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=root)
    cmd = [sys.executable, "-c", CHILD, str(T), str(V), mode, str(score_particles)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root, timeout=timeout)
    if p.returncode != 0:
        tail = (p.stderr or "").strip().splitlines()[-1:] or [f"exit {p.returncode}"]
        return {"T": T, "failed": tail[0], "rc": p.returncode, "seconds": time.perf_counter() - t0}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, nargs="+", default=[5000, 20000, 100000])
    p.add_argument("--vocab", type=int, default=2000)
    p.add_argument("--score-particles", type=int, default=1000)
    p.add_argument("--emission-only", action="store_true")
    p.add_argument("--exact", action="store_true", help="fit one epoch of the exact E-step (warmup_epochs=0)")
    p.add_argument("--revision", default=None, help="a checkout to put on PYTHONPATH instead of this one")
    p.add_argument("--quick", action="store_true", help="5,000 and 20,000 tokens, 100 score particles")
    args = p.parse_args(argv)
    if args.quick:
        args.tokens, args.score_particles = [5000, 20000], 100
    mode = "emission" if args.emission_only else ("exact" if args.exact else "fit")
    print(f"# {mode}: peak RSS (MB) by document length; checkout {args.revision or 'this one'}")
    for T in args.tokens:
        print(json.dumps(measure(T, args.vocab, mode, args.score_particles, args.revision)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
