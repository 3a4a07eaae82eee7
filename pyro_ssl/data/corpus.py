"""An immutable collection of integer-encoded documents.

Documents are stored as one flat ``LongTensor`` of all tokens plus an offsets
array (CSR layout). Compared with a Python list of per-document tensors this
keeps a 50,000-review corpus in two allocations, and makes sub-setting,
truncation and padding single vectorised gathers instead of Python loops.
"""

from __future__ import annotations

import array
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..config import VocabConfig, check_int
from .stopwords import is_punctuation, resolve_stopwords
from .tokenize import tokenize
from .vocabulary import Vocabulary

_VOCAB = VocabConfig()  # the defaults (pyro_ssl/config.py)

__all__ = ["Corpus"]

IndexLike = int | slice | Sequence[int] | Sequence[bool] | torch.Tensor | np.ndarray


def _doc_to_tensor(doc: Any, d: int) -> torch.Tensor:
    """One document -> 1-D long tensor, rejecting non-integer data."""
    if isinstance(doc, torch.Tensor):
        t = doc.detach()
    elif isinstance(doc, np.ndarray):
        if doc.size and doc.dtype.kind not in "iu":
            raise TypeError(f"document {d} has dtype {doc.dtype}; expected integer token ids")
        t = torch.from_numpy(np.ascontiguousarray(doc, dtype=np.int64))
    elif isinstance(doc, (str, bytes)):
        raise TypeError(f"document {d} is a string; encode it first (see Corpus.from_texts)")
    else:
        doc = list(doc)
        if any(isinstance(v, bool) for v in doc):
            raise TypeError(f"document {d} holds bools; expected integer token ids")
        # No dtype here: torch.tensor(..., dtype=long) silently truncates floats.
        try:
            t = torch.tensor(doc) if doc else torch.zeros(0, dtype=torch.long)
        except (TypeError, ValueError, RuntimeError, OverflowError):
            raise TypeError(f"document {d} is not a flat sequence of integer token ids "
                            f"(nested or mixed values: {doc[:5]!r}...)") from None
    if t.dim() != 1:
        raise ValueError(f"document {d} has shape {tuple(t.shape)}; expected a 1-D sequence of ids")
    if t.numel() and (t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool):
        raise TypeError(f"document {d} has dtype {t.dtype}; expected integer token ids")
    return t.to(device="cpu", dtype=torch.long)


def _flatten(docs: Iterable[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Documents -> (flat ids (N,), offsets (D+1,)), both long, on CPU."""
    docs = list(docs)
    if docs and all(isinstance(d, (list, tuple)) for d in docs):
        # Fast path for the common list-of-lists input: one tensor construction.
        # array('q') is ~5x faster than torch.tensor on a long list and, unlike
        # np.fromiter or torch.tensor(dtype=long), refuses floats instead of truncating.
        lengths = torch.tensor([len(d) for d in docs], dtype=torch.long)
        # array('q') takes bools as 0/1: find them (map(type) runs at C speed).
        if bool in set(map(type, itertools.chain.from_iterable(docs))):
            for d, doc in enumerate(docs):
                _doc_to_tensor(doc, d)
        try:
            buf = array.array("q", itertools.chain.from_iterable(docs))
        except (TypeError, OverflowError):
            # Re-check document by document so the error names the bad one.
            for d, doc in enumerate(docs):
                _doc_to_tensor(doc, d)
            raise
        # np.frombuffer keeps `buf` alive through the array's .base; no copy.
        if buf:
            flat = torch.from_numpy(np.frombuffer(buf, dtype=np.int64))
        else:
            flat = torch.zeros(0, dtype=torch.long)
    else:
        tensors = [_doc_to_tensor(doc, d) for d, doc in enumerate(docs)]
        lengths = torch.tensor([t.numel() for t in tensors], dtype=torch.long)
        flat = torch.cat(tensors) if tensors else torch.zeros(0, dtype=torch.long)
    offsets = torch.zeros(len(docs) + 1, dtype=torch.long)
    torch.cumsum(lengths, 0, out=offsets[1:])
    return flat, offsets


def _gather(
    flat: torch.Tensor, starts: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate ``flat[starts[i] : starts[i] + lengths[i]]`` for all i.

    Returns the new (flat (sum(lengths),), offsets (n+1,)).
    """
    offsets = torch.zeros(lengths.numel() + 1, dtype=torch.long)
    torch.cumsum(lengths, 0, out=offsets[1:])
    total = int(offsets[-1])
    if total == 0:
        return torch.zeros(0, dtype=torch.long), offsets
    shift = torch.repeat_interleave(starts - offsets[:-1], lengths)
    return flat[torch.arange(total) + shift], offsets


class Corpus:
    """D integer-encoded documents over a vocabulary of size V.

    Construction copies the input; no method mutates a corpus, and every
    transformation (sub-setting, truncation, splitting) returns a new one that
    shares the vocabulary.

    Args:
        docs: D documents, each a list of ints or a 1-D integer tensor/array.
        vocab: the vocabulary the ids refer to (``V = len(vocab)``).
        labels: optional per-document labels (length D), carried through
            sub-setting and splitting.
        vocab_size: V when there is no vocabulary object. Defaults to
            ``len(vocab)`` or, without a vocabulary, ``max id + 1``.

    Raises:
        ValueError: an id outside ``[0, V)`` (the message names the document),
            a non-1-D document, mismatched ``vocab``/``vocab_size`` or labels.
        TypeError: non-integer ids.
    """

    def __init__(
        self,
        docs: Iterable[Any],
        vocab: Vocabulary | None = None,
        labels: Sequence[Any] | None = None,
        vocab_size: int | None = None,
    ) -> None:
        if isinstance(docs, Corpus):
            flat, offsets = docs._flat.clone(), docs._offsets.clone()
        else:
            flat, offsets = _flatten(docs)
        if vocab is not None and not isinstance(vocab, Vocabulary):
            raise TypeError(f"vocab must be a Vocabulary or None, got {type(vocab).__name__}")
        if vocab is not None and vocab_size is not None and vocab_size != len(vocab):
            raise ValueError(f"vocab_size={vocab_size} disagrees with len(vocab)={len(vocab)}")
        if vocab is not None:
            V = len(vocab)
        elif vocab_size is not None:
            V = check_int("vocab_size", vocab_size, 1)
        else:
            V = int(flat.max()) + 1 if flat.numel() else 1
        if flat.numel():
            bad = (flat < 0) | (flat >= V)
            if bool(bad.any()):
                pos = int(bad.nonzero()[0, 0])
                d = int(torch.searchsorted(offsets, torch.tensor(pos), right=True)) - 1
                raise ValueError(
                    f"document {d} contains token id {int(flat[pos])} outside the valid range [0, {V})"
                    + (" (token ids must be non-negative)" if int(flat[pos]) < 0 else "")
                )
        self._init(flat, offsets, V, vocab, self._check_labels(labels, offsets.numel() - 1))

    # ------------------------------------------------------------ internals
    def _init(
        self,
        flat: torch.Tensor,
        offsets: torch.Tensor,
        V: int,
        vocab: Vocabulary | None,
        labels: tuple[Any, ...] | None,
    ) -> None:
        self._flat = flat
        self._offsets = offsets
        self._lengths = offsets[1:] - offsets[:-1]
        self._V = V
        self._vocab = vocab
        self._labels = labels

    @staticmethod
    def _check_labels(labels: Sequence[Any] | None, D: int) -> tuple[Any, ...] | None:
        if labels is None:
            return None
        if hasattr(labels, "tolist"):
            labels = labels.tolist()
        labels = tuple(labels)
        if len(labels) != D:
            raise ValueError(f"got {len(labels)} labels for {D} documents")
        return labels

    def _new(self, flat: torch.Tensor, offsets: torch.Tensor, labels: tuple | None) -> "Corpus":
        # Skips validation: derived corpora only ever contain ids of this one.
        out = Corpus.__new__(Corpus)
        out._init(flat, offsets, self._V, self._vocab, labels)
        return out

    def _select(self, idx: torch.Tensor) -> "Corpus":
        flat, offsets = _gather(self._flat, self._offsets[:-1][idx], self._lengths[idx])
        labels = None
        if self._labels is not None:
            labels = tuple(self._labels[i] for i in idx.tolist())
        return self._new(flat, offsets, labels)

    def _resolve_indices(self, key: Any) -> torch.Tensor:
        """Slice / index list / bool mask -> LongTensor of indices in [0, D)."""
        D = len(self)
        if isinstance(key, slice):
            return torch.arange(D)[key]
        idx = torch.as_tensor(np.asarray(key) if not isinstance(key, torch.Tensor) else key)
        if idx.dim() != 1:
            raise IndexError(f"document index must be 1-D, got shape {tuple(idx.shape)}")
        if idx.dtype == torch.bool:
            if idx.numel() != D:
                raise IndexError(f"boolean mask has length {idx.numel()}, corpus has {D} documents")
            return idx.nonzero().flatten()
        if idx.numel() == 0:
            return torch.zeros(0, dtype=torch.long)
        if idx.dtype.is_floating_point or idx.dtype.is_complex:
            raise IndexError("document indices must be integers")
        idx = idx.to(torch.long)
        if bool(((idx < -D) | (idx >= D)).any()):
            raise IndexError(f"document index out of range for a corpus of {D} documents")
        return torch.where(idx < 0, idx + D, idx)

    # ---------------------------------------------------------- constructors
    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        vocab: Vocabulary | None = None,
        vocab_size: int | None = _VOCAB.vocab_size,
        min_count: int = _VOCAB.min_count,
        labels: Sequence[Any] | None = None,
        *,
        tokenizer: Callable[[str], list[str]] = tokenize,
        no_below: int | None = _VOCAB.no_below,
        no_above: float | None = _VOCAB.no_above,
        keep_n: int | None = _VOCAB.keep_n,
        stopwords: bool | Iterable[str] | None = _VOCAB.stopwords,
    ) -> "Corpus":
        """Tokenize and encode raw texts.

        Args:
            texts: D raw documents.
            vocab: vocabulary to encode with; when ``None`` one is built from
                these texts with ``Vocabulary.build(..., max_size=vocab_size,
                min_count=min_count)``. Pass the training vocabulary when
                encoding test texts so that both share ids and ``<unk>`` handling
                (a filtered vocabulary drops the words it does not know).
            vocab_size: maximum vocabulary size including ``<unk>`` (only used
                when building).
            min_count: minimum word frequency (only used when building).
            labels: optional per-document labels.
            tokenizer: text -> tokens; defaults to :func:`tokenize`.
            no_below, no_above, keep_n, stopwords: vocabulary filtering as gensim's
                ``filter_extremes`` (see :meth:`filter_extremes`; only when building).
                With any of them set, every word is counted first, the filter applies,
                ``keep_n`` defaults to ``vocab_size - 1``, and the dropped words are removed
                from the documents. Defaults in :class:`~pyro_ssl.config.VocabConfig` (off).
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a collection of documents, not a single string")
        token_lists = [tokenizer(t) for t in texts]
        filters = no_below is not None or no_above is not None or keep_n is not None or bool(stopwords)
        if vocab is not None or not filters:
            if vocab is None:
                vocab = Vocabulary.build(token_lists, max_size=vocab_size, min_count=min_count)
            return cls([vocab.encode(toks) for toks in token_lists], vocab=vocab, labels=labels)
        full = Vocabulary.build(token_lists, max_size=None, min_count=min_count)
        corpus = cls([full.encode(toks) for toks in token_lists], vocab=full, labels=labels)
        if keep_n is None and vocab_size is not None:
            keep_n = vocab_size - 1
        return corpus.filter_extremes(no_below=no_below or 1, no_above=1.0 if no_above is None else no_above,
                                      keep_n=keep_n, stopwords=stopwords)

    def filter_extremes(
        self,
        no_below: int = 5,
        no_above: float = 0.5,
        keep_n: int | None = 100000,
        stopwords: bool | Iterable[str] | None = None,
    ) -> "Corpus":
        """Filter the vocabulary as gensim's ``Dictionary.filter_extremes`` does, and the documents with it.

        Drops words found in fewer than ``no_below`` documents or in more than ``no_above``
        (a fraction) of them, the ``stopwords`` (``True``: gensim's English list and
        punctuation-only tokens; or a collection of words) and ``<unk>``; then keeps the
        ``keep_n`` of the rest found in most documents (``None``: all). Defaults are gensim's.

        Returns:
            A new corpus over a new vocabulary (ids renumbered by document frequency) whose documents
            have the dropped words removed; documents may get shorter or empty
            (:meth:`filter_min_length`). Its vocabulary drops unknown words when encoding, so
            test text encoded with it (``Corpus.from_texts(texts, vocab=...)``) is filtered alike.

        Raises:
            ValueError: the corpus has no vocabulary, or nothing is left.
        """
        if self._vocab is None:
            raise ValueError("filter_extremes needs a vocabulary (Corpus.from_texts or load_corpus)")
        if int(no_below) < 1 or not 0.0 < float(no_above) <= 1.0 or (keep_n is not None and int(keep_n) < 1):
            raise ValueError(f"need no_below >= 1, 0 < no_above <= 1 and keep_n >= 1 or None; got "
                             f"{no_below}, {no_above}, {keep_n}")
        D, V = len(self), self._V
        doc_of = torch.repeat_interleave(torch.arange(D), self._lengths)  # (N,) document of each token
        df = torch.bincount(torch.unique(doc_of * V + self._flat) % V, minlength=V)  # (V,) document frequency
        cf = torch.bincount(self._flat, minlength=V)  # (V,) token count
        keep = (df >= int(no_below)) & (df <= float(no_above) * D)
        keep[self._vocab.unk_id] = False
        words, punctuation = resolve_stopwords(stopwords)
        itos = self._vocab.itos
        if words or punctuation:
            drop = [i for i, w in enumerate(itos) if w in words or (punctuation and is_punctuation(w))]
            keep[drop] = False
        kept = keep.nonzero().flatten()
        # As gensim: by document frequency, then (deterministic ties) by count, then the old order.
        kept = kept[torch.sort(-cf[kept], stable=True).indices]
        kept = kept[torch.sort(-df[kept], stable=True).indices]
        if keep_n is not None:
            kept = kept[: int(keep_n)]
        if kept.numel() == 0:
            raise ValueError("filter_extremes left no words; loosen no_below / no_above / stopwords")
        vocab = Vocabulary([itos[i] for i in kept.tolist()], unk_token=self._vocab.unk_token,
                           counts=[0, *cf[kept].tolist()], drop_unknown=True)
        new_id = torch.full((V,), -1, dtype=torch.long)
        new_id[kept] = torch.arange(1, kept.numel() + 1)
        mapped = new_id[self._flat]
        stays = mapped >= 0
        lengths = torch.bincount(doc_of[stays], minlength=D)
        offsets = torch.zeros(D + 1, dtype=torch.long)
        torch.cumsum(lengths, 0, out=offsets[1:])
        out = Corpus.__new__(Corpus)
        out._init(mapped[stays].contiguous(), offsets, len(vocab), vocab, self._labels)
        return out

    # ------------------------------------------------------------ properties
    @property
    def V(self) -> int:
        """Vocabulary size: ids lie in ``[0, V)``."""
        return self._V

    @property
    def vocab(self) -> Vocabulary | None:
        """The shared vocabulary, if any."""
        return self._vocab

    @property
    def labels(self) -> list[Any] | None:
        """Per-document labels (length D) or ``None``."""
        return None if self._labels is None else list(self._labels)

    @property
    def lengths(self) -> torch.Tensor:
        """Document lengths, LongTensor of shape (D,)."""
        return self._lengths.clone()

    @property
    def num_tokens(self) -> int:
        """Total number of tokens, ``lengths.sum()``."""
        return int(self._offsets[-1])

    @property
    def max_length(self) -> int:
        """Length of the longest document (0 for an empty corpus)."""
        return int(self._lengths.max()) if len(self) else 0

    # --------------------------------------------------------- sequence API
    def __len__(self) -> int:
        return self._offsets.numel() - 1

    def __getitem__(self, key: IndexLike) -> "list[int] | Corpus":
        """``corpus[i]`` -> the ids of document i (list of ints);
        ``corpus[slice | index list | LongTensor | bool mask]`` -> sub-Corpus."""
        if isinstance(key, (int, np.integer)) or (
            isinstance(key, torch.Tensor) and key.dim() == 0 and not key.dtype.is_floating_point
        ):
            i = int(key)
            D = len(self)
            if not -D <= i < D:
                raise IndexError(f"document index {i} out of range for a corpus of {D} documents")
            i %= D
            return self._flat[self._offsets[i] : self._offsets[i + 1]].tolist()
        return self._select(self._resolve_indices(key))

    def __iter__(self) -> Iterator[list[int]]:
        for i in range(len(self)):
            yield self._flat[self._offsets[i] : self._offsets[i + 1]].tolist()

    def doc(self, i: int) -> torch.Tensor:
        """Document i as a LongTensor of shape (L_i,) (a copy)."""
        i = int(i)
        D = len(self)
        if not -D <= i < D:
            raise IndexError(f"document index {i} out of range for a corpus of {D} documents")
        i %= D
        return self._flat[self._offsets[i] : self._offsets[i + 1]].clone()

    def tolist(self) -> list[list[int]]:
        """All documents as lists of ints."""
        flat = self._flat.tolist()
        off = self._offsets.tolist()
        return [flat[a:b] for a, b in zip(off[:-1], off[1:])]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Corpus):
            return NotImplemented
        return (
            self._V == other._V
            and self._vocab == other._vocab
            and self._labels == other._labels
            and torch.equal(self._offsets, other._offsets)
            and torch.equal(self._flat, other._flat)
        )

    __hash__ = None  # type: ignore[assignment]  # equality is by value, contents are large

    def __repr__(self) -> str:
        return (
            f"Corpus(D={len(self)}, V={self._V}, num_tokens={self.num_tokens}, "
            f"max_length={self.max_length}, labels={'yes' if self._labels is not None else 'no'})"
        )

    # --------------------------------------------------------- transforms
    def filter_min_length(self, n: int) -> "Corpus":
        """Keep the documents with at least ``n`` tokens (order preserved).

        Raises:
            ValueError: no document is that long.
        """
        keep = self._lengths >= int(n)
        if not bool(keep.any()):
            raise ValueError(
                f"no document has at least {n} tokens "
                f"({len(self)} documents, longest has {self.max_length})"
            )
        return self._select(keep.nonzero().flatten())

    def truncate(self, n: int) -> "Corpus":
        """Cut every document to its first ``min(L_i, n)`` tokens."""
        if int(n) < 0:
            raise ValueError(f"truncate length must be >= 0, got {n}")
        flat, offsets = _gather(self._flat, self._offsets[:-1], self._lengths.clamp(max=int(n)))
        return self._new(flat, offsets, self._labels)

    def prefix(self, T1: int) -> "Corpus":
        """The first ``T1`` tokens of every document (each result has exactly T1).

        Unlike :meth:`truncate`, this is strict: it is meant for the completion
        experiment, where a shorter prefix would silently change the setup.

        Raises:
            ValueError: a document has fewer than ``T1`` tokens (names the first one).
        """
        short = (self._lengths < int(T1)).nonzero().flatten()
        if short.numel():
            d = int(short[0])
            raise ValueError(
                f"document {d} has {int(self._lengths[d])} tokens, fewer than prefix length {T1} "
                f"({short.numel()} such documents; use filter_min_length first)"
            )
        return self.truncate(T1)

    def take(self, n: int) -> "Corpus":
        """The first ``n`` documents (all of them if ``n >= len(self)``)."""
        if int(n) < 0:
            raise ValueError(f"take(n) needs n >= 0, got {n}")
        return self[: int(n)]

    def split_indices(
        self, test_size: int | float, seed: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random document-level split, as sorted index tensors (train (D-n,), test (n,)).

        Args:
            test_size: number of test documents (int, ``0 < n < D``) or a
                fraction (float in (0, 1); ``ceil(fraction * D)`` documents).
            seed: seed of a private generator; the global torch RNG is untouched.
        """
        D = len(self)
        if isinstance(test_size, bool) or not isinstance(test_size, (int, float, np.integer, np.floating)):
            raise TypeError(f"test_size must be an int or a float, got {test_size!r}")
        if isinstance(test_size, (float, np.floating)):
            if not 0.0 < test_size < 1.0:
                raise ValueError(f"a fractional test_size must lie in (0, 1), got {test_size}")
            n_test = math.ceil(float(test_size) * D)
        else:
            n_test = int(test_size)
        if not 0 < n_test < D:
            raise ValueError(
                f"test_size={test_size} gives {n_test} test documents out of {D}; "
                "both train and test must be non-empty"
            )
        g = torch.Generator().manual_seed(int(seed))
        perm = torch.randperm(D, generator=g)
        return perm[n_test:].sort().values, perm[:n_test].sort().values

    def split(self, test_size: int | float, seed: int = 0) -> tuple["Corpus", "Corpus"]:
        """Random split by documents -> (train, test), reproducible with ``seed``.

        Both parts keep the original document order and share the vocabulary;
        see :meth:`split_indices` for the meaning of ``test_size``.
        """
        train_idx, test_idx = self.split_indices(test_size, seed)
        return self._select(train_idx), self._select(test_idx)

    # ------------------------------------------------------------ batching
    def padded(
        self, device: torch.device | str | None = None, pad_id: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded token matrix.

        Note the default ``pad_id`` equals ``unk_id``: padding must always be
        identified through ``lengths`` / :meth:`mask`, never by value.

        Returns:
            tokens: LongTensor (D, Tmax), ``tokens[d, t]`` for ``t < lengths[d]``
                are the ids of document d, the rest ``pad_id``.
            lengths: LongTensor (D,).
        """
        mask = self.mask()
        tokens = torch.full(mask.shape, int(pad_id), dtype=torch.long)
        # Boolean-mask assignment fills row-major, which is exactly CSR order.
        tokens[mask] = self._flat
        lengths = self._lengths.clone()
        if device is not None:
            tokens, lengths = tokens.to(device), lengths.to(device)
        return tokens, lengths

    def mask(self, device: torch.device | str | None = None) -> torch.Tensor:
        """BoolTensor (D, Tmax): True at real tokens, False at padding."""
        mask = torch.arange(self.max_length) < self._lengths[:, None]
        return mask if device is None else mask.to(device)

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        seed: int | None = None,
        drop_last: bool = False,
    ) -> Iterator[torch.Tensor]:
        """Yield LongTensors of document indices, each of shape (<= batch_size,).

        Use ``corpus[idx]`` or ``corpus[idx].padded()`` to materialise a batch.
        With ``shuffle`` and ``seed=None`` the global torch RNG is used, so
        ``torch.manual_seed`` controls the order; a given ``seed`` uses a
        private generator instead.
        """
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        D = len(self)
        if shuffle:
            g = None if seed is None else torch.Generator().manual_seed(int(seed))
            order = torch.randperm(D, generator=g)
        else:
            order = torch.arange(D)
        for start in range(0, D, int(batch_size)):
            idx = order[start : start + int(batch_size)]
            if drop_last and idx.numel() < batch_size:
                return
            yield idx

    # ------------------------------------------------------------- exports
    def word_counts(self) -> torch.Tensor:
        """Corpus-wide token counts, LongTensor of shape (V,)."""
        return torch.bincount(self._flat, minlength=self._V)

    def to_bow(self) -> list[list[tuple[int, int]]]:
        """Bag-of-words per document as sorted ``(id, count)`` pairs (gensim's format)."""
        out = []
        for doc in self.tolist():
            ids, counts = np.unique(np.asarray(doc, dtype=np.int64), return_counts=True)
            out.append(list(zip(ids.tolist(), counts.tolist())))
        return out

    def to_texts(self, sep: str = " ") -> list[str]:
        """Decode every document to a string of space-joined tokens.

        Raises:
            ValueError: the corpus has no vocabulary.
        """
        if self._vocab is None:
            raise ValueError("this Corpus has no vocabulary to decode with")
        itos = self._vocab.itos
        return [sep.join(itos[i] for i in doc) for doc in self.tolist()]
