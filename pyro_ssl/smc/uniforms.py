"""Where the samplers' randomness comes from: sources of uniforms.

A sweep (:func:`~pyro_ssl.smc.csmc.csmc_sweep`) turns uniforms into draws by one inverse CDF
(:mod:`~pyro_ssl.smc.resampling`). It asks a *source* for them at four places per step and
never draws by itself:

* ``resample(t, n)``: ``(B, n)`` uniforms for the ancestors at step ``t``;
* ``ancestor(t)``: ``(B, 1)`` for the ancestor-sampling redraw of the reference's ancestor;
* ``proposal(t)``: ``(B, P, 1)`` for the ``P`` particles' topic proposals;
* ``final()``: ``(B, 1)`` for the choice of the returned path;
* ``final_accept()``: ``(B, 1)`` for the decision of a Metropolised final choice
  (:func:`~pyro_ssl.smc.csmc.csmc_sweep`'s ``final_draw``);
* ``accept()``: ``(B, 1)`` for a Metropolis-Hastings decision on the sweep's result (the blocked
  sweep's ``future_lag`` correction).

Three sources:

* :class:`GeneratorUniforms`: fresh ``torch.rand`` from one generator, in call order. Cheap;
  what prediction and sampling use.
* :class:`KeyedUniforms`: every uniform document ``d`` consumes in one sweep comes from its
  own counter-based stream keyed by ``(seed, stream, *key, d)`` (:func:`keyed_stream`), laid
  out by the document's *own* length. A document's draws then depend neither on the other
  documents of its batch nor on the batch's padded length, so one fit gives the same chain in
  one process and split over any number of processes. Learning
  (:class:`~pyro_ssl.infer.em.StochasticEM`) uses it for every random choice: minibatch
  order, initial paths, sweeps and dropout.
* :class:`KeyedStepUniforms`: the same per-document streams for the evaluator's particle
  filters (:mod:`pyro_ssl.evaluation`, stream ``"filter"``), made a window of steps at a time,
  so scoring 1,000 particles over long documents needs no ``(T, P)`` table per document.

One generator serves every keyed uniform: SplitMix64 (Steele, Lea and Flood 2014) run as a
counter-based generator, output ``c`` of document ``d``'s stream being
``mix64(key(d) + c * golden_gamma)``. It is computed for all documents at once in NumPy's
wrapping ``uint64`` arithmetic (no per-document Python loop, no reliance on signed overflow),
so the values are the same on every platform and device. (Two keyed draws use torch's
own generators seeded by :func:`mix_key`: the minibatch order, :func:`keyed_generator`, and
the Dirichlet ``phi`` step's gammas.)

Keyed layout per document: one uniform for the final choice, then per step ``S = 2 P + 1``
slots: ``[0, P)`` ancestors, ``P`` the reference's ancestor redraw, ``[P + 1, 2 P + 1)`` the
proposals. Padding steps get 0.5 (their draws are discarded). ``accept()`` reads the step-0
ancestor slot, which no sweep consumes otherwise (step 0 has no ancestors), so adding the
decision changed no other draw. ``final_accept()`` reads one slot after the last step's (each
stream's first outputs do not depend on how many are taken, so it too changed no other draw).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "UniformSource",
    "GeneratorUniforms",
    "KeyedUniforms",
    "KeyedStepUniforms",
    "mix_key",
    "keyed_generator",
    "keyed_uniform",
    "keyed_document_uniforms",
    "keyed_document_keep",
    "keyed_stream",
    "keyed_rows",
    "document_keys",
]

_MASK64 = (1 << 64) - 1

STREAMS = {"sweep": 1, "init": 2, "dropout": 3, "order": 4, "phi": 5, "filter": 6}
"""Stream tags keeping the uses of one seed apart."""


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _absorb(parts) -> int:
    """The 64-bit hash state after absorbing ``parts`` in order (the body of :func:`mix_key`)."""
    h = 0x243F6A8885A308D3
    for p in parts:
        if isinstance(p, str):
            p = STREAMS[p] if p in STREAMS else int.from_bytes(p.encode()[:8].ljust(8, b"\0"), "little")
        h = _splitmix64(h ^ (int(p) & _MASK64))
    return h


def mix_key(*parts: int | str) -> int:
    """A 63-bit generator seed from integer (or stream-name) parts, order-sensitive.

    Platform-independent (pure integer arithmetic), unlike Python's ``hash``.
    """
    return _absorb(parts) & ((1 << 63) - 1)


def keyed_generator(*parts: int | str) -> torch.Generator:
    """A CPU generator seeded by :func:`mix_key` of ``parts``."""
    return torch.Generator().manual_seed(mix_key(*parts))


def keyed_uniform(shape, *parts: int | str, dtype=torch.float64) -> torch.Tensor:
    """Uniforms of ``shape`` from the keyed stream of ``parts`` (:func:`keyed_stream`), on the CPU."""
    shape = torch.Size(shape if isinstance(shape, (tuple, list, torch.Size)) else (shape,))
    keys = np.array([mix_key(*parts)], dtype=np.uint64)
    return torch.from_numpy(_unit53(keyed_stream(keys, shape.numel()))).view(shape).to(dtype)


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

    def final_accept(self) -> torch.Tensor:  # (B, 1)
        raise NotImplementedError

    def accept(self) -> torch.Tensor:  # (B, 1)
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

    def final_accept(self):
        return self._rand(self.B, 1)

    def accept(self):
        return self._rand(self.B, 1)


_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)


_CHUNK = 1 << 15  # elements per pass: keeps the working set in cache


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function, in place on a contiguous ``uint64`` array (mod 2^64)."""
    flat = x.reshape(-1)
    scratch = np.empty(min(flat.size, _CHUNK), dtype=np.uint64)
    for i in range(0, flat.size, _CHUNK):
        v = flat[i : i + _CHUNK]
        s = scratch[: v.size]
        np.right_shift(v, np.uint64(30), out=s)
        v ^= s
        v *= _C1
        np.right_shift(v, np.uint64(27), out=s)
        v ^= s
        v *= _C2
        np.right_shift(v, np.uint64(31), out=s)
        v ^= s
    return x


def document_keys(doc_ids, *parts: int | str) -> np.ndarray:
    """``(B,)`` uint64 stream keys, entry ``b`` equal to ``mix_key(*parts, doc_ids[b])``.

    The prefix is hashed once in Python and the documents' step vectorised.
    """
    h = _absorb(parts)
    d = np.asarray(torch.as_tensor(doc_ids).reshape(-1).tolist(), dtype=np.int64).astype(np.uint64)
    x = d ^ np.uint64(h)
    x += _GAMMA
    return _mix64(x) & np.uint64((1 << 63) - 1)


def keyed_stream(keys: np.ndarray, count: int, start: int = 1) -> np.ndarray:
    """``(B, count)`` uint64: outputs ``start .. start + count - 1`` of each key's counter-based stream."""
    x = np.arange(start, start + count, dtype=np.uint64) * _GAMMA
    x = np.add(keys.reshape(-1, 1), x.reshape(1, -1))
    return _mix64(x)


def _unit53(bits: np.ndarray) -> np.ndarray:
    """float64 uniforms in ``[0, 1)`` from the top 53 bits (overwrites ``bits``, a fresh ``uint64`` array)."""
    np.right_shift(bits, np.uint64(11), out=bits)
    # Below 2^53 the signed view is the same number, and int64 -> float64 is the cheaper cast.
    u = bits.view(np.int64).astype(np.float64)
    u *= 1.0 / (1 << 53)
    return u


def keyed_rows(doc_ids, count: int, *parts: int | str) -> torch.Tensor:
    """``(B, count)`` float64 uniforms, row ``b`` the first ``count`` of document
    ``doc_ids[b]``'s stream under ``parts`` (equal to ``keyed_uniform(count, *parts, doc)``)."""
    return torch.from_numpy(_unit53(keyed_stream(document_keys(doc_ids, *parts), count)))


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
        ids = torch.as_tensor(doc_ids).reshape(-1)
        lens = torch.as_tensor(lengths).reshape(-1).to(torch.long)
        if ids.numel() != lens.numel():
            raise ValueError(f"{ids.numel()} document ids but {lens.numel()} lengths")
        P = int(num_particles)
        self.P, self.T, self.B = P, int(T), ids.numel()
        if self.B and int(lens.max()) > self.T:
            b = int(lens.argmax())
            raise ValueError(f"document {int(ids[b])} has length {int(lens[b])} > T={self.T}")
        S = 2 * P + 1
        u = keyed_rows(ids, 2 + self.T * S, int(seed), stream, *key)
        final = u[:, 0]
        steps = u[:, 1 : 1 + self.T * S].view(self.B, self.T, S)
        _fill_padding(steps, lens, 0.5)
        # Step-major, one contiguous block per use, so every step's slab is a contiguous view:
        # ancestors (T, B, P), the reference's redraw (T, B, 1), proposals (T, B, P, 1). Each
        # block is transposed and cast in one copy (one pass over the uniforms, not three).
        steps = steps.transpose(0, 1)

        def block(view: torch.Tensor) -> torch.Tensor:
            return torch.empty(view.shape, dtype=dtype).copy_(view).to(device)

        self._resample = block(steps[..., :P])
        self._ancestor = block(steps[..., P : P + 1])
        self._proposal = block(steps[..., P + 1 :]).unsqueeze(-1)
        self._final = final.to(device=device, dtype=dtype)
        self._final_accept = u[:, -1].to(device=device, dtype=dtype)

    def resample(self, t, num):
        if num > self.P:
            raise ValueError(f"keyed uniforms hold {self.P} ancestor slots, {num} requested")
        return self._resample[t, :, :num]

    def ancestor(self, t):
        return self._ancestor[t]

    def proposal(self, t):
        return self._proposal[t]

    def final(self):
        return self._final.unsqueeze(-1)

    def final_accept(self):
        return self._final_accept.unsqueeze(-1)

    def accept(self):
        return self._ancestor[0]  # unused by the sweep itself: step 0 draws no ancestors


class KeyedStepUniforms(UniformSource):
    """Per-document keyed uniforms for a particle filter, made a window of steps at a time.

    What :class:`KeyedUniforms` does for the E-step's sweeps, for the evaluator's filters: each
    document's draws come from its own counter-based stream keyed by ``(seed, stream, *key, d)``,
    so a document's estimate does not depend on the other documents of its chunk, on how the
    documents are chunked, or on how many processes share them. Unlike :class:`KeyedUniforms` it
    never holds every step at once (a filter over long documents with 1,000 particles would need
    gigabytes): outputs are computed a window of steps at a time, the counter of step ``t``'s
    slot ``j`` being ``2 + t * S + j`` with ``S = resample_slots + P`` (slots ``[0,
    resample_slots)`` the resampling's, then the ``P`` proposals'), and output 1 the final choice.
    Steps must be asked for in increasing order (as a sweep does).

    Args:
        seed: the evaluation's seed; doc_ids ``(B,)`` the documents' keys (their rows in the
            caller's whole batch); num_particles ``P``; key: further key parts.
        resample_slots: uniforms the resampling scheme takes per step (``Resampler.num_uniforms``).
        device, dtype: where and how the sweep uses them.
        window_values: about this many uniforms are made at once.
    """

    def __init__(self, seed: int, doc_ids, num_particles: int, key: tuple = (), *, resample_slots: int,
                 stream: str = "filter", device=None, dtype: torch.dtype = torch.float32,
                 window_values: int = 1 << 18):
        self.P, self.R = int(num_particles), int(resample_slots)
        self.S = self.R + self.P
        self._keys = document_keys(doc_ids, int(seed), stream, *key)
        self.B = self._keys.shape[0]
        self.device, self.dtype = device, dtype
        self._window = max(1, int(window_values) // max(self.B * self.S, 1))
        self._t0, self._res, self._prop = None, None, None

    def _make(self, t: int) -> None:
        n = self._window
        bits = keyed_stream(self._keys, n * self.S, start=2 + t * self.S)
        u = torch.from_numpy(_unit53(bits)).view(self.B, n, self.S).transpose(0, 1)  # (n, B, S)
        self._res = torch.empty((n, self.B, self.R), dtype=self.dtype).copy_(u[..., : self.R]).to(self.device)
        self._prop = torch.empty((n, self.B, self.P), dtype=self.dtype).copy_(u[..., self.R :]).to(self.device)
        self._prop = self._prop.unsqueeze(-1)
        self._t0 = t

    def _at(self, t: int) -> int:
        if self._t0 is None or not (self._t0 <= t < self._t0 + self._window):
            if self._t0 is not None and t < self._t0:
                raise ValueError(f"keyed step uniforms are made in increasing steps: step {t} after {self._t0}")
            self._make(t)
        return t - self._t0

    def resample(self, t, num):
        if num > self.R:
            raise ValueError(f"keyed step uniforms hold {self.R} resampling slots per step, {num} requested")
        i = self._at(t)  # first: it may make the window
        return self._res[i, :, :num]

    def proposal(self, t):
        i = self._at(t)
        return self._prop[i]

    def final(self):
        u = _unit53(keyed_stream(self._keys, 1, start=1))
        return torch.from_numpy(u).to(device=self.device, dtype=self.dtype)


def keyed_document_uniforms(doc_ids, lengths, T: int, width: int, *parts, device=None) -> torch.Tensor:
    """``(B, T, width)`` float32 uniforms keyed by ``(*parts, doc)``; padding steps get 1.0.

    Entry ``(t, j)`` of document ``d`` is the top 24 bits of 32-bit half ``(t * width + j) % 2``
    (low half first) of output ``(t * width + j) // 2`` of the document's keyed stream (:func:`keyed_stream`): 24-bit
    uniforms, exact in float32, two per 64-bit output. A document's values depend only on its
    key and position, never on its batch or the padded length.
    """
    halves = _document_halves(doc_ids, T * width, *parts) >> np.uint32(8)  # top 24 bits of each half
    u = torch.from_numpy(halves.astype(np.float32) * np.float32(1.0 / (1 << 24))).view(-1, T, width)
    _fill_padding(u, lengths, 1.0)
    return u.to(device) if device is not None else u


def _document_halves(doc_ids, n: int, *parts) -> np.ndarray:
    """``(B, n)`` uint32: each document's keyed 64-bit outputs read as little-endian 32-bit halves."""
    bits = keyed_stream(document_keys(doc_ids, *parts), (n + 1) // 2)
    return bits.astype("<u8", copy=False).view("<u4")[:, :n]


def _fill_padding(t: torch.Tensor, lengths, value) -> None:
    """Set ``t`` ``(B, T, ...)`` to ``value`` at steps ``>= lengths[b]``, in place (nothing to do
    when no document is shorter than ``T``)."""
    lengths = torch.as_tensor(lengths).reshape(-1).to(torch.long)
    B, T = t.shape[:2]
    if B and int(lengths.min()) < T:
        shape = (1, T) + (1,) * (t.ndim - 2)
        t.masked_fill_(torch.arange(T).view(shape) >= lengths.view((-1,) + (1,) * (t.ndim - 1)), value)


def _unit24_threshold(p: float) -> int:
    """The least ``m`` in ``[0, 2^24]`` with ``float32(m / 2^24) >= p`` as torch compares them
    (``2^24``: none).

    ``m / 2^24`` is exact in float32 and increasing in ``m``, so the comparison is a threshold on
    ``m``; it lies within a few units of ``p * 2^24`` whether torch rounds ``p`` to float32 or
    not, so asking torch about a small window around it finds it exactly.
    """
    centre = int(np.floor(float(p) * (1 << 24)))
    lo, hi = max(centre - 4, 0), min(centre + 4, (1 << 24) - 1)
    if lo > hi:  # p >= 1: no 24-bit uniform reaches it
        return 1 << 24
    cand = torch.arange(lo, hi + 1, dtype=torch.float32).mul_(1.0 / (1 << 24)) >= p
    if bool(cand[-1]) is False:
        if hi == (1 << 24) - 1:
            return 1 << 24
        raise AssertionError(f"threshold of p={p!r} not found near {centre}")
    first = int(cand.to(torch.uint8).argmax())
    if first == 0 and lo > 0:
        raise AssertionError(f"threshold of p={p!r} not found near {centre}")
    return lo + first


def keyed_document_keep(doc_ids, lengths, T: int, width: int, p: float, *parts) -> torch.Tensor:
    """``(B, T, width)`` bool on the CPU, equal to ``keyed_document_uniforms(doc_ids, lengths, T, width,
    *parts) >= p`` (padding ``1.0 >= p``), without making the float uniforms.

    A 24-bit uniform ``m / 2^24`` is ``>= p`` exactly when ``m >= m0`` (:func:`_unit24_threshold`),
    i.e. when its 32-bit half ``h`` (``m = h >> 8``) is ``>= m0 * 2^8``: one integer compare per
    entry instead of a shift, two float passes and a float compare (the dropout masks of every
    M-step; ``benchmarks/profile_epoch.py``).
    """
    halves = _document_halves(doc_ids, T * width, *parts)  # the halves keyed_document_uniforms reads
    m0 = _unit24_threshold(p)
    keep = halves >= np.uint32(m0 << 8) if m0 < 1 << 24 else np.zeros(halves.shape, dtype=bool)
    keep = torch.from_numpy(keep).view(-1, T, width)
    _fill_padding(keep, lengths, bool(torch.ones((), dtype=torch.float32) >= p))
    return keep
