"""Common interface of the baseline language models.

Every baseline scores the same quantity as the State Space LSTM (SPEC section 4):
per-token predictive log probabilities ``log p(x_t | x_{<t})`` over padded batches of
documents, from which document-completion log likelihoods and perplexities follow.

Conventions used throughout ``pyro_ssl.baselines``:

* a batch of documents is ``tokens`` of shape ``(B, T)`` (``torch.long``, padded with any
  valid id, usually 0) together with ``lengths`` of shape ``(B,)``;
* ``token_log_probs`` returns a ``(B, T)`` floating tensor with ``log p(x_t | x_{<t})``
  for ``t < lengths[b]`` and exactly ``0.0`` at padding, so sums over the time axis are
  sums over real tokens only;
* outputs live on the device of ``tokens``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Sequence, Union

import torch

from ..model import length_mask
from ..runtime import intra_op_threads

DocList = Union[Sequence[Sequence[int]], Sequence[torch.Tensor]]

__all__ = ["LanguageModel", "perplexity", "pad_docs", "length_mask", "intra_op_threads", "DocList"]


def perplexity(total_log_lik: Union[float, torch.Tensor], num_tokens: int) -> float:
    """``exp(-total_log_lik / num_tokens)``.

    Args:
        total_log_lik: summed natural-log likelihood of the scored tokens (float or
            0-d / 1-element tensor).
        num_tokens: number of tokens that were scored (must be positive).
    """
    if num_tokens <= 0:
        raise ValueError("num_tokens must be positive")
    if isinstance(total_log_lik, torch.Tensor):
        total_log_lik = float(total_log_lik.detach().sum().item())
    return math.exp(-float(total_log_lik) / num_tokens)


def pad_docs(
    docs: DocList, pad_value: int = 0, device: Union[str, torch.device, None] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a list of token-id documents into ``tokens (B, T_max)`` and ``lengths (B,)``.

    Documents may be Python lists or 1-D tensors. ``device`` defaults to the device of
    the first tensor document (CPU for lists).
    """
    seqs = [d if isinstance(d, torch.Tensor) else torch.as_tensor(list(d), dtype=torch.long) for d in docs]
    if device is None:
        device = seqs[0].device if len(seqs) > 0 else torch.device("cpu")
    lengths = torch.tensor([int(s.numel()) for s in seqs], dtype=torch.long, device=device)
    T = int(lengths.max().item()) if len(seqs) > 0 else 0
    tokens = torch.full((len(seqs), T), pad_value, dtype=torch.long, device=device)
    for i, s in enumerate(seqs):
        if s.numel() > 0:
            tokens[i, : s.numel()] = s.reshape(-1).to(device=device, dtype=torch.long)
    return tokens, lengths


class LanguageModel(ABC):
    """Abstract document language model scored token by token.

    Subclasses implement :meth:`fit` and :meth:`token_log_probs`; completion and
    whole-document log likelihoods follow from them (subclasses may override when their
    completion score is not a sum of ``token_log_probs``, e.g. LDA's prefix fold-in).
    """

    name: str = "base"

    @abstractmethod
    def fit(self, docs: DocList, vocab_size: int, **kw) -> "LanguageModel":
        """Train on token-id documents (``docs``: list of id lists or 1-D long tensors,
        ids in ``[0, vocab_size)``). Returns ``self``."""

    @abstractmethod
    def token_log_probs(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` tensor of ``log p(x_t | x_{<t})``; ``0.0`` where ``t >= lengths[b]``.

        Args:
            tokens: ``(B, T)`` long tensor of word ids, padded.
            lengths: ``(B,)`` long tensor of document lengths (``<= T``).
        """

    def completion_log_likelihood(
        self, tokens: torch.Tensor, lengths: torch.Tensor, T1: int
    ) -> torch.Tensor:
        """``(B,)``: ``sum_{T1 <= t < lengths[b]} log p(x_t | x_{<t})``.

        The first ``T1`` tokens are the observed prefix; only the continuation is scored.
        """
        lp = self.token_log_probs(tokens, lengths)
        T = tokens.shape[1]
        steps = torch.arange(T, device=lp.device)
        held_out = (steps.unsqueeze(0) >= T1) & length_mask(lengths.to(lp.device), T)
        # where(), not multiplication: a -inf score in the prefix must not become nan.
        return torch.where(held_out, lp, torch.zeros((), dtype=lp.dtype, device=lp.device)).sum(dim=1)

    def log_likelihood(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B,)`` whole-document ``log p(x_{0:lengths[b]})``."""
        return self.completion_log_likelihood(tokens, lengths, 0)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _check_batch(tokens: torch.Tensor, lengths: torch.Tensor, vocab_size: int | None = None) -> None:
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (B, T), got shape {tuple(tokens.shape)}")
        if lengths.dim() != 1 or lengths.shape[0] != tokens.shape[0]:
            raise ValueError("lengths must be (B,) matching tokens")
        if lengths.numel() > 0 and int(lengths.max()) > tokens.shape[1]:
            raise ValueError("lengths exceed the padded length T")
        if vocab_size is not None and tokens.numel() > 0:
            mask = length_mask(lengths.to(tokens.device), tokens.shape[1])
            real = tokens[mask]
            if real.numel() > 0 and (int(real.min()) < 0 or int(real.max()) >= vocab_size):
                raise ValueError("token ids out of range [0, vocab_size)")

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"{type(self).__name__}(name={self.name!r})"
