"""Evaluation by the particle filter: completion perplexity and held-out likelihood (SPEC 4).

All functions take a prior and ``log_phi`` (the pieces of a fitted model), padded word ids
``(B, T)`` and lengths ``(B,)``, and process documents in chunks so memory stays bounded by
``chunk_size * P * K``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .baselines.base import perplexity
from .model import LSTMPrior, length_mask
from .smc.csmc import particle_filter
from .smc.resampling import get_resampler
from .smc.uniforms import KeyedStepUniforms

__all__ = [
    "perplexity",
    "Estimate",
    "filter_log_increments",
    "default_chunk_size",
    "completion_log_likelihood",
    "heldout_log_likelihood",
    "completion_perplexity",
    "replicate",
]


@dataclass
class Estimate:
    """A replicated Monte Carlo estimate of *one fitted model*: ``mean`` and ``std`` over
    particle-filter seeds, and every value.

    ``std`` is the evaluator's Monte Carlo error only; it says nothing about how much the score
    varies between training runs (training seeds), which ``docs/results.md`` reports apart.
    """

    mean: float
    std: float
    values: list[float]
    num_particles: int

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.mean:.2f} ± {self.std:.2f} (sd over {len(self.values)} particle-filter seeds, "
                f"P={self.num_particles}: the evaluator's Monte Carlo error, not training-seed spread)")


ROWS_PER_CHUNK = 8192
"""Particles (documents x ``P``) per filter pass by default: a pass's ``(rows, 4 H)`` gate buffers
then stay in the cache. ``OMP_NUM_THREADS=1 python benchmarks/bench_eval.py --chunks ...`` (60
documents of 170 tokens, ``P`` = 1,000): 10.3 s in chunks of 5 documents against 14.8 s in one pass
of 60."""


def default_chunk_size(num_particles: int, K: int) -> int:
    """Documents per filter pass: :data:`ROWS_PER_CHUNK` particles, and at most about 2e7 floats of
    ``(chunk, P, K)`` work."""
    P = max(int(num_particles), 1)
    return max(1, min(ROWS_PER_CHUNK // P, int(2e7 // (P * max(int(K), 1)))))


@torch.no_grad()
def filter_log_increments(
    prior: LSTMPrior,
    log_phi: torch.Tensor,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    num_particles: int = 1000,
    *,
    resampling: str = "systematic",
    seed: int = 0,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Particle-filter estimates of ``log p(x_t | x_<t)``, ``(B, T)`` (0 at padding).

    Every document's filter draws from its own stream, keyed by ``(seed, row)``
    (:class:`~pyro_ssl.smc.uniforms.KeyedStepUniforms`), so a row's estimates depend neither on
    ``chunk_size`` nor on the other rows. ``chunk_size``: documents per pass (default
    :func:`default_chunk_size`).
    """
    device = prior.device
    B = tokens.shape[0]
    if chunk_size is None:
        chunk_size = default_chunk_size(num_particles, prior.K)
    resampler = get_resampler(resampling)
    out = []
    for start in range(0, B, chunk_size):
        x = tokens[start : start + chunk_size].to(device)
        n = lengths[start : start + chunk_size].to(device)
        T = int(n.max())
        u = KeyedStepUniforms(seed, torch.arange(start, start + x.shape[0]), num_particles,
                              resample_slots=resampler.num_uniforms(num_particles), device=device, dtype=prior.dtype)
        res = particle_filter(prior, log_phi, x[:, :T], n, num_particles, resampling=resampler, uniforms=u,
                              trace=False)  # increments only: no (T, B, P) ancestry
        inc = torch.zeros(x.shape[0], tokens.shape[1], dtype=res.log_incr.dtype, device=device)
        inc[:, :T] = res.log_incr
        out.append(inc)
    return torch.cat(out, 0)


def replicate(fn, seeds, num_particles) -> Estimate:
    """``fn(seed)`` for every particle-filter seed, as an :class:`Estimate` (mean, sd, values)."""
    values = [float(fn(s)) for s in seeds]
    std = float(torch.tensor(values, dtype=torch.float64).std()) if len(values) > 1 else 0.0
    return Estimate(sum(values) / len(values), std, values, num_particles)


def completion_log_likelihood(
    prior: LSTMPrior,
    log_phi: torch.Tensor,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    T1: int,
    num_particles: int = 1000,
    *,
    seed: int = 0,
    resampling: str = "systematic",
) -> tuple[float, int]:
    """Summed ``log p(x_{T1:len} | x_{<T1})`` over documents and the number of held-out tokens.

    The filter runs over whole documents; only held-out steps ``t >= T1`` are summed.
    """
    inc = filter_log_increments(prior, log_phi, tokens, lengths, num_particles, resampling=resampling, seed=seed)
    T = tokens.shape[1]
    held = length_mask(lengths.to(inc.device), T) & (torch.arange(T, device=inc.device) >= T1)
    return float(inc[held].sum()), int(held.sum())


def completion_perplexity(
    prior: LSTMPrior,
    log_phi: torch.Tensor,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    T1: int,
    num_particles: int = 1000,
    seeds=(0, 1, 2),
    resampling: str = "systematic",
) -> Estimate:
    """Document-completion perplexity, replicated over filter seeds (mean and spread)."""

    def one(seed):
        ll, n = completion_log_likelihood(
            prior, log_phi, tokens, lengths, T1, num_particles, seed=seed, resampling=resampling
        )
        return perplexity(ll, n)

    return replicate(one, seeds, num_particles)


def heldout_log_likelihood(
    prior: LSTMPrior,
    log_phi: torch.Tensor,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    num_particles: int = 1000,
    seeds=(0, 1, 2),
    resampling: str = "systematic",
) -> Estimate:
    """Per-token ``log Zhat`` over unseen documents, replicated over filter seeds."""
    n = int(lengths.sum())

    def one(seed):
        inc = filter_log_increments(prior, log_phi, tokens, lengths, num_particles, resampling=resampling, seed=seed)
        return float(inc.sum()) / n

    return replicate(one, seeds, num_particles)
