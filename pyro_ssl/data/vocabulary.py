"""A frozen word <-> id mapping with an ``<unk>`` token at id 0."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = ["Vocabulary", "UNK_TOKEN"]

UNK_TOKEN = "<unk>"
_FORMAT = "pyro_ssl.Vocabulary"
_VERSION = 1


class Vocabulary:
    """An immutable vocabulary: ``itos[i]`` is the word with id ``i``.

    Id 0 is always the unknown token (``unk_id == 0``); every word not in the
    vocabulary encodes to it. A vocabulary is frozen from construction on:
    models, baselines and evaluation share one instance, and a vocabulary that
    grew after a model was fitted would silently change the meaning of ids.

    ``itos`` is exposed as a tuple and ``stoi`` as a read-only mapping (they
    index and iterate like the list/dict they wrap) so that they cannot be
    mutated by accident.

    Attributes:
        counts: token frequencies seen by :meth:`build`, aligned with ``itos``
            (``counts[0]`` is the number of tokens that mapped to ``<unk>``),
            or ``None`` when the vocabulary was made from a word list.
        drop_unknown: when ``True`` (a vocabulary made by filtering, like gensim's
            ``filter_extremes``), :meth:`encode` drops out-of-vocabulary words instead of
            mapping them to ``<unk>``, so that test text is filtered like the training text.
    """

    __slots__ = ("_itos", "_stoi", "_stoi_dict", "_unk_token", "_drop_unknown", "_counts")

    def __init__(
        self,
        words: Sequence[str],
        *,
        unk_token: str = UNK_TOKEN,
        counts: Sequence[int] | None = None,
        drop_unknown: bool = False,
    ) -> None:
        """Make a vocabulary from an ordered word list.

        Args:
            words: the words for ids ``1..len(words)``, in id order. If the first
                entry equals ``unk_token`` it is taken as id 0 (so ``itos`` of an
                existing vocabulary round-trips); ``unk_token`` must not appear
                anywhere else.
            unk_token: the unknown-word token, stored at id 0.
            counts: optional frequencies aligned with the final ``itos``.
            drop_unknown: encode drops out-of-vocabulary words (see the class docstring).

        Raises:
            ValueError: duplicate words, non-string or empty words, or counts of
                the wrong length.
        """
        if not isinstance(unk_token, str) or not unk_token:
            raise ValueError("unk_token must be a non-empty string")
        words = list(words)
        if words and words[0] == unk_token:
            words = words[1:]
        itos = (unk_token, *words)
        stoi: dict[str, int] = {}
        for i, w in enumerate(itos):
            if not isinstance(w, str) or not w:
                raise ValueError(f"vocabulary entry {i} is not a non-empty string: {w!r}")
            if w in stoi:
                raise ValueError(f"duplicate vocabulary entry {w!r} at ids {stoi[w]} and {i}")
            stoi[w] = i
        if counts is not None:
            counts = tuple(int(c) for c in counts)
            if len(counts) != len(itos):
                raise ValueError(
                    f"counts has {len(counts)} entries but the vocabulary has {len(itos)}"
                )
        self._itos: tuple[str, ...] = itos
        self._stoi_dict = stoi  # private; encode() uses it directly (proxy lookups are slower)
        self._stoi: Mapping[str, int] = MappingProxyType(stoi)
        self._unk_token = unk_token
        self._drop_unknown = bool(drop_unknown)
        self._counts: tuple[int, ...] | None = counts  # set last: __setattr__ freezes after it

    # ------------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        token_lists: Iterable[Iterable[str]],
        max_size: int | None = 5000,
        min_count: int = 1,
        *,
        unk_token: str = UNK_TOKEN,
    ) -> "Vocabulary":
        """Keep the most frequent words of a tokenized corpus.

        Ordering (and hence ids) is deterministic: by count, descending; ties
        are broken by first appearance in ``token_lists`` (earlier first). The
        result therefore depends only on the token stream, not on hash seeds.

        Args:
            token_lists: iterable of documents, each an iterable of tokens
                (consumed once, so a generator is fine).
            max_size: maximum vocabulary size *including* ``<unk>``, so
                ``len(vocab) <= max_size``; ``None`` keeps every word.
            min_count: words seen fewer times than this are dropped.
            unk_token: the unknown-word token (id 0). Occurrences of it in the
                input are counted as unknown, not as a word.

        Returns:
            A frozen vocabulary with ``counts`` filled in.
        """
        if max_size is not None and (not isinstance(max_size, int) or max_size < 1):
            raise ValueError(f"max_size must be a positive int or None (it includes <unk>), got {max_size!r}")
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be an int >= 1, got {min_count!r}")
        counter: Counter[str] = Counter()
        for tokens in token_lists:
            if isinstance(tokens, str):
                # A bare string would be counted character by character.
                raise TypeError("token_lists must contain token lists, not strings; tokenize first")
            counter.update(tokens)
        n_unk = counter.pop(unk_token, 0)
        # Counter keeps insertion (= first appearance) order and sorted() is
        # stable, so equal counts stay in first-appearance order.
        ranked = sorted(
            ((w, c) for w, c in counter.items() if c >= min_count), key=lambda wc: -wc[1]
        )
        if max_size is not None:
            ranked = ranked[: max_size - 1]
        kept = {w for w, _ in ranked}
        n_unk += sum(c for w, c in counter.items() if w not in kept)
        return cls(
            [w for w, _ in ranked],
            unk_token=unk_token,
            counts=[n_unk, *(c for _, c in ranked)],
        )

    # ------------------------------------------------------------- accessors
    @property
    def itos(self) -> tuple[str, ...]:
        """Id -> word, length ``len(self)``; ``itos[0]`` is ``<unk>``."""
        return self._itos

    @property
    def stoi(self) -> Mapping[str, int]:
        """Word -> id (read-only mapping)."""
        return self._stoi

    @property
    def unk_id(self) -> int:
        """Id of the unknown token (always 0)."""
        return 0

    @property
    def unk_token(self) -> str:
        """The unknown token string."""
        return self._unk_token

    @property
    def counts(self) -> tuple[int, ...] | None:
        """Build-time frequencies aligned with ``itos`` (``None`` if unknown)."""
        return self._counts

    @property
    def drop_unknown(self) -> bool:
        """Whether :meth:`encode` drops out-of-vocabulary words (``True`` after filtering)."""
        return self._drop_unknown

    @property
    def frozen(self) -> bool:
        """Always ``True``: vocabularies never change after construction."""
        return True

    def add(self, word: str) -> int:
        """Always raises: a vocabulary is frozen once built.

        Raises:
            RuntimeError: always; build a new vocabulary instead.
        """
        raise RuntimeError(
            f"cannot add {word!r}: Vocabulary is frozen; build a new one with Vocabulary.build"
        )

    def __setattr__(self, name: str, value: Any) -> None:
        # Only __init__ may set the slots; afterwards the object is read-only.
        if hasattr(self, "_counts"):
            raise AttributeError(f"Vocabulary is frozen; cannot set {name!r}")
        object.__setattr__(self, name, value)

    def __reduce__(self):
        # The frozen __setattr__ would block pickle's default slot restoring.
        return (Vocabulary.from_dict, (self.to_dict(),))

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, word: object) -> bool:
        return word in self._stoi

    def __iter__(self):
        return iter(self._itos)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        # Counts are build-time statistics, not part of the mapping's identity.
        return self._itos == other._itos and self._drop_unknown == other._drop_unknown

    def __hash__(self) -> int:
        return hash((self._itos, self._drop_unknown))

    def __repr__(self) -> str:
        head = ", ".join(repr(w) for w in self._itos[1:6])
        more = ", ..." if len(self) > 6 else ""
        return f"Vocabulary(size={len(self)}, words=[{head}{more}])"

    # --------------------------------------------------------------- coding
    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Map tokens to ids; words not in the vocabulary map to ``unk_id`` (0), or are
        dropped when :attr:`drop_unknown` is set.

        Args:
            tokens: a token sequence of length T.

        Returns:
            A list of T ints in ``[0, len(self))`` (fewer with :attr:`drop_unknown`).
        """
        if isinstance(tokens, str):
            raise TypeError("encode expects a list of tokens, not a string; tokenize first")
        if self._drop_unknown:
            stoi = self._stoi_dict
            return [stoi[t] for t in tokens if t in stoi]
        get = self._stoi_dict.get
        return [get(t, 0) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Map ids back to words.

        Args:
            ids: T ids (list, 1-D tensor or array).

        Returns:
            A list of T words (``<unk>`` for id 0).

        Raises:
            IndexError: an id outside ``[0, len(self))``.
        """
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        itos, n = self._itos, len(self._itos)
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise IndexError(f"token id {i} outside [0, {n})")
            out.append(itos[i])
        return out

    # ---------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description (``from_dict`` inverts it)."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "unk_token": self._unk_token,
            "itos": list(self._itos),
            "counts": None if self._counts is None else list(self._counts),
            "drop_unknown": self._drop_unknown,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Vocabulary":
        """Rebuild a vocabulary from :meth:`to_dict` output.

        Raises:
            ValueError: wrong format tag, unsupported version, or inconsistent data.
        """
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            raise ValueError(f"not a serialised Vocabulary (expected format {_FORMAT!r})")
        if data.get("version") != _VERSION:
            raise ValueError(f"unsupported Vocabulary version {data.get('version')!r}")
        itos = data.get("itos")
        unk = data.get("unk_token", UNK_TOKEN)
        if not isinstance(itos, list) or not itos or itos[0] != unk:
            raise ValueError("serialised Vocabulary must have itos[0] == unk_token")
        # drop_unknown is absent from vocabularies saved before filtering existed.
        return cls(itos, unk_token=unk, counts=data.get("counts"), drop_unknown=bool(data.get("drop_unknown", False)))

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as UTF-8 JSON.

        The file is written to a temporary name and renamed, so a crash never
        leaves a truncated vocabulary behind.
        """
        path = Path(path)
        text = json.dumps(self.to_dict(), ensure_ascii=False)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent or ".")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        """Read a vocabulary written by :meth:`save`.

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: the file is not valid vocabulary JSON.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a valid vocabulary JSON file ({e})") from e
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
