"""Where the samplers' randomness comes from: sources of uniforms.

A sweep (:func:`~pyro_ssl.smc.csmc.csmc_sweep`) turns uniforms into draws by one inverse CDF
(:mod:`~pyro_ssl.smc.resampling`). It asks a *source* for them at four places per step and
never draws by itself:

* ``resample(t, n)``: ``(B, n)`` uniforms for the ancestors at step ``t``;
* ``ancestor(t)``: ``(B, 1)`` for the ancestor-sampling redraw of the reference's ancestor;
* ``proposal(t)``: ``(B, P, 1)`` for the ``P`` particles' topic proposals;
* ``final()``: ``(B, 1)`` for the choice of the returned path.

Two sources:

* :class:`GeneratorUniforms`: fresh ``torch.rand`` from one generator, in call order. Cheap;
  what evaluation and prediction use.
* :class:`KeyedUniforms`: every uniform document ``d`` consumes in one sweep comes from a
  private generator seeded by a hash of ``(seed, stream, *key, d)``, laid out by the
  document's *own* length. A document's draws then depend neither on the other documents of
  its batch nor on the batch's padded length, so one fit gives the same chain in one process
  and split over any number of processes. Learning (:class:`~pyro_ssl.infer.em.StochasticEM`)
  uses it for every random choice: minibatch order, initial paths, sweeps and dropout.

Keyed layout per document: one uniform for the final choice, then per step ``S = 2 P + 1``
slots: ``[0, P)`` ancestors, ``P`` the reference's ancestor redraw, ``[P + 1, 2 P + 1)`` the
proposals. Padding steps get 0.5 (their draws are discarded).
"""

from __future__ import annotations

import torch

__all__ = [
    "UniformSource",
    "GeneratorUniforms",
    "KeyedUniforms",
    "mix_key",
    "keyed_generator",
    "keyed_uniform",
    "keyed_document_uniforms",
]

_MASK64 = (1 << 64) - 1
_M32 = 0xFFFFFFFF

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


class UniformSource:
    """The uniforms one sweep over ``B`` documents with ``P`` particles consumes (see module doc)."""

    def resample(self, t: int, num: int) -> torch.Tensor:  # (B, num)
        raise NotImplementedError

    def ancestor(self, t: int) -> torch.Tensor:  # (B, 1)
        raise NotImplementedError

    def proposal(self, t: int) -> torch.Tensor:  # (B, P, 1)
        raise NotImplementedError

    def final(self) -> torch.Tensor:  # (B, 1)
        raise NotImplementedError


class GeneratorUniforms(UniformSource):
    """Fresh uniforms from ``generator`` (or torch's global one), in the order they are asked for."""

    def __init__(self, B: int, P: int, *, generator: torch.Generator | None = None, device=None, dtype=torch.float32):
        self.B, self.P = int(B), int(P)
        self.generator, self.device, self.dtype = generator, device, dtype

    def _rand(self, *shape) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator, device=self.device, dtype=self.dtype)

    def resample(self, t, num):
        return self._rand(self.B, num)

    def ancestor(self, t):
        return self._rand(self.B, 1)

    def proposal(self, t):
        return self._rand(self.B, self.P, 1)

    def final(self):
        return self._rand(self.B, 1)


class KeyedUniforms(UniformSource):
    """Per-document keyed uniforms for one sweep over a batch of documents.

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

    def __init__(self, seed: int, doc_ids, lengths, T: int, num_particles: int, key: tuple = (), *,
                 stream: str = "sweep", device=None, dtype: torch.dtype = torch.float64):
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
            u = keyed_uniform((1 + n * S,), int(seed), stream, *key, d)
            final[b] = u[0]
            steps[b, :n] = u[1:].view(n, S)
        # Step-major so that each step's slab is contiguous: (T, B, S).
        self._steps = steps.transpose(0, 1).contiguous().to(device=device, dtype=dtype)
        self._final = final.to(device=device, dtype=dtype)

    def resample(self, t, num):
        if num > self.P:
            raise ValueError(f"keyed uniforms hold {self.P} ancestor slots, {num} requested")
        return self._steps[t, :, :num]

    def ancestor(self, t):
        return self._steps[t, :, self.P : self.P + 1]

    def proposal(self, t):
        return self._steps[t, :, self.P + 1 :].unsqueeze(-1)

    def final(self):
        return self._final.unsqueeze(-1)


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixer on int64 tensors holding values in ``[0, 2^32)``.

    Multipliers are below ``2^31``, so no product leaves int64's range (no reliance on
    overflow behaviour); runs on any device.
    """
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x2C1B3C6D) & _M32
    x = x ^ (x >> 13)
    x = (x * 0x297A2D39) & _M32
    return x ^ (x >> 16)


def _use_generators(device: torch.device) -> bool:
    return device.type == "cpu"


def keyed_document_uniforms(doc_ids, lengths, T: int, width: int, *parts, device=None) -> torch.Tensor:
    """``(B, T, width)`` float32 uniforms keyed by ``(*parts, doc)``; padding steps get 1.0.

    A document's values depend only on its key and its own length. On the CPU each document's
    uniforms come from its own generator (rows of ``width``, one per step); elsewhere, where
    that loop would dominate, entry ``(t, j)`` is a counter-based hash of ``(key(d),
    t * width + j)`` (24-bit uniforms) computed on the device in one pass, so the values
    differ between CPU and GPU runs.
    """
    doc_ids = torch.as_tensor(doc_ids).reshape(-1)
    lengths = torch.as_tensor(lengths).reshape(-1)
    device = torch.device(device) if device is not None else torch.device("cpu")
    B = doc_ids.numel()
    if _use_generators(device):
        # float32 and drawn straight into place: these feed dropout masks, where the per-document
        # generator loop is the cost that keyed randomness adds to an M-step.
        u = torch.ones(B, T, width, dtype=torch.float32)
        for b, (d, n) in enumerate(zip(doc_ids.tolist(), lengths.tolist())):
            n = min(int(n), T)
            torch.rand((n, width), generator=keyed_generator(*parts, int(d)), dtype=torch.float32, out=u[b, :n])
        return u
    keys = torch.tensor([mix_key(*parts, int(d)) for d in doc_ids.tolist()], dtype=torch.long)
    k_lo = (keys & _M32).to(device).view(-1, 1, 1)
    k_hi = ((keys >> 32) & _M32).to(device).view(-1, 1, 1)
    counter = torch.arange(T * width, device=device, dtype=torch.long).view(1, T, width)
    h = _hash32(_hash32((counter ^ k_hi) & _M32) ^ k_lo)
    u = (h >> 8).to(torch.float32) / float(1 << 24)
    pad = torch.arange(T, device=device).view(1, T, 1) >= lengths.to(device).view(-1, 1, 1)
    return u.masked_fill(pad, 1.0)
