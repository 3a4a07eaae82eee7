"""The emission side of the E-step against the exact collapsed posterior, on a corpus small enough to enumerate.

With the LSTM prior ``theta`` fixed, the target of the E-step is ``p(z | x, theta)`` with the
topic-word distributions ``phi ~ Dirichlet(beta)`` integrated out: a Polya urn over the whole
corpus. On ``D = 3`` documents of ``T = 4`` words, ``K = 2`` topics, every one of the
``2^12`` joint topic assignments is enumerated and the exact marginals ``p(z_dt = k | x)``
computed. Chains start from exact draws of that posterior, so an exact kernel keeps every
marginal exact after any number of sweeps while a heuristic drifts towards its own fixed
point. Each chain's last state is one independent value: the standard error is measured across
chains.

E-steps compared (each sweep: every document once, full-lag ancestor sampling with P particles,
so the only difference is what the emissions are):

* ``gibbs``: ``emission="global"``, ``phi_update="gibbs"``: ``phi ~ Dirichlet(n + beta)``, then
  every document swept under it (exact; the uncollapsed Gibbs step);
* ``leave_out``: ``emission="leave_out"`` (the warm-up's and ``preset="heuristic"``'s): every document swept in parallel
  under ``phi`` from the *other* documents' counts (the package's
  :func:`~pyro_ssl.infer.mstep.leave_out_log_emission`), as a minibatch is;
* ``smoothed``: ``emission="global"``, ``phi_update="smoothed"`` (the seed's): swept under the
  posterior mean of ``phi`` from all counts, the document's own included;
* ``collapsed`` and ``collapsed_blocked``: ``emission="collapsed"`` (exact): plain CSMC
  (``ancestor_lag=0``) or blocked CSMC proposals under ``phi`` from the current counts less the
  tokens that may change before each document's decision, accepted one document after another
  by the collapsed Metropolis-Hastings step (:mod:`pyro_ssl.infer.collapsed`), minibatches
  :data:`MINIBATCHES`.

Usage::

    python benchmarks/emission_bias.py --chains 100000 --sweeps 20   # docs/learning.md's table (about 12 min)
    python benchmarks/emission_bias.py --quick                       # 50,000 chains, 5 sweeps (under 2 minutes idle)
    python benchmarks/emission_bias.py --kernels collapsed collapsed_blocked --chains 250000 --sweeps 4
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from _common import load_average, machine_line  # noqa: E402
from exact import collapsed_posterior  # noqa: E402
from helpers import tiny_model  # noqa: E402

from pyro_ssl.infer.collapsed import collapsed_mh, visit_order_log_emission  # noqa: E402
from pyro_ssl.infer.mstep import dirichlet_log_phi, leave_out_log_emission, smoothed_log_phi, topic_word_counts  # noqa: E402
from pyro_ssl.smc import FULL_LAG, csmc_sweep  # noqa: E402
from pyro_ssl.smc.blocked import blocked_csmc_sweep  # noqa: E402

MINIBATCHES = ([1, 2], [0])
"""The collapsed kernels update documents 1 and 2 together (they share words 2 and 3) (parallel proposals, sequential
acceptance), then document 0, as a fit's minibatches do."""

DOCS = torch.tensor([[0, 1, 0, 1], [2, 2, 3, 1], [3, 0, 3, 2]])
"""Words 0 and 2 recur inside one document and rarely elsewhere: where collapsing matters."""


def problem(K=2, V=4, beta=0.1, seed=0):
    prior, _ = tiny_model(K=K, V=V, H=8, seed=seed)
    return prior, DOCS.clone(), beta


def run(kernel, prior, x, beta, start, sweeps, P, seed, lag=FULL_LAG):
    """Last states of ``C`` independent chains ``(C, D, T)`` after ``sweeps`` sweeps of ``kernel``."""
    C, D, T = start.shape
    K, V = prior.K, int(x.max()) + 1
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    z = start.clone()
    lengths = torch.full((C,), T)
    flat_x = x.reshape(1, -1).expand(C, -1)
    dummy = torch.zeros(K, V, dtype=torch.float64)

    def counts_per_chain(z):  # (C, K, V)
        n = torch.zeros(C, K * V, dtype=torch.float64)
        n.scatter_add_(1, z.reshape(C, -1) * V + flat_x, torch.ones(C, D * T, dtype=torch.float64))
        return n.view(C, K, V)

    for _ in range(sweeps):
        n = counts_per_chain(z)
        if kernel.startswith("collapsed"):
            if kernel.endswith("_metropolised"):
                collapsed_sweep(kernel, prior, x, beta, z, n, P, g, future_lag=1, resample_below=0.75,
                                resampling="systematic", final_draw="metropolised")
                continue
            collapsed_sweep(kernel, prior, x, beta, z, n, P, g, future_lag=0 if kernel.endswith("_lag0") else None,
                            resample_below=0.5 if kernel.endswith("_adaptive") else None)
            continue
        if kernel == "gibbs":  # the package's steps, batched over chains: (C, K, V)
            log_phi = dirichlet_log_phi(n, beta)
        elif kernel == "smoothed":
            log_phi = smoothed_log_phi(n, beta)
        new = z.clone()
        for d in range(D):
            xd = x[d].expand(C, T)
            if kernel == "leave_out":
                own = torch.zeros(C, K * V, dtype=torch.float64)
                own.scatter_add_(1, z[:, d] * V + xd, torch.ones(C, T, dtype=torch.float64))
                rest = n - own.view(C, K, V) + beta
                lphi = rest.log() - rest.sum(-1, keepdim=True).log()
            else:
                lphi = log_phi
            log_em = lphi.gather(2, xd.unsqueeze(1).expand(C, K, T)).transpose(1, 2)  # (C, T, K)
            new[:, d] = csmc_sweep(prior, dummy, xd, lengths, P, z[:, d], ancestor_lag=lag, generator=g,
                                   log_emission=log_em).path
            if kernel != "leave_out":  # uncollapsed / smoothed: documents are swept one after another
                z[:, d] = new[:, d]
        z = new  # leave_out: a minibatch of all D documents, swept in parallel from the old paths
    return z


def collapsed_sweep(kernel, prior, x, beta, z, n, P, g, block_size=2, stride=1, minibatches=MINIBATCHES,
                    future_lag=None, resample_below=None, resampling="multinomial", final_draw="gibbs"):
    """One collapsed E-step of every chain, minibatch by minibatch (:data:`MINIBATCHES`), in place.

    ``x``: ``(D, T)`` words shared by the chains or ``(C, D, T)`` each chain's own; ``z`` ``(C, D, T)``.

    ``collapsed``: plain CSMC proposals (``ancestor_lag=0``); ``collapsed_blocked``: blocked CSMC
    (blocks of 2, stride 1, so every position is updated inside a block); both under ``phi`` from
    the chain's current counts less what may change before each document's decision (the
    window of itself and of the documents visited before it:
    :func:`~pyro_ssl.infer.collapsed.visit_order_log_emission`, as fit does), accepted by
    :func:`~pyro_ssl.infer.collapsed.collapsed_mh`
    against the chain's counts ``n`` ``(C, K, V)``, which it keeps current. ``future_lag``: the
    blocked kernel's (``None`` full; ``collapsed_blocked_lag0`` runs it with 0, the whole fixed
    future through its Metropolis-Hastings correction, folded into the same decision;
    ``collapsed_blocked_adaptive`` with adaptive resampling, ``resample_below=0.5``).
    ``resample_below``: the blocked kernel's adaptive resampling (fit's ``block_resample_below``);
    ``resampling``, ``final_draw``: its resampling scheme and final choice (``block_final_draw``;
    ``collapsed_blocked_metropolised``: systematic, adaptive below 0.75, one scored future position,
    the Metropolised final draw).
    """
    C, D, T = z.shape
    K, V = n.shape[-2:]
    dummy = torch.zeros(K, V, dtype=torch.float64)
    for batch in minibatches:
        S = len(batch)
        xb = x[batch].expand(C, S, T) if x.ndim == 2 else x[:, batch]
        cur = z[:, batch].clone()
        mask = torch.ones(C, S, T, dtype=torch.bool)
        lengths = torch.full((C * S,), T)
        if kernel == "collapsed":
            log_q = visit_order_log_emission(n, xb, cur, mask, 0, T, beta)  # (C, S, T, K)
            prop = csmc_sweep(prior, dummy, xb.reshape(C * S, T), lengths, P, cur.reshape(C * S, T), ancestor_lag=0,
                              generator=g, log_emission=log_q.reshape(C * S, T, K)).path.view(C, S, T)
            acc = collapsed_mh(n, xb, mask, cur, prop, log_q, beta, torch.rand(C, S, generator=g, dtype=torch.float64))
            z[:, batch] = torch.where(acc.unsqueeze(-1), prop, cur)
        else:
            def accept(i, rows, current, proposed, log_ratio):
                assert rows.numel() == C * S  # equal lengths: every document reaches every block
                u = torch.rand(C, S, generator=g, dtype=torch.float64)
                # The sweep put its per-block tables' ratio into log_ratio (as fit runs it).
                return collapsed_mh(n, xb, mask, current.view(C, S, T), proposed.view(C, S, T), None, beta,
                                    u, log_ratio.view(C, S)).reshape(-1)

            flat_x = xb.reshape(C * S, T)

            def block_proposal(rows, s, e, current):  # from the chain's counts n as the decisions leave them
                q = visit_order_log_emission(n, xb, current.view(C, S, T), mask, s, e, beta)
                return q.reshape(C * S, e - s, K)[rows]

            z[:, batch] = blocked_csmc_sweep(prior, dummy, flat_x, lengths, P, cur.reshape(C * S, T),
                                             block_size=block_size, stride=stride, generator=g,
                                             accept=accept, future_lag=future_lag, block_proposal=block_proposal,
                                             resample_below=resample_below, resampling=resampling,
                                             final_draw=final_draw).path.view(C, S, T)


def check_leave_out_formula(prior, x, beta, z):
    """The per-chain leave-out emissions here equal the package's, chain by chain (first chains)."""
    K, V = prior.K, int(x.max()) + 1
    D, T = x.shape
    for c in range(3):
        counts = topic_word_counts(z[c], x, torch.full((D,), T), K, V)
        ref = leave_out_log_emission(counts, z[c], x, torch.full((D,), T), beta)
        for d in range(D):
            own = topic_word_counts(z[c, d : d + 1], x[d : d + 1], torch.tensor([T]), K, V)
            lphi = smoothed_log_phi(counts - own, beta)
            assert torch.allclose(ref[d], lphi[:, x[d]].T.to(ref.dtype), atol=1e-10)


def measure(chains=200_000, sweeps=10, P=4, seed=0, kernels=("gibbs", "leave_out", "smoothed"), lag=FULL_LAG):
    """``{kernel: {max_abs_error, z (in SE), se, at, seconds}}`` and the exact marginals."""
    prior, x, beta = problem()
    with torch.no_grad():
        exact, z_all, w = collapsed_posterior(prior, x, beta)
        g = torch.Generator().manual_seed(seed + 1)
        start = z_all[torch.multinomial(w, chains, replacement=True, generator=g)]
        check_leave_out_formula(prior, x, beta, start)
        out = {}
        for kernel in kernels:
            t0 = time.perf_counter()
            z = run(kernel, prior, x, beta, start, sweeps, P, seed, lag)
            oh = torch.nn.functional.one_hot(z, prior.K).double()
            est, se = oh.mean(0), oh.std(0) / chains**0.5
            err = est - exact
            i = int(err.abs().argmax())
            out[kernel] = dict(max_abs_error=float(err.abs().max()), z=float((err.abs() / se.clamp_min(1e-9)).max()),
                               se=float(se.max()), at=tuple(int(v) for v in torch.unravel_index(torch.tensor(i), err.shape)),
                               seconds=time.perf_counter() - t0)
    return out, exact


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--chains", type=int, default=None)
    p.add_argument("--sweeps", type=int, default=None)
    p.add_argument("--kernels", nargs="+", default=["gibbs", "leave_out", "smoothed"],
                   choices=["gibbs", "leave_out", "smoothed", "collapsed", "collapsed_blocked", "collapsed_blocked_lag0",
                            "collapsed_blocked_adaptive", "collapsed_blocked_metropolised"])
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    chains = args.chains or (50_000 if args.quick else 200_000)
    sweeps = args.sweeps or (5 if args.quick else 10)
    print(machine_line(1))
    print(f"D=3 documents x T=4 words, K=2, V=4, beta=0.1, P=4 (full-lag PGAS, or the collapsed kernels' own); "
          f"{chains} chains from exact draws, {sweeps} sweeps")
    out, _ = measure(chains, sweeps, kernels=tuple(args.kernels))
    print("| E-step emissions | max abs marginal error | in SE | SE | seconds |")
    print("|---|---|---|---|---|")
    for k, r in out.items():
        print(f"| {k} | {r['max_abs_error']:.4f} | {r['z']:.1f} | {r['se']:.4f} | {r['seconds']:.1f} |")
    print(f"load average {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
