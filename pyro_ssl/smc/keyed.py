"""Randomness keyed by document, so a sweep's draws do not depend on how documents are batched.

A ``torch.Generator`` shared by a batch hands out its numbers in batch order: document ``d``'s
ancestors and topics depend on which other documents were swept with it, and in what order.
That is fine in one process, but a data-parallel fit splits every minibatch across ranks,
so the same seed would give different topic paths for every world size.

:class:`KeyedNoise` instead draws every uniform that document ``d`` consumes in one sweep from a
private generator seeded by a hash of ``(seed, stream, epoch, sweep, d)``. The uniforms are
laid out per document as ``(L_d, S)`` with ``L_d`` the document's *own* length (so they do not
depend on the batch's padded length either) and ``S = 2 P + 1`` slots per step:

* ``[0, P)``: ancestor draws (multinomial resampling by inverse CDF; systematic resampling
  uses slot 0, stratified all ``P``);
* ``P``: the ancestor-sampling redraw of the reference's ancestor;
* ``[P + 1, 2 P + 1)``: the proposal draws of the ``P`` particles;

plus one uniform for the final choice of the returned path. Padding steps (beyond a document's
length) get 0.5: their draws are discarded by the sweep.

:func:`csmc_sweep(..., noise=...) <pyro_ssl.smc.csmc.csmc_sweep>` takes every draw from it.
"""

from __future__ import annotations

import torch

__all__ = ["KeyedNoise", "inverse_cdf", "mix_key", "keyed_generator", "keyed_uniform"]

_MASK64 = (1 << 64) - 1

STREAMS = {"sweep": 1, "init": 2, "dropout": 3, "order": 4, "phi": 5}
"""Stream tags keeping the uses of one seed apart."""


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix_key(*parts: int | str) -> int:
    """A 63-bit generator seed from integer (or stream-name) parts, order-sensitive.

    Platform-independent (pure integer arithmetic), unlike Python's ``hash``.
    """
    h = 0x243F6A8885A308D3
    for p in parts:
        if isinstance(p, str):
            p = STREAMS[p] if p in STREAMS else int.from_bytes(p.encode()[:8].ljust(8, b"\0"), "little")
        h = _splitmix64(h ^ (int(p) & _MASK64))
    return h & ((1 << 63) - 1)


def keyed_generator(*parts: int | str) -> torch.Generator:
    """A CPU generator seeded by :func:`mix_key` of ``parts``."""
    return torch.Generator().manual_seed(mix_key(*parts))


def keyed_uniform(shape, *parts: int | str, dtype=torch.float64) -> torch.Tensor:
    """``torch.rand(shape)`` from the generator keyed by ``parts`` (CPU)."""
    return torch.rand(shape, generator=keyed_generator(*parts), dtype=dtype)


class KeyedNoise:
    """Per-document uniforms for one sweep over a batch of documents.

    Args:
        seed: the run's seed.
        doc_ids: ``(B,)`` global document ids (the keys).
        lengths: ``(B,)`` the documents' lengths.
        T: the batch's padded length.
        num_particles: ``P``.
        key: further key parts, e.g. ``(epoch, sweep)``.
        stream: stream name (``"sweep"`` for E-steps, ``"init"`` for initial paths).
        device, dtype: where and how the sweep uses them.
    """

    def __init__(
        self,
        seed: int,
        doc_ids,
        lengths,
        T: int,
        num_particles: int,
        key: tuple = (),
        *,
        stream: str = "sweep",
        device=None,
        dtype: torch.dtype = torch.float64,
    ):
        ids = [int(d) for d in torch.as_tensor(doc_ids).reshape(-1).tolist()]
        lens = [int(n) for n in torch.as_tensor(lengths).reshape(-1).tolist()]
        if len(ids) != len(lens):
            raise ValueError(f"{len(ids)} document ids but {len(lens)} lengths")
        P = int(num_particles)
        self.P, self.T, self.B = P, int(T), len(ids)
        S = 2 * P + 1
        steps = torch.full((self.B, self.T, S), 0.5, dtype=torch.float64)
        final = torch.empty(self.B, dtype=torch.float64)
        for b, (d, n) in enumerate(zip(ids, lens)):
            if n > self.T:
                raise ValueError(f"document {d} has length {n} > T={self.T}")
            # One draw of 1 + n * S uniforms: the first is the final choice, then step by step.
            u = keyed_uniform((1 + n * S,), int(seed), stream, *key, d)
            final[b] = u[0]
            steps[b, :n] = u[1:].view(n, S)
        # Step-major so that each step's slab is contiguous: (T, B, S).
        self._steps = steps.transpose(0, 1).contiguous().to(device=device, dtype=dtype)
        self._final = final.to(device=device, dtype=dtype)

    def resample(self, t: int, num: int) -> torch.Tensor:
        """``(B, num)`` uniforms for the ancestors drawn at step ``t``."""
        if num > self.P:
            raise ValueError(f"keyed noise holds {self.P} ancestor slots, {num} requested")
        return self._steps[t, :, :num]

    def ancestor(self, t: int) -> torch.Tensor:
        """``(B, 1)`` uniform for the reference's ancestor-sampling draw at step ``t``."""
        return self._steps[t, :, self.P : self.P + 1]

    def proposal(self, t: int) -> torch.Tensor:
        """``(B, P, 1)`` uniforms for the particles' topic proposals at step ``t``."""
        return self._steps[t, :, self.P + 1 :].unsqueeze(-1)

    def final(self) -> torch.Tensor:
        """``(B, 1)`` uniform choosing the returned path among the final particles."""
        return self._final.unsqueeze(-1)

    # ------------------------------------------------------------------ draws
    def ancestors(self, resampler, log_weights: torch.Tensor, t: int) -> torch.Tensor:
        """Ancestor indices ``(B, P)`` at step ``t`` by inverse CDF of these uniforms.

        ``multinomial``: ``P`` i.i.d. uniforms; ``systematic``: one uniform shared by the ``P``
        strata; ``stratified``: one per stratum (the schemes of :mod:`~pyro_ssl.smc.resampling`).
        """
        name = getattr(resampler, "name", resampler)
        P = self.P
        if name == "multinomial":
            u = self.resample(t, P)
        elif name in ("systematic", "stratified"):
            u0 = self.resample(t, 1 if name == "systematic" else P)
            u = (u0 + torch.arange(P, device=u0.device, dtype=u0.dtype)) / P
        else:
            raise ValueError(f"keyed noise does not know the resampling scheme {name!r}")
        return inverse_cdf(log_weights, u)

    def categorical(self, logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """One index per row of ``logits`` ``(B, K)`` from uniforms ``u`` ``(B, 1)`` (inverse CDF)."""
        probs = torch.exp(logits - logits.amax(-1, keepdim=True))
        cdf = probs.cumsum(-1)
        idx = torch.searchsorted(cdf, u.to(cdf.dtype) * cdf[..., -1:], right=True).squeeze(-1)
        return idx.clamp_(max=logits.shape[-1] - 1)


def inverse_cdf(log_weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Indices ``(B, n)`` whose cumulative normalised weight first exceeds each uniform of ``u`` ``(B, n)``.

    The uniforms need not be sorted; i.i.d. ``u`` gives multinomial resampling.
    """
    w = torch.exp(log_weights - log_weights.amax(-1, keepdim=True))
    cdf = w.cumsum(-1)
    idx = torch.searchsorted(cdf, u.to(cdf.dtype).contiguous() * cdf[..., -1:], right=True)
    return idx.clamp_(max=log_weights.shape[-1] - 1)
