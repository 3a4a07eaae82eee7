"""Initial topic paths for stochastic EM.

A start where every topic looks alike is a fixed point that particle Gibbs leaves slowly
(issue 8): with i.i.d. uniform paths every ``phi_k`` is close to the unigram distribution,
so the proposal barely prefers any topic. The alternatives here break that symmetry.
"""

from __future__ import annotations

import torch

from ..model import TopicalSSL
from ..smc.csmc import particle_filter
from .mstep import topic_word_counts

__all__ = ["initial_paths", "perturbed_log_phi"]


def perturbed_log_phi(tokens, lengths, K: int, V: int, beta: float, generator: torch.Generator, dtype) -> torch.Tensor:
    """Topics that are the corpus unigram times independent Gamma(1) noise, ``(K, V)``.

    Every topic is plausible for the corpus but each prefers different words, so a filter pass
    under them assigns topics that already differ.
    """
    ones = torch.zeros(tokens.shape[0], tokens.shape[1], dtype=torch.long, device=tokens.device)
    unigram = topic_word_counts(ones, tokens, lengths, 1, V)[0] + beta
    noise = -torch.log(torch.rand(K, V, generator=generator, device=tokens.device, dtype=torch.float64))
    w = unigram * noise
    return (w.log() - w.sum(-1, keepdim=True).log()).to(dtype)


@torch.no_grad()
def initial_paths(model: TopicalSSL, tokens: torch.Tensor, lengths: torch.Tensor, config, generator) -> torch.Tensor:
    """Initial ``z*`` ``(D, T)`` for every training document according to ``config.init``."""
    K, V = model.K, model.V
    D, T = tokens.shape
    mask = torch.arange(T, device=tokens.device) < lengths.unsqueeze(-1)
    if config.init == "uniform":
        z = torch.randint(K, (D, T), generator=generator, device=tokens.device)
    elif config.init == "smc":
        log_phi = perturbed_log_phi(tokens, lengths, K, V, model.beta, generator, model.prior.dtype)
        z = torch.empty(D, T, dtype=torch.long, device=tokens.device)
        for idx in torch.arange(D, device=tokens.device).split(config.batch_size):
            res = particle_filter(
                model.prior, log_phi, tokens[idx], lengths[idx], config.num_particles, generator=generator
            )
            z[idx] = res.path
    elif config.init == "hmm":
        z = _hmm_paths(model, tokens, lengths, config, generator)
    else:  # validated by EMConfig
        raise ValueError(config.init)
    return z.masked_fill(~mask, 0)


def _hmm_paths(model, tokens, lengths, config, generator) -> torch.Tensor:
    from ..baselines.hmm import HMM

    docs = [tokens[i, : int(n)].cpu() for i, n in enumerate(lengths)]
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device))
    hmm = HMM(model.K, beta=model.beta, n_iter=config.hmm_iters if hasattr(config, "hmm_iters") else 30, seed=seed)
    hmm.fit(docs, model.V)
    return hmm.sample_paths(tokens.cpu(), lengths.cpu()).to(tokens.device)


