"""Exact answers for small models, used by the tests of the samplers (SPEC section 6).

Test-only helpers (imported as ``from exact import ...``; ``tests/`` is on ``sys.path`` under pytest).

* :func:`enumerate_paths`: all ``K^T`` topic paths of one document under the LSTM prior,
  giving the exact posterior ``p(z | x)`` and evidence ``p(x)``.
* :func:`collapsed_posterior`: all joint topic assignments of a tiny corpus with ``phi``
  integrated out (the exact target of the emission side of the E-step).
* :func:`markov_prior`: an :class:`~pyro_ssl.model.LSTMPrior` whose output depends only on
  ``z_{t-1}`` (an HMM), with its initial and transition matrices.
* :func:`hmm_forward`: the forward algorithm, exact ``log p(x)`` for any length.
"""

from __future__ import annotations

import itertools

import torch

from pyro_ssl.model import LSTMPrior, log_joint

__all__ = ["enumerate_paths", "exact_marginals", "collapsed_posterior", "markov_prior", "hmm_forward"]


@torch.no_grad()
def enumerate_paths(prior: LSTMPrior, log_phi: torch.Tensor, x: torch.Tensor):
    """Every topic path of one document.

    Args:
        x: ``(T,)`` word ids.
    Returns:
        ``(paths, log_post, log_evidence)``: ``(K^T, T)`` paths, ``(K^T,)`` exact
        ``log p(z | x)``, and scalar exact ``log p(x)``.
    """
    K, T = prior.K, x.shape[0]
    if K**T > 2_000_000:
        raise ValueError(f"K^T = {K**T} paths is too many to enumerate")
    device = prior.device
    paths = torch.tensor(list(itertools.product(range(K), repeat=T)), dtype=torch.long, device=device)
    n = paths.shape[0]
    lengths = torch.full((n,), T, dtype=torch.long, device=device)
    lj = log_joint(prior, log_phi, x.to(device).expand(n, T), paths, lengths)
    log_evidence = torch.logsumexp(lj, 0)
    return paths, lj - log_evidence, log_evidence


def exact_marginals(paths: torch.Tensor, log_post: torch.Tensor, K: int) -> torch.Tensor:
    """Posterior marginals ``p(z_t = k | x)``, ``(T, K)``."""
    post = log_post.exp()
    onehot = torch.nn.functional.one_hot(paths, K).to(post.dtype)  # (N, T, K)
    return torch.einsum("n,ntk->tk", post, onehot)


@torch.no_grad()
def collapsed_posterior(prior: LSTMPrior, x: torch.Tensor, beta: float):
    """The collapsed posterior ``p(z | x, theta)`` of a corpus, ``phi ~ Dirichlet(beta)`` integrated out.

    Enumerates all ``K^(D T)`` joint topic assignments of ``x`` ``(D, T)`` (equal lengths):
    the LSTM prior of each document times the Polya urn (Dirichlet-multinomial) of every
    topic's words. Returns ``(marginals (D, T, K), assignments (N, D, T), probabilities (N,))``.
    """
    D, T = x.shape
    K, V = prior.K, int(x.max()) + 1
    paths = torch.tensor(list(itertools.product(range(K), repeat=T)))  # (K^T, T) one document's paths
    log_prior = prior.sequence_log_prob(paths)  # (K^T,)
    idx = torch.tensor(list(itertools.product(range(paths.shape[0]), repeat=D)))  # (K^(TD), D)
    z = paths[idx]  # (N, D, T)
    lp = log_prior[idx].sum(-1)
    n = torch.einsum("njk,jv->nkv", torch.nn.functional.one_hot(z.reshape(z.shape[0], -1), K).double(),
                     torch.nn.functional.one_hot(x.reshape(-1), V).double())  # (N, K, V) counts
    # Dirichlet-multinomial (Polya urn) of every topic's words, up to a constant.
    lm = (torch.lgamma(n + beta).sum(-1) - torch.lgamma(n.sum(-1) + V * beta)).sum(-1)
    log_post = lp + lm
    w = torch.softmax(log_post, 0)
    marg = torch.einsum("n,ndtk->dtk", w, torch.nn.functional.one_hot(z, K).double())
    return marg, z, w


@torch.no_grad()
def markov_prior(K: int, hidden_size: int = 8, seed: int = 0, dtype=torch.float64, scale: float = 2.0):
    """A random LSTM prior that only looks at the previous topic.

    With the recurrent weights at zero and the forget gate shut, ``s_t`` is a function of
    ``z_{t-1}`` alone, so the prior is a first-order Markov chain.

    Returns:
        ``(prior, log_init (K,), log_trans (K, K))`` with ``log_trans[j, k] = log p(k | j)``.
    """
    g = torch.Generator().manual_seed(seed)
    prior = LSTMPrior(K, hidden_size=hidden_size, dropout=0.0).to(dtype)
    for p in prior.parameters():
        p.copy_(scale * torch.randn(p.shape, generator=g, dtype=dtype))
    H = hidden_size
    prior.lstm.weight_hh_l0.zero_()
    prior.lstm.bias_ih_l0[H : 2 * H] = -1e4  # forget gate: sigmoid(-1e4) == 0 exactly
    prior.lstm.bias_hh_l0[H : 2 * H] = 0.0
    prior.eval()
    state, _ = prior.initial_state((K + 1,))
    log_pi, _ = prior.step(torch.arange(K + 1), state)
    return prior, log_pi[K], log_pi[:K]


def hmm_forward(log_init: torch.Tensor, log_trans: torch.Tensor, log_phi: torch.Tensor, x: torch.Tensor):
    """Exact ``log p(x)`` of an HMM: ``(K,)``, ``(K, K)``, ``(K, V)``, ``(T,)`` -> scalar."""
    alpha = log_init + log_phi[:, x[0]]
    for t in range(1, x.shape[0]):
        alpha = torch.logsumexp(alpha.unsqueeze(-1) + log_trans, 0) + log_phi[:, x[t]]
    return torch.logsumexp(alpha, 0)
