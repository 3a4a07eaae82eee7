"""How learning combines work across processes: a reducer.

:class:`~pyro_ssl.infer.em.StochasticEM` sums count changes, gradients and statistics through
a reducer. In one process that is the identity (:data:`LOCAL`); a data-parallel fit passes one
that sums over ranks (:class:`pyro_ssl.distributed.DistContext`), and nothing else changes.
"""

from __future__ import annotations

import torch

__all__ = ["Reducer", "LOCAL"]


class Reducer:
    """Sums tensors over the processes of a fit; this one is a single process (identity)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over processes, in place where possible; returned."""
        return t

    def max(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def gather_flat(self, t: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        """Concatenate every rank's 1-D ``t`` (rank ``r`` holding ``sizes[r]`` entries), in rank order."""
        return t


LOCAL = Reducer()
"""The single-process reducer."""
