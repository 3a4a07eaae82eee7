"""How far from exact is each E-step kernel? Drift from the exact posterior on a tiny model.

A kernel that leaves ``p(z | x)`` invariant keeps exact posterior draws exactly distributed.
Start ``C`` independent chains from exact draws (enumeration of all ``K^T`` paths), apply a few
sweeps of the kernel, and compare the topic marginals with the exact ones; the standard error
of each marginal is measured across the independent chains. Truncated ancestor sampling
(``ancestor_lag=L`` shorter than the document) drifts; full-lag PGAS and the blocked kernel
must not.

    python benchmarks/lag_bias.py            # T = 10, 100,000 chains (a few minutes on one core)
    python benchmarks/lag_bias.py --quick    # T = 8, 6,000 chains (under 2 minutes)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from exact import enumerate_paths, exact_marginals  # noqa: E402
from helpers import tiny_model  # noqa: E402

from pyro_ssl.smc import csmc_sweep  # noqa: E402
from pyro_ssl.smc.blocked import blocked_csmc_sweep  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", type=int, default=10)
    p.add_argument("--chains", type=int, default=100000)
    p.add_argument("--sweeps", type=int, default=3)
    p.add_argument("--particles", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.T, args.chains = 8, 6000
    torch.set_num_threads(1)
    prior, log_phi = tiny_model()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(6, (args.T,), generator=g)
    paths, log_post, _ = enumerate_paths(prior, log_phi, x)
    exact = exact_marginals(paths, log_post, 3)
    C, T, P = args.chains, args.T, args.particles
    xb, n = x.expand(C, T), torch.full((C,), T)
    kernels = {f"ancestor_lag={L}": dict(ancestor_lag=L) for L in (0, 1, 2, 5)}
    kernels["ancestor_lag=full"] = dict(ancestor_lag="full")
    kernels["blocked (4, stride 2)"] = dict(block=(4, 2))
    print(f"tiny model K=3, V=6, T={T}, P={P}; {C} chains from exact posterior draws, {args.sweeps} sweeps; "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"{'kernel':>24} | {'max |drift|':>11} | {'SE':>7} | {'max z':>6} | seconds")
    for name, kw in kernels.items():
        gen = torch.Generator().manual_seed(1)
        z = paths[torch.multinomial(log_post.exp(), C, replacement=True, generator=gen)]
        t0 = time.perf_counter()
        for _ in range(args.sweeps):
            if "block" in kw:
                b, s = kw["block"]
                z = blocked_csmc_sweep(prior, log_phi, xb, n, P, z, block_size=b, stride=s, generator=gen).path
            else:
                z = csmc_sweep(prior, log_phi, xb, n, P, z, ancestor_lag=kw["ancestor_lag"], generator=gen).path
        onehot = torch.nn.functional.one_hot(z, 3).double()
        est, se = onehot.mean(0), onehot.std(0) / C**0.5
        drift = (est - exact).abs()
        zmax = float((drift / se.clamp_min(1e-6)).max())
        print(f"{name:>24} | {float(drift.max()):11.4f} | {float(se.max()):7.4f} | {zmax:6.1f} | "
              f"{time.perf_counter() - t0:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
