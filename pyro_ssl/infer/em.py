"""Particle Gibbs within stochastic EM (SPEC section 3).

Per minibatch: one batched CSMC sweep gives new topic paths ``z*`` (E-step); the topic-word
counts of all training documents are updated and ``phi`` recomputed from them; then Pyro's
optimiser takes gradient steps on ``-log p(z* | theta)`` (M-step). The next minibatch is swept
with the parameters just updated.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from ..model import TopicalSSL, length_mask, log_joint
from ..smc.csmc import csmc_sweep
from .init import initial_paths
from .mstep import PriorMStep, dirichlet_log_phi, leave_out_log_emission, smoothed_log_phi, topic_word_counts

__all__ = ["EMConfig", "StochasticEM", "SweepStats"]


@dataclass
class EMConfig:
    """Hyperparameters of the learning loop (see ``docs/learning.md`` for the defaults' evidence).

    Attributes:
        num_particles: particles per document in the E-step sweep (including the reference).
        ancestor_lag: ancestor-sampling look-ahead ``L`` (0 = plain CSMC, ``"full"`` = exact).
        resampling: resampling scheme for the conditional sweep.
        batch_size: documents per minibatch (E-step and M-step).
        mstep_iters: gradient steps on each minibatch's fresh paths.
        lr, clip_norm: Adam learning rate and per-parameter gradient-norm clip.
        beta: Dirichlet smoothing of ``phi``.
        phi_update: ``"smoothed"`` (posterior mean of the counts) or ``"gibbs"`` (a draw).
        emission: ``"global"`` sweeps every document under ``phi`` from all documents (the
            seed's); ``"leave_out"`` under ``phi`` from the other documents
            (:func:`~pyro_ssl.infer.mstep.leave_out_log_emission`).
        init: initial paths: ``"uniform"`` (the seed's), ``"smc"`` (a particle-filter pass
            under a randomly perturbed ``phi``) or ``"hmm"`` (paths sampled from an HMM fitted
            by EM, the prior then pre-trained on them).
        init_steps: M-step iterations pre-training the prior on the initial paths.
        sweeps_per_epoch: E-step sweeps over every minibatch per epoch.
    """

    num_particles: int = 10
    ancestor_lag: int | str = 5
    resampling: str = "multinomial"
    batch_size: int = 50
    mstep_iters: int = 5
    lr: float = 1e-2
    clip_norm: float = 5.0
    beta: float = 0.1
    phi_update: str = "smoothed"
    emission: str = "leave_out"
    init: str = "smc"
    init_steps: int = 0
    sweeps_per_epoch: int = 1

    def validate(self) -> None:
        if self.num_particles < 2:
            raise ValueError(f"num_particles must be >= 2 for particle Gibbs, got {self.num_particles}")
        if self.batch_size < 1 or self.mstep_iters < 0 or self.sweeps_per_epoch < 1:
            raise ValueError("batch_size and sweeps_per_epoch must be >= 1, mstep_iters >= 0")
        if self.phi_update not in ("smoothed", "gibbs"):
            raise ValueError(f"phi_update must be 'smoothed' or 'gibbs', got {self.phi_update!r}")
        if self.emission not in ("global", "leave_out"):
            raise ValueError(f"emission must be 'global' or 'leave_out', got {self.emission!r}")
        if self.init not in ("uniform", "smc", "hmm"):
            raise ValueError(f"init must be 'uniform', 'smc' or 'hmm', got {self.init!r}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SweepStats:
    """Mixing diagnostics accumulated over one epoch's sweeps, by position ``(T,)``.

    ``update_rate[t]``: share of documents whose topic at position ``t`` changed in a sweep;
    ``ess[t]``: mean ESS of the weights after step ``t``; ``ancestors[t]``: mean number of
    distinct step-``t`` ancestors among the final particles.
    """

    changed: torch.Tensor
    ess: torch.Tensor
    ancestors: torch.Tensor
    active: torch.Tensor
    sweeps: int = 0

    @classmethod
    def zeros(cls, T: int, device) -> "SweepStats":
        z = lambda: torch.zeros(T, dtype=torch.float64, device=device)  # noqa: E731
        return cls(z(), z(), z(), z())

    def add(self, old: torch.Tensor, new: torch.Tensor, ess: torch.Tensor, anc: torch.Tensor, mask: torch.Tensor):
        T = mask.shape[1]
        m = mask.to(torch.float64)
        self.changed[:T] += ((old != new).to(torch.float64) * m).sum(0)
        self.ess[:T] += (ess.to(torch.float64) * m).sum(0)
        self.ancestors[:T] += (anc.to(torch.float64) * m).sum(0)
        self.active[:T] += m.sum(0)
        self.sweeps += 1

    def summary(self, lengths: torch.Tensor | None = None) -> dict:
        a = self.active.clamp_min(1)
        rate = self.changed / a
        keep = self.active > 0
        quint = _by_quintile(rate[keep])
        return {
            "update_rate": rate[keep].tolist(),
            "update_rate_quintiles": quint,
            "ess": (self.ess / a)[keep].tolist(),
            "ancestors": (self.ancestors / a)[keep].tolist(),
        }


def _by_quintile(v: torch.Tensor) -> list[float]:
    if v.numel() == 0:
        return []
    chunks = torch.tensor_split(v, min(5, v.numel()))
    return [float(c.mean()) for c in chunks]


class StochasticEM:
    """State of a particle-Gibbs stochastic-EM run over one training corpus.

    Args:
        model: the :class:`~pyro_ssl.model.TopicalSSL` whose prior is trained in place.
        tokens: ``(D, T)`` padded training word ids; lengths ``(D,)``.
        config: :class:`EMConfig`.
        seed: seeds the sweep generator, the minibatch order and the initial paths.
    """

    def __init__(self, model: TopicalSSL, tokens: torch.Tensor, lengths: torch.Tensor, config: EMConfig, seed: int = 0):
        config.validate()
        self.model = model
        self.config = config
        device = model.prior.device
        self.tokens = tokens.to(device)
        self.lengths = lengths.to(device)
        self.mask = length_mask(self.lengths, self.tokens.shape[1])
        self.generator = torch.Generator(device=device).manual_seed(int(seed))
        self.seed = int(seed)
        self.mstep = PriorMStep(model.prior, lr=config.lr, clip_norm=config.clip_norm)
        self.paths: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None
        self.log_phi: torch.Tensor | None = None
        self.epoch = 0

    # ------------------------------------------------------------------ parameters
    def _refresh_phi(self) -> None:
        beta = self.model.beta
        if self.config.phi_update == "gibbs":
            self.log_phi = dirichlet_log_phi(self.counts, beta).to(self.model.prior.dtype)
        else:
            self.log_phi = smoothed_log_phi(self.counts, beta).to(self.model.prior.dtype)

    def initialize(self) -> None:
        """Draw initial paths, set ``phi`` from their counts, optionally pre-train the prior."""
        self.paths = initial_paths(self.model, self.tokens, self.lengths, self.config, self.generator)
        self.counts = topic_word_counts(self.paths, self.tokens, self.lengths, self.model.K, self.model.V)
        self._refresh_phi()
        for _ in range(self.config.init_steps):
            for idx in self._minibatches():
                self.mstep.step(self.paths[idx], self.lengths[idx])

    def _minibatches(self):
        D = self.tokens.shape[0]
        order = torch.randperm(D, generator=self.generator, device=self.generator.device)
        return order.split(self.config.batch_size)

    # ------------------------------------------------------------------ one epoch
    def run_epoch(self) -> dict:
        """One pass of E-step, ``phi`` update and M-step over every minibatch; returns stats."""
        if self.paths is None:
            self.initialize()
        cfg, model = self.config, self.model
        t0 = time.perf_counter()
        stats = SweepStats.zeros(self.tokens.shape[1], self.tokens.device)
        log_joint_sum, mstep_loss, n_loss = 0.0, 0.0, 0
        e_seconds = m_seconds = 0.0
        for idx in self._minibatches():
            n = self.lengths[idx]
            T = int(n.max())
            x, mask = self.tokens[idx, :T], self.mask[idx, :T]
            for _ in range(cfg.sweeps_per_epoch):
                te = time.perf_counter()
                old = self.paths[idx, :T]
                log_emission = None
                if cfg.emission == "leave_out":
                    log_emission = leave_out_log_emission(self.counts, old, x, n, model.beta)
                res = csmc_sweep(
                    model.prior,
                    self.log_phi,
                    x,
                    n,
                    cfg.num_particles,
                    old,
                    resampling=cfg.resampling,
                    ancestor_lag=cfg.ancestor_lag,
                    generator=self.generator,
                    diagnostics=True,
                    log_emission=log_emission,
                )
                new = res.path
                stats.add(old, new, res.ess, res.num_ancestors, mask)
                self.counts -= topic_word_counts(old, x, n, model.K, model.V)
                self.counts += topic_word_counts(new, x, n, model.K, model.V)
                self.counts.clamp_(min=0.0)  # float round-off only; counts are integers
                self.paths[idx, :T] = new
                self._refresh_phi()
                e_seconds += time.perf_counter() - te
            tm = time.perf_counter()
            for _ in range(cfg.mstep_iters):
                mstep_loss += self.mstep.step(self.paths[idx, :T], n)
                n_loss += 1
            m_seconds += time.perf_counter() - tm
            with torch.no_grad():
                log_joint_sum += float(log_joint(model.prior, self.log_phi, x, self.paths[idx, :T], n).sum())
        self.epoch += 1
        tokens = int(self.lengths.sum())
        entry = {
            "epoch": self.epoch,
            "log_joint_per_token": log_joint_sum / tokens,
            "mstep_loss": mstep_loss / max(n_loss, 1),
            "seconds": time.perf_counter() - t0,
            "estep_seconds": e_seconds,
            "mstep_seconds": m_seconds,
        }
        entry.update(stats.summary())
        return entry

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        return {
            "paths": self.paths,
            "counts": self.counts,
            "log_phi": self.log_phi,
            "epoch": self.epoch,
            "generator": self.generator.get_state(),
            "mstep": self.mstep.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        device = self.tokens.device
        self.paths = state["paths"].to(device)
        self.counts = state["counts"].to(device)
        self.log_phi = state["log_phi"].to(device)
        self.epoch = int(state["epoch"])
        self.generator.set_state(state["generator"])
        self.mstep.load_state_dict(state["mstep"])
