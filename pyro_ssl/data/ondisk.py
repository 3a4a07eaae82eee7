"""An encoded corpus on disk, read through a memory map: corpora larger than memory.

Layout of a corpus directory (the CSR layout of :class:`~pyro_ssl.data.Corpus`, on disk)::

    meta.json      {"format": "pyro_ssl.OnDiskCorpus", "version": 1, "num_docs": D,
                    "num_tokens": N, "V": V, "dtype": "uint16" | "int32" | "int64", ...}
    tokens.bin     the N token ids of all documents, concatenated (raw, little-endian)
    offsets.npy    int64 (D + 1,): document d is tokens[offsets[d] : offsets[d + 1]]
    vocab.json     the Vocabulary (optional)
    labels.json    per-document labels (optional)

``tokens.bin`` is opened with :class:`numpy.memmap`, so opening a corpus reads only
``offsets.npy`` (8 bytes per document; itself memory-mapped) and each access reads the pages
of the documents it touches. A rank of a data-parallel fit opens the corpus and takes
:meth:`OnDiskCorpus.shard`, a contiguous block of documents; :meth:`OnDiskCorpus.padded`
materialises a minibatch.

Writing streams: :class:`OnDiskWriter` appends documents one at a time (from a generator
over files, say) and never holds the corpus in memory; :func:`write_ondisk` writes a
:class:`~pyro_ssl.data.Corpus` or any iterable of token-id sequences.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .corpus import Corpus
from .vocabulary import Vocabulary

__all__ = ["OnDiskCorpus", "OnDiskWriter", "write_ondisk", "is_ondisk_corpus"]

_FORMAT = "pyro_ssl.OnDiskCorpus"
_VERSION = 1


def _token_dtype(V: int | None) -> np.dtype:
    if V is not None and V <= np.iinfo(np.uint16).max + 1:
        return np.dtype("<u2")
    if V is None or V <= np.iinfo(np.int32).max:
        return np.dtype("<i4")
    return np.dtype("<i8")


def is_ondisk_corpus(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory written by :class:`OnDiskWriter`."""
    meta = Path(path) / "meta.json"
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("format") == _FORMAT
    except (OSError, ValueError):
        return False


class OnDiskWriter:
    """Stream documents into an on-disk corpus directory.

    Use as a context manager (or call :meth:`close`)::

        with OnDiskWriter("corpus_dir", vocab=vocab) as w:
            for doc in encoded_documents():
                w.add(doc)

    Args:
        path: the directory (created; existing corpus files are overwritten).
        vocab: optional vocabulary (written as ``vocab.json``; fixes ``V``).
        V: vocabulary size when there is no vocabulary; inferred as ``max id + 1`` if neither.
        buffer_tokens: tokens buffered in memory between writes.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        vocab: Vocabulary | None = None,
        V: int | None = None,
        buffer_tokens: int = 1 << 20,
    ):
        if vocab is not None and V is not None and int(V) != len(vocab):
            raise ValueError(f"V={V} disagrees with len(vocab)={len(vocab)}")
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.vocab = vocab
        self.V = len(vocab) if vocab is not None else (int(V) if V is not None else None)
        self.dtype = _token_dtype(self.V)
        self._file = open(self.path / "tokens.bin", "wb")
        self._lengths: list[int] = []
        self._labels: list[Any] = []
        self._buf: list[np.ndarray] = []
        self._buffered = 0
        self._buffer_tokens = int(buffer_tokens)
        self._max_id = -1
        self._closed = False

    def add(self, doc: Sequence[int] | np.ndarray | torch.Tensor, label: Any = None) -> None:
        """Append one document (a sequence of token ids)."""
        if self._closed:
            raise ValueError("this writer is closed")
        if isinstance(doc, torch.Tensor):
            doc = doc.detach().cpu().numpy()
        a = np.asarray(doc)
        if a.ndim != 1:
            raise ValueError(f"document {len(self._lengths)} has shape {a.shape}; expected 1-D token ids")
        if a.size and a.dtype.kind not in "iu":
            raise TypeError(f"document {len(self._lengths)} has dtype {a.dtype}; expected integer token ids")
        if a.size:
            lo, hi = int(a.min()), int(a.max())
            if lo < 0 or (self.V is not None and hi >= self.V) or hi > np.iinfo(self.dtype).max:
                raise ValueError(f"document {len(self._lengths)} has a token id outside [0, {self.V})")
            self._max_id = max(self._max_id, hi)
        self._buf.append(a.astype(self.dtype, copy=False))
        self._buffered += a.size
        self._lengths.append(int(a.size))
        self._labels.append(label)
        if self._buffered >= self._buffer_tokens:
            self._flush()

    def extend(self, docs: Iterable, labels: Iterable | None = None) -> None:
        labels = iter(labels) if labels is not None else None
        for doc in docs:
            self.add(doc, next(labels) if labels is not None else None)

    def _flush(self) -> None:
        if self._buf:
            np.concatenate(self._buf).tofile(self._file)
        self._buf, self._buffered = [], 0

    def close(self) -> "OnDiskCorpus":
        """Finish writing (offsets, metadata, vocabulary) and open the result."""
        if not self._closed:
            self._flush()
            self._file.close()
            offsets = np.zeros(len(self._lengths) + 1, dtype=np.int64)
            np.cumsum(np.asarray(self._lengths, dtype=np.int64), out=offsets[1:])
            np.save(self.path / "offsets.npy", offsets)
            V = self.V if self.V is not None else self._max_id + 1
            has_labels = any(lab is not None for lab in self._labels)
            if self.vocab is not None:
                self.vocab.save(self.path / "vocab.json")
            elif (self.path / "vocab.json").exists():
                (self.path / "vocab.json").unlink()
            if has_labels:
                (self.path / "labels.json").write_text(json.dumps(self._labels), encoding="utf-8")
            elif (self.path / "labels.json").exists():
                (self.path / "labels.json").unlink()
            meta = {
                "format": _FORMAT,
                "version": _VERSION,
                "num_docs": len(self._lengths),
                "num_tokens": int(offsets[-1]),
                "V": int(max(V, 1)),
                "dtype": self.dtype.name,
                "vocab": self.vocab is not None,
                "labels": has_labels,
            }
            # meta.json last: its presence marks a complete corpus.
            tmp = self.path / ".meta.json.tmp"
            tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
            os.replace(tmp, self.path / "meta.json")
            self._closed = True
        return OnDiskCorpus.open(self.path)

    def __enter__(self) -> "OnDiskWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._file.close()
            self._closed = True


def write_ondisk(
    data: Corpus | Iterable,
    path: str | os.PathLike,
    *,
    vocab: Vocabulary | None = None,
    V: int | None = None,
    labels: Iterable | None = None,
    chunk_docs: int = 10000,
) -> "OnDiskCorpus":
    """Write a :class:`~pyro_ssl.data.Corpus` (or any iterable of token-id sequences) to ``path``.

    A corpus's vocabulary, ``V`` and labels are kept unless overridden.
    """
    if isinstance(data, Corpus):
        vocab = vocab if vocab is not None else data.vocab
        V = V if V is not None or vocab is not None else data.V
        labels = labels if labels is not None else data.labels
        writer = OnDiskWriter(path, vocab=vocab, V=V)
        labs = list(labels) if labels is not None else None
        for start in range(0, len(data), chunk_docs):
            part = data[start : start + chunk_docs]
            flat, off = part._flat.numpy(), part._offsets.numpy()
            for i in range(len(part)):
                writer.add(flat[off[i] : off[i + 1]], labs[start + i] if labs is not None else None)
        return writer.close()
    writer = OnDiskWriter(path, vocab=vocab, V=V)
    writer.extend(data, labels)
    return writer.close()


class OnDiskCorpus:
    """A read-only, memory-mapped encoded corpus, or a contiguous block of one (a shard).

    Open with :meth:`open`. Indexing is local to the view: ``shard[0]`` is the shard's first
    document, whose global id is ``shard.start``; :attr:`doc_ids` gives all of them.

    ``len``, ``corpus[i]`` (a list of ids), ``corpus[a:b]`` (a view), ``corpus[indices]`` (an
    in-memory :class:`~pyro_ssl.data.Corpus`), :meth:`padded`, :meth:`shard`, ``lengths``,
    ``V``, ``vocab`` and ``labels`` behave as on :class:`~pyro_ssl.data.Corpus`, so
    ``SSL().fit(on_disk_corpus)`` works for corpora that fit in memory once padded.
    """

    def __init__(self, path: Path, meta: dict, tokens: np.ndarray, offsets: np.ndarray, vocab, labels, start, stop):
        self.path = path
        self._meta = meta
        self._tokens = tokens
        self._offsets = offsets  # global (D + 1,)
        self._vocab = vocab
        self._labels = labels
        self.start, self.stop = int(start), int(stop)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "OnDiskCorpus":
        """Open a directory written by :class:`OnDiskWriter` / :func:`write_ondisk`."""
        path = Path(path)
        meta_file = path / "meta.json"
        if not meta_file.is_file():
            raise FileNotFoundError(f"no on-disk corpus at {path} (meta.json missing)")
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{meta_file}: not valid JSON ({e})") from e
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            fmt = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise ValueError(f"{meta_file} is not an on-disk corpus (format {fmt!r})")
        if meta.get("version") != _VERSION:
            raise ValueError(f"unsupported on-disk corpus version {meta.get('version')!r}")
        dtype = np.dtype(meta["dtype"]).newbyteorder("<")
        n = int(meta["num_tokens"])
        if n:
            tokens = np.memmap(path / "tokens.bin", dtype=dtype, mode="r", shape=(n,))
        else:
            tokens = np.zeros(0, dtype=dtype)
        try:
            # Never unpickle: an object array (a pickle) in offsets.npy is refused, not run.
            offsets = np.load(path / "offsets.npy", mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as e:
            raise ValueError(f"{path / 'offsets.npy'}: not a plain integer array ({e})") from e
        if offsets.dtype.kind not in "iu":
            raise ValueError(f"{path / 'offsets.npy'}: dtype {offsets.dtype}, expected integer offsets")
        if offsets.shape != (int(meta["num_docs"]) + 1,) or int(offsets[-1]) != n:
            raise ValueError(f"{path}: offsets.npy does not match meta.json")
        vocab = Vocabulary.load(path / "vocab.json") if meta.get("vocab") else None
        labels = None
        if meta.get("labels"):
            labels = json.loads((path / "labels.json").read_text(encoding="utf-8"))
        return cls(path, meta, tokens, offsets, vocab, labels, 0, int(meta["num_docs"]))

    def _view(self, start: int, stop: int) -> "OnDiskCorpus":
        return OnDiskCorpus(self.path, self._meta, self._tokens, self._offsets, self._vocab, self._labels, start, stop)

    # ------------------------------------------------------------ properties
    @property
    def V(self) -> int:
        return int(self._meta["V"])

    @property
    def vocab(self) -> Vocabulary | None:
        return self._vocab

    @property
    def labels(self) -> list | None:
        return None if self._labels is None else list(self._labels[self.start : self.stop])

    @property
    def num_docs_total(self) -> int:
        """Documents in the whole corpus (not just this view)."""
        return int(self._meta["num_docs"])

    @property
    def doc_ids(self) -> torch.Tensor:
        """Global ids of this view's documents, ``(len(self),)`` long."""
        return torch.arange(self.start, self.stop)

    @property
    def lengths(self) -> torch.Tensor:
        """Document lengths of this view, ``(len(self),)`` long."""
        off = np.asarray(self._offsets[self.start : self.stop + 1], dtype=np.int64)
        return torch.from_numpy(np.diff(off))

    @property
    def num_tokens(self) -> int:
        return int(self._offsets[self.stop]) - int(self._offsets[self.start])

    @property
    def max_length(self) -> int:
        return int(self.lengths.max()) if len(self) else 0

    # --------------------------------------------------------- sequence API
    def __len__(self) -> int:
        return self.stop - self.start

    def _global(self, i: int) -> int:
        n = len(self)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"document index {i} out of range for {n} documents")
        return self.start + (i % n)

    def doc(self, i: int) -> torch.Tensor:
        """Document ``i`` of this view as a long tensor (reads only its pages)."""
        g = self._global(i)
        a, b = int(self._offsets[g]), int(self._offsets[g + 1])
        return torch.from_numpy(np.asarray(self._tokens[a:b], dtype=np.int64))

    def __getitem__(self, key):
        """``[i]``: list of ids; ``[a:b]``: a view; index array / bool mask: an in-memory Corpus."""
        if isinstance(key, (int, np.integer)) or (torch.is_tensor(key) and key.dim() == 0):
            return self.doc(int(key)).tolist()
        if isinstance(key, slice):
            a, b, step = key.indices(len(self))
            if step == 1:
                return self._view(self.start + a, self.start + max(a, b))
            key = list(range(a, b, step))
        return self.to_corpus(key)

    def __iter__(self) -> Iterator[list[int]]:
        for i in range(len(self)):
            yield self.doc(i).tolist()

    def __repr__(self) -> str:
        return (
            f"OnDiskCorpus(path={str(self.path)!r}, docs [{self.start}, {self.stop}) of "
            f"{self.num_docs_total}, V={self.V}, num_tokens={self.num_tokens})"
        )

    # --------------------------------------------------------- sharding
    def shard(self, rank: int, world_size: int) -> "OnDiskCorpus":
        """The ``rank``-th of ``world_size`` contiguous, near-equal blocks of this view.

        The shards partition the documents in order (sizes differ by at most one).
        """
        rank, world_size = int(rank), int(world_size)
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        n = len(self)
        return self._view(self.start + n * rank // world_size, self.start + n * (rank + 1) // world_size)

    # --------------------------------------------------------- batching
    def _resolve(self, indices) -> np.ndarray:
        n = len(self)
        if indices is None:
            return np.arange(n, dtype=np.int64)
        idx = indices.cpu().numpy() if torch.is_tensor(indices) else np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"boolean mask has shape {idx.shape}, view has {n} documents")
            return np.flatnonzero(idx)
        idx = idx.astype(np.int64).reshape(-1)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"document index out of range for {n} documents")
        return np.where(idx < 0, idx + n, idx)

    def _flat(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tokens of documents ``idx`` (local), concatenated, and their lengths."""
        g = idx + self.start
        starts = np.asarray(self._offsets[g], dtype=np.int64)
        lengths = np.asarray(self._offsets[g + 1], dtype=np.int64) - starts
        total = int(lengths.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64), lengths
        cum = np.zeros(lengths.size, dtype=np.int64)
        np.cumsum(lengths[:-1], out=cum[1:])
        pos = np.arange(total, dtype=np.int64) + np.repeat(starts - cum, lengths)
        # Fancy indexing a memmap reads only the pages holding these positions.
        return np.asarray(self._tokens[pos], dtype=np.int64), lengths

    def padded(self, indices=None, device=None, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ``(tokens (B, T), lengths (B,))`` of documents ``indices`` (local; all if None).

        ``T`` is the longest selected document. Reads only those documents.
        """
        idx = self._resolve(indices)
        flat, lengths = self._flat(idx)
        lengths_t = torch.from_numpy(lengths)
        T = int(lengths.max()) if lengths.size else 0
        mask = torch.arange(T) < lengths_t.unsqueeze(-1)
        tokens = torch.full((idx.size, T), int(pad_id), dtype=torch.long)
        tokens[mask] = torch.from_numpy(flat)
        if device is not None:
            tokens, lengths_t = tokens.to(device), lengths_t.to(device)
        return tokens, lengths_t

    def to_corpus(self, indices=None) -> Corpus:
        """Documents ``indices`` (local; all if None) as an in-memory :class:`~pyro_ssl.data.Corpus`."""
        idx = self._resolve(indices)
        flat, lengths = self._flat(idx)
        off = np.zeros(idx.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=off[1:])
        docs = [flat[off[i] : off[i + 1]] for i in range(idx.size)]
        labels = None if self._labels is None else [self._labels[self.start + int(i)] for i in idx]
        return Corpus(docs, vocab=self._vocab, labels=labels, vocab_size=None if self._vocab else self.V)

    def word_counts(self, chunk_tokens: int = 1 << 24) -> torch.Tensor:
        """Token counts ``(V,)`` of this view, read in chunks."""
        a, b = int(self._offsets[self.start]), int(self._offsets[self.stop])
        counts = np.zeros(self.V, dtype=np.int64)
        for s in range(a, b, chunk_tokens):
            counts += np.bincount(np.asarray(self._tokens[s : min(b, s + chunk_tokens)]), minlength=self.V)
        return torch.from_numpy(counts)

    def to_texts(self, sep: str = " ") -> list[str]:
        if self._vocab is None:
            raise ValueError("this corpus has no vocabulary to decode with")
        itos = self._vocab.itos
        return [sep.join(itos[i] for i in doc) for doc in self]
