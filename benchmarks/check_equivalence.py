"""Draw-for-draw check of the optimised sweep against a frozen straightforward version.

``reference_sweep`` below is the batched CSMC sweep as first written (before the
performance work): ``torch.tanh`` LSTM cell from the input table, advanced-index
reordering of every particle's state and ``log_pi`` after each step, ``log_softmax`` +
``logsumexp`` + a separate categorical sampler, int64 ancestry. It consumes the random
stream in the same order as ``pyro_ssl.smc.csmc_sweep``, so in float64 with the same seed
both must return the same paths, traced particles and ancestor counts, and ``log Zhat``,
ESS and weights equal to round-off. Any change that alters the algorithm (weights,
resampling, the reference, padding, ancestor sampling) breaks the equality.

Imports only torch and the sweep's modules (via ``gpu_sweep.load_sweep_modules``), so it
runs on a GPU box without Pyro too.

Usage::

    python benchmarks/check_equivalence.py [--device cuda] [--quick]   # --quick: the first 2 cases
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_sweep import load_sweep_modules  # noqa: E402


def _ref_step(prior, z_prev, h, c, table):
    gates = table[z_prev] + h @ prior.lstm.weight_hh_l0.T
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return torch.log_softmax(prior.out(h), dim=-1), h, c


def _ref_sample(logits, generator):
    probs = torch.exp(logits - logits.amax(-1, keepdim=True))
    cdf = probs.cumsum(-1)
    u = torch.rand(cdf.shape[:-1] + (1,), generator=generator, device=cdf.device, dtype=cdf.dtype)
    return torch.searchsorted(cdf, u * cdf[..., -1:], right=True).squeeze(-1).clamp_(max=logits.shape[-1] - 1)


@torch.no_grad()
def reference_sweep(prior, resampler, log_phi, x, lengths, P, reference=None, lag=0, generator=None):
    """The straightforward batched sweep; returns (path, log_Z, ess, log_w, particles, num_ancestors)."""
    B, T = x.shape
    K = log_phi.shape[0]
    device, dtype = log_phi.device, log_phi.dtype
    mask = torch.arange(T, device=device) < lengths.unsqueeze(-1)
    log_em = log_phi.T[x]
    table = torch.nn.functional.linear(
        prior.embed.weight, prior.lstm.weight_ih_l0, prior.lstm.bias_ih_l0 + prior.lstm.bias_hh_l0
    )
    rows = torch.arange(B, device=device).unsqueeze(-1)
    identity = torch.arange(P, device=device).expand(B, P)
    H = prior.hidden_size
    h = torch.zeros(B, P, H, device=device, dtype=dtype)
    c = torch.zeros_like(h)
    z_prev = torch.full((B, P), K, device=device, dtype=torch.long)
    log_w = torch.full((B, P), -math.log(P), device=device, dtype=dtype)
    ancestors = torch.empty(T, B, P, dtype=torch.long, device=device)
    topics = torch.empty(T, B, P, dtype=torch.long, device=device)
    log_incr = torch.zeros(B, T, device=device, dtype=dtype)
    ess = torch.zeros(B, T, device=device, dtype=dtype)
    for t in range(T):
        active = mask[:, t]
        log_pi, h, c = _ref_step(prior, z_prev, h, c, table)
        if t == 0:
            a = identity
        else:
            a = resampler(log_w, torch.rand(B, resampler.num_uniforms(P), generator=generator, device=device, dtype=dtype))
            if reference is not None:
                if lag > 0:
                    look = log_pi.gather(-1, reference[:, t].view(B, 1, 1).expand(B, P, 1)).squeeze(-1)
                    hh, cc, z_in = h, c, reference[:, t].view(B, 1).expand(B, P)
                    for s in range(t + 1, min(t + lag, T)):
                        if not bool(mask[:, s].any()):
                            break
                        lp, hh, cc = _ref_step(prior, z_in, hh, cc, table)
                        term = lp.gather(-1, reference[:, s].view(B, 1, 1).expand(B, P, 1)).squeeze(-1)
                        look = look + term * mask[:, s].unsqueeze(-1)
                        z_in = reference[:, s].view(B, 1).expand(B, P)
                    a0 = _ref_sample(log_w + look, generator)
                else:
                    a0 = torch.zeros(B, dtype=torch.long, device=device)
                a = torch.cat([a0.unsqueeze(-1), a[:, 1:]], dim=1)
            a = torch.where(active.unsqueeze(-1), a, identity)
            log_pi, h, c = log_pi[rows, a], h[rows, a], c[rows, a]
        log_gamma = log_pi + log_em[:, t].unsqueeze(1)
        log_alpha = torch.logsumexp(log_gamma, dim=-1)
        z_t = _ref_sample(log_gamma, generator)
        if reference is not None:
            z_t[:, 0] = reference[:, t]
        lse = torch.logsumexp(log_alpha, dim=-1)
        new_log_w = log_alpha - lse.unsqueeze(-1)
        log_w = torch.where(active.unsqueeze(-1), new_log_w, log_w)
        log_incr[:, t] = torch.where(active, lse - math.log(P), torch.zeros_like(lse))
        ess[:, t] = torch.where(active, torch.exp(-torch.logsumexp(2 * new_log_w, -1)), torch.zeros_like(lse))
        ancestors[t], topics[t] = a, z_t
        z_prev = z_t
    r = _ref_sample(log_w, generator)

    def trace(idx):
        paths = torch.empty(B, idx.shape[1], T, dtype=torch.long, device=device)
        lineage = torch.empty(T, B, idx.shape[1], dtype=torch.long, device=device)
        for t in range(T - 1, -1, -1):
            paths[:, :, t] = topics[t].gather(1, idx)
            lineage[t] = idx
            idx = ancestors[t].gather(1, idx)
        return paths, lineage

    path = trace(r.unsqueeze(-1))[0].squeeze(1).masked_fill(~mask, 0)
    particles, lineage = trace(identity)
    s = lineage.sort(dim=-1).values
    num_anc = (1 + (s[..., 1:] != s[..., :-1]).sum(-1)).T.masked_fill(~mask, 0)
    return path, log_incr.sum(-1), ess, log_w, particles.masked_fill(~mask.unsqueeze(1), 0), num_anc


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="the first two cases only")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    M, C = load_sweep_modules()
    from importlib import import_module

    R = import_module("_ssl_core.smc.resampling")
    torch.manual_seed(0)
    K, V, H, B, T, P = 20, 300, 16, 40, 30, 8
    prior = M.LSTMPrior(K, H).double().to(device).eval()
    g = torch.Generator().manual_seed(0)
    log_phi = torch.log_softmax(2.0 * torch.randn(K, V, generator=g, dtype=torch.float64), -1).to(device)
    x = torch.randint(V, (B, T), generator=g).to(device)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g).to(device)
    ref = torch.randint(K, (B, T), generator=g).to(device)
    cases = [
        ("csmc, lag 0", dict(reference=ref), "multinomial", 0),
        ("csmc, lag 4", dict(reference=ref, ancestor_lag=4), "multinomial", 4),
        ("csmc, full lag", dict(reference=ref, ancestor_lag="full"), "multinomial", T),
        ("filter, systematic", dict(resampling="systematic"), "systematic", 0),
        ("filter, multinomial", dict(resampling="multinomial"), "multinomial", 0),
    ]
    ok = True
    for label, kw, scheme, lag in cases[:2] if args.quick else cases:
        g1 = torch.Generator(device=device).manual_seed(1)
        new = C.csmc_sweep(prior, log_phi, x, lengths, P, generator=g1, diagnostics=True, **kw)
        g2 = torch.Generator(device=device).manual_seed(1)
        old = reference_sweep(prior, R.get_resampler(scheme), log_phi, x, lengths, P,
                              kw.get("reference"), lag, generator=g2)
        same = (torch.equal(new.path, old[0]) and torch.equal(new.particles, old[4])
                and torch.equal(new.num_ancestors, old[5]))
        err = max(float((new.log_Z - old[1]).abs().max()), float((new.ess - old[2]).abs().max()),
                  float((new.log_weights - old[3]).abs().max()))
        ok &= same and err < 1e-9
        print(f"{label:>20}: paths/particles/ancestors identical: {same}; max |diff| log Z, ESS, log w: {err:.1e}")
    print("EQUIVALENT" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
