"""A block of documents held as padded tensors: what one process of a fit sweeps.

:class:`TokenShard` and :meth:`OnDiskCorpus.shard <pyro_ssl.data.ondisk.OnDiskCorpus.shard>`
offer the same small interface to learning (:class:`~pyro_ssl.infer.em.StochasticEM`):
``start``/``stop`` (global document ids), ``lengths`` ``(D_shard,)``, ``padded(indices)`` and
``word_counts()``.
"""

from __future__ import annotations

import torch

__all__ = ["TokenShard", "shard_bounds"]


def shard_bounds(D: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous block ``[lo, hi)`` of ``D`` documents that rank ``rank`` of ``world_size`` holds."""
    return D * rank // world_size, D * (rank + 1) // world_size


class TokenShard:
    """Documents ``[start, start + D)`` as padded ``tokens`` ``(D, T)`` and ``lengths`` ``(D,)``.

    Args:
        tokens, lengths: the shard's documents (any device; kept where they are).
        start: global id of the first document.
        V: vocabulary size (for :meth:`word_counts`; default ``max id + 1``).
    """

    def __init__(self, tokens: torch.Tensor, lengths: torch.Tensor, start: int = 0, V: int | None = None):
        if tokens.ndim != 2 or lengths.shape != tokens.shape[:1]:
            raise ValueError(f"tokens must be (D, T) and lengths (D,), got {tuple(tokens.shape)} and {tuple(lengths.shape)}")
        self.tokens, self._lengths = tokens.long(), lengths.long()
        self.start, self.stop = int(start), int(start) + tokens.shape[0]
        self.V = V

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def lengths(self) -> torch.Tensor:
        return self._lengths.cpu()

    def padded(self, indices=None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens (B, T_b), lengths (B,))`` of the shard-local ``indices``, cut to their longest."""
        if indices is None:
            x, n = self.tokens, self._lengths
        else:
            idx = torch.as_tensor(indices, dtype=torch.long, device=self.tokens.device)
            x, n = self.tokens.index_select(0, idx), self._lengths.index_select(0, idx)
        T = int(n.max()) if n.numel() else 0
        return x[:, :T].to(device), n.to(device)

    def word_counts(self) -> torch.Tensor:
        """``(V,)`` token counts of the shard."""
        mask = torch.arange(self.tokens.shape[1], device=self.tokens.device) < self._lengths.unsqueeze(-1)
        V = self.V or (int(self.tokens[mask].max()) + 1 if mask.any() else 1)
        return torch.bincount(self.tokens[mask].cpu(), minlength=V)
