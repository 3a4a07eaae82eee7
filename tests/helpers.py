"""Models and corpora shared by several test modules."""

import torch

from pyro_ssl.model import LSTMPrior


def tiny_model(K=3, V=6, H=8, seed=0):
    """A float64 LSTM prior with real memory (weights scaled up) and random topics ``(K, V)``."""
    torch.manual_seed(seed)
    prior = LSTMPrior(K, H, dropout=0.0).double().eval()
    with torch.no_grad():
        for p in prior.parameters():
            p.mul_(3.0)  # a prior with real memory, far from uniform
    log_phi = torch.log_softmax(1.5 * torch.randn(K, V, dtype=torch.float64), -1)
    return prior, log_phi


def ragged_docs(D=7, V=6, seed=1, max_length=11):
    """``(x (D, T), lengths (D,))``: random words, lengths uniform on ``1 .. max_length``."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_length + 1, (D,), generator=g)
    x = torch.randint(V, (D, int(lengths.max())), generator=g)
    return x, lengths


def simulated_corpus(K=3, V=12, D=60, T=30, seed=0):
    """Documents from a sticky ``K``-topic model whose topics own disjoint blocks of words."""
    g = torch.Generator().manual_seed(seed)
    docs = []
    for _ in range(D):
        z = [int(torch.randint(K, (1,), generator=g))]
        for _ in range(T - 1):
            z.append(z[-1] if torch.rand(1, generator=g) < 0.9 else int(torch.randint(K, (1,), generator=g)))
        docs.append([k * (V // K) + int(torch.randint(V // K, (1,), generator=g)) for k in z])
    return docs


PETS_AND_MARKETS = [
    "the cat sat on the mat and the dog sat too",
    "stocks fell as markets closed lower on rates news",
    "the dog ran in the park with the cat",
    "markets rallied and stocks rose on the rates news",
    "a cat and a dog in the park on the mat",
    "rates rose and markets fell and stocks closed lower",
] * 2
"""Twelve short texts on two themes: a corpus for persistence and estimator tests."""


def share_or_fail(scale, lo, hi):
    """A share for ``pyro_ssl.runtime.run_shares`` tests: ``arange(lo, hi) * scale``, refusing ``lo == 3``."""
    if lo == 3:
        raise ValueError(f"share starting at {lo} refused")
    return torch.arange(lo, hi) * scale


def share_pid(lo, hi):
    """A share reporting which process computed it: ``[pid, lo, hi]``."""
    import os

    return torch.tensor([os.getpid(), lo, hi])
