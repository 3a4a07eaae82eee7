"""The sweep on any torch device, importing only torch and the sweep's own modules.

For machines that have torch but not Pyro (e.g. a lent GPU box): ``pyro_ssl/model.py`` and
``pyro_ssl/smc/*.py`` are loaded straight from their files under a private package name, and
when ``pyro`` is not importable a few stand-ins are registered first (``PyroModule`` =
``torch.nn.Module``; the distribution classes only need to exist for the class definitions).
Nothing here touches Pyro's inference code: the M-step is written in plain torch (Adam,
per-parameter gradient-norm clipping, dropout), the same objective as ``PriorMStep``.

Figures (seed size unless stated; ``--device`` defaults to ``cuda`` when available):

* CSMC sweep, lag 0 / 5, diagnostics off / on; particle-filter pass;
* "epoch equivalent": for each minibatch, a diagnostics sweep, the count / ``phi`` update,
  one M-step and the log joint, i.e. the work of ``StochasticEM.run_epoch`` without Pyro;
* the same epoch equivalent on 25,000 documents of length 170 (minibatches 256 and 5,000);
* a particle-filter pass with 1,000 particles over 200 x 170 tokens (``bench_eval``'s size).

Usage::

    python benchmarks/gpu_sweep.py                     # cuda if available, else cpu
    python benchmarks/gpu_sweep.py --device cpu --quick
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import types

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _install_pyro_stubs() -> None:
    """Minimal stand-ins so ``pyro_ssl/model.py`` can be defined without Pyro installed."""
    import torch.distributions as td
    from torch.distributions import constraints

    pyro = types.ModuleType("pyro")
    pyro.__path__ = []  # a package, so submodules can be registered
    for name in ("sample", "plate", "module", "param", "factor"):
        setattr(pyro, name, lambda *a, **k: (_ for _ in ()).throw(RuntimeError("Pyro stub: not available")))
    d = types.ModuleType("pyro.distributions")
    d.__path__ = []
    d.constraints = constraints
    d.Categorical, d.Dirichlet = td.Categorical, td.Dirichlet
    tdist = types.ModuleType("pyro.distributions.torch_distribution")
    tdist.TorchDistribution = td.Distribution
    nn = types.ModuleType("pyro.nn")
    nn.PyroModule = torch.nn.Module
    pyro.distributions, pyro.nn = d, nn
    sys.modules.update(
        {
            "pyro": pyro,
            "pyro.distributions": d,
            "pyro.distributions.constraints": constraints,
            "pyro.distributions.torch_distribution": tdist,
            "pyro.nn": nn,
        }
    )


def load_sweep_modules():
    """``(model, csmc)`` modules loaded from the repository files without ``pyro_ssl/__init__``."""
    try:
        import pyro  # noqa: F401
    except ImportError:
        _install_pyro_stubs()
    root = os.path.join(REPO, "pyro_ssl")
    for name, path in (("_ssl_core", root), ("_ssl_core.smc", os.path.join(root, "smc"))):
        pkg = types.ModuleType(name)
        pkg.__path__ = [path]
        sys.modules[name] = pkg
    mods = {}
    for name, rel in (
        ("_ssl_core.config", "config.py"),
        ("_ssl_core.model", "model.py"),
        ("_ssl_core.smc.uniforms", "smc/uniforms.py"),
        ("_ssl_core.smc.resampling", "smc/resampling.py"),
        ("_ssl_core.smc.csmc", "smc/csmc.py"),
    ):
        spec = importlib.util.spec_from_file_location(name, os.path.join(root, rel))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        mods[name] = mod
    return mods["_ssl_core.model"], mods["_ssl_core.smc.csmc"]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats=3, warmup=1) -> float:
    """Median wall seconds (device synchronised)."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]


class EpochEquivalent:
    """The work of one ``StochasticEM.run_epoch`` in plain torch (global emission, uniform init)."""

    def __init__(self, M, C, K, V, H, tokens, lengths, P, batch_size, device, seed=0, beta=0.1, lr=1e-2, clip=5.0):
        self.M, self.C = M, C
        self.K, self.V, self.P, self.beta, self.clip = K, V, P, beta, clip
        self.prior = M.LSTMPrior(K, H).to(device).eval()
        self.tokens, self.lengths = tokens.to(device), lengths.to(device)
        self.mask = M.length_mask(self.lengths, tokens.shape[1])
        self.batch_size, self.device = batch_size, device
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.paths = torch.randint(K, tokens.shape, generator=self.gen, device=device).masked_fill(~self.mask, 0)
        self.counts = self._counts(self.paths, self.tokens, self.mask)
        self.opt = torch.optim.Adam(self.prior.parameters(), lr=lr)

    def _counts(self, z, x, mask):
        flat = (z * self.V + x).reshape(-1)
        c = torch.zeros(self.K * self.V, dtype=torch.float64, device=self.device)
        c.index_add_(0, flat, mask.reshape(-1).to(torch.float64))
        return c.view(self.K, self.V)

    def log_phi(self):
        s = self.counts + self.beta
        return (s.log() - s.sum(-1, keepdim=True).log()).float()

    def mstep(self, z, n):
        prior = self.prior
        prior.train()
        self.opt.zero_grad()
        mask = self.M.length_mask(n, z.shape[1])
        loss = -prior.sequence_log_prob(z, mask).sum() / n.sum()
        loss.backward()
        for p in prior.parameters():  # Pyro's clip_args={"clip_norm": c} clips each parameter
            torch.nn.utils.clip_grad_norm_([p], self.clip)
        self.opt.step()
        prior.eval()
        return loss.detach()

    def run(self):
        D = self.tokens.shape[0]
        order = torch.randperm(D, generator=self.gen, device=self.device)
        log_phi = self.log_phi()
        lj = torch.zeros((), device=self.device)
        for idx in order.split(self.batch_size):
            n = self.lengths[idx]
            T = int(n.max())
            x, mask, old = self.tokens[idx, :T], self.mask[idx, :T], self.paths[idx, :T]
            res = self.C.csmc_sweep(self.prior, log_phi, x, n, self.P, old, generator=self.gen, diagnostics=True)
            self.counts -= self._counts(old, x, mask)
            self.counts += self._counts(res.path, x, mask)
            self.paths[idx, :T] = res.path
            log_phi = self.log_phi()
            self.mstep(res.path, n)
            with torch.no_grad():
                lj += self.M.log_joint(self.prior, log_phi, x, res.path, n).sum()
        return float(lj)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="seed size only")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    M, C = load_sweep_modules()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}); torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"load average {os.getloadavg()}")
    D, T, P, K, H, V = 200, 100, 10, 50, 64, 5000
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(V, (D, T), generator=g)
    lengths = torch.full((D,), T)
    torch.manual_seed(0)
    prior = M.LSTMPrior(K, H).to(device).eval()
    log_phi = torch.log_softmax(torch.randn(K, V, generator=g), -1).to(device)
    x, n = tokens.to(device), lengths.to(device)
    ref = torch.randint(K, (D, T), generator=g).to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    rows = []
    for lag in (0, 5):
        for diag in (False, True):
            s = timed(lambda: C.csmc_sweep(prior, log_phi, x, n, P, ref, ancestor_lag=lag, diagnostics=diag,
                                           generator=gen), device)
            rows.append((f"sweep lag={lag} diagnostics={diag}", s))
    pf = timed(lambda: C.particle_filter(prior, log_phi, x, n, P, generator=gen), device)
    rows.append(("particle filter pass", pf))
    ee = EpochEquivalent(M, C, K, V, H, tokens, lengths, P, 200, device)
    z = ee.paths
    rows.append(("M-step (plain torch)", timed(lambda: ee.mstep(z, ee.lengths), device)))
    rows.append(("epoch equivalent, batch 200", timed(ee.run, device)))
    if not args.quick:
        tokens2 = torch.randint(V, (25000, 170), generator=g)
        lengths2 = torch.full((25000,), 170)
        for bs in (256, 5000):
            big = EpochEquivalent(M, C, K, V, H, tokens2, lengths2, P, bs, device)
            rows.append((f"epoch equivalent, 25,000 x 170, batch {bs}", timed(big.run, device, repeats=1, warmup=0)))
            del big
        tok3 = torch.randint(V, (200, 170), generator=g).to(device)
        len3 = torch.full((200,), 170, device=device)
        rows.append(("filter pass P=1000, 200 x 170",
                     timed(lambda: C.particle_filter(prior, log_phi, tok3, len3, 1000, generator=gen), device,
                           repeats=1)))
        if device.type == "cuda":
            rows.append(("peak GPU memory GB", torch.cuda.max_memory_allocated(device) / 2**30))
    width = max(len(r[0]) for r in rows)
    print(f"| {'figure'.ljust(width)} | seconds |")
    print(f"|{'-' * (width + 2)}|---------|")
    for label, s in rows:
        print(f"| {label.ljust(width)} | {s:.4f} |")
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
