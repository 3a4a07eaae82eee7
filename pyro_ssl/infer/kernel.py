"""Particle Gibbs as a Pyro MCMC kernel (for fixed LSTM weights).

:class:`ParticleGibbs` alternates a Gibbs draw ``phi | z, x ~ Dirichlet(n_k + beta)`` with a
conditional-SMC draw ``z | phi, x`` (the topic paths are drawn with the ``phi`` just drawn).
It runs under :class:`pyro.infer.MCMC`, so ``MCMC.summary()``, ``get_samples()`` and
multi-chain runs work as for any Pyro kernel::

    kernel = ParticleGibbs(model, num_particles=10)
    mcmc = MCMC(kernel, num_samples=200, warmup_steps=50)
    mcmc.run(x, lengths)
    z = mcmc.get_samples()["z"].long()   # Pyro's runner stores every site as float

:func:`to_inference_data` builds ArviZ ``InferenceData`` with integer ``z`` kept.
"""

from __future__ import annotations

import numpy as np
import torch
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel

from ..model import TopicalSSL, length_mask, log_joint
from ..smc.csmc import csmc_sweep
from .mstep import dirichlet_log_phi, topic_word_counts

__all__ = ["ParticleGibbs", "to_inference_data"]


class ParticleGibbs(MCMCKernel):
    """Particle-Gibbs kernel over ``phi`` (``(K, V)``) and ``z`` (``(B, T)``) of a batch of documents.

    Args:
        model: the :class:`~pyro_ssl.model.TopicalSSL`; its LSTM prior is held fixed.
        num_particles: CSMC particles per document (including the reference).
        ancestor_lag: ancestor-sampling look-ahead (0 plain CSMC, ``"full"`` exact).
        resampling: a conditional resampling scheme (``"multinomial"``).
        sample_phi: draw ``phi`` from its Dirichlet conditional each iteration; if false,
            ``phi`` stays at ``phi`` passed to :meth:`setup` (or the smoothed initial counts).
        seed: seeds the kernel's generator for the sweeps (the Dirichlet draws of ``phi`` use
            torch's global RNG, so seed that too, e.g. ``pyro.set_rng_seed``).
    """

    def __init__(
        self,
        model: TopicalSSL,
        num_particles: int = 10,
        ancestor_lag: int | str = 0,
        resampling: str = "multinomial",
        sample_phi: bool = True,
        seed: int = 0,
    ):
        self.generative = model
        self.model = model.model  # the Pyro model function, what Pyro's tooling looks for on a kernel
        self.num_particles = int(num_particles)
        self.ancestor_lag = ancestor_lag
        self.resampling = resampling
        self.sample_phi = bool(sample_phi)
        self.seed = int(seed)
        # No continuous sites to reparametrise; Pyro's runner reads this instead of tracing.
        self.transforms = {}
        self._initial_params = None
        self._last = {}

    def setup(self, warmup_steps, x: torch.Tensor, lengths: torch.Tensor, z_init: torch.Tensor | None = None,
              phi: torch.Tensor | None = None):
        """Bind the documents. ``x`` ``(B, T)``; lengths ``(B,)``; optional initial ``z`` and ``phi``."""
        prior = self.generative.prior
        device = prior.device
        self.x = x.to(device).long()
        self.lengths = lengths.to(device).long()
        self.mask = length_mask(self.lengths, self.x.shape[1])
        self.generator = torch.Generator(device=device).manual_seed(self.seed)
        K, V = self.generative.K, self.generative.V
        if z_init is None:
            z_init = torch.randint(K, self.x.shape, generator=self.generator, device=device)
        z_init = z_init.to(device).long().masked_fill(~self.mask, 0)
        if phi is None:
            counts = topic_word_counts(z_init, self.x, self.lengths, K, V)
            phi = ((counts + self.generative.beta) / (counts + self.generative.beta).sum(-1, keepdim=True))
        self._fixed_log_phi = phi.to(device=device, dtype=prior.dtype).clamp_min(1e-300).log()
        # Keys sorted: Pyro's runner packs sites in dict order and unpacks them sorted.
        self._initial_params = {"phi": phi.to(device=device, dtype=prior.dtype), "z": z_init}
        prior.eval()

    @property
    def initial_params(self):
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params):
        self._initial_params = params

    def sample(self, params: dict) -> dict:
        z = params["z"].long()
        if self.sample_phi:
            counts = topic_word_counts(z, self.x, self.lengths, self.generative.K, self.generative.V)
            log_phi = dirichlet_log_phi(counts, self.generative.beta).to(self.generative.prior.dtype)
        else:
            log_phi = self._fixed_log_phi
        res = csmc_sweep(
            self.generative.prior,
            log_phi,
            self.x,
            self.lengths,
            self.num_particles,
            z,
            resampling=self.resampling,
            ancestor_lag=self.ancestor_lag,
            generator=self.generator,
        )
        changed = ((res.path != z) & self.mask).sum() / self.mask.sum()
        with torch.no_grad():
            lj = log_joint(self.generative.prior, log_phi, self.x, res.path, self.lengths).sum()
        self._last = {"update_rate": float(changed), "log_joint": float(lj)}
        return {"phi": log_phi.exp(), "z": res.path}

    def logging(self):
        return {k: f"{v:.3g}" for k, v in self._last.items()}

    def diagnostics(self):
        # Pyro's summary and ArviZ's converter expect a divergence record; Gibbs has none.
        return {"divergences": [], "acceptance rate": 1.0}


def to_inference_data(samples: dict[str, torch.Tensor], sample_stats: dict[str, torch.Tensor] | None = None,
                      integer_sites=("z",)):
    """ArviZ ``InferenceData`` from ``(chains, draws, ...)`` samples, integer sites kept integer.

    Args:
        samples: e.g. ``mcmc.get_samples(group_by_chain=True)``.
        sample_stats: optional ``(chains, draws)`` statistics (log joint, update rate, ...).
    """
    import arviz as az

    posterior = {}
    for name, value in samples.items():
        arr = value.detach().cpu().numpy()
        posterior[name] = np.rint(arr).astype(np.int64) if name in integer_sites else arr
    stats = {k: v.detach().cpu().numpy() if torch.is_tensor(v) else np.asarray(v) for k, v in (sample_stats or {}).items()}
    return az.from_dict(posterior=posterior, sample_stats=stats or None)
