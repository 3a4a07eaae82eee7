"""Readers for the text layouts a user is likely to have on disk.

Supported layouts (auto-detected by :func:`read_texts`):

* ``aclimdb_dir``: the official IMDB directory ``aclImdb/{train,test}/{pos,neg}/*.txt``
  (pass ``aclImdb`` itself or its parent; ``unsup`` is ignored), or a single
  split directory holding ``pos/`` and ``neg/``;
* ``aclimdb_tar``: the ``aclImdb_v1.tar.gz`` archive, streamed with ``tarfile``
  (nothing is extracted to disk); a tar of other ``.txt`` files is read as
  ``txt_tar``, one document per member;
* ``csv``: a CSV with a header naming a text column (``review`` or ``text``) and
  optionally a label column (``sentiment`` or ``label``), as in the widely shared
  50,000-review IMDB CSV; quoted multi-line fields are handled by :mod:`csv`;
* ``txt_dir``: a directory of ``.txt`` files, one document per file;
* ``lines``: any other text file, one document per line (blank lines skipped).

Files are read in a deterministic order (sorted by path), so the same data
always gives the same documents in the same order. Bytes that do not decode
are replaced by U+FFFD and counted (see :class:`ReadStats`), never fatal.
"""

from __future__ import annotations

import codecs
import csv
import errno
import os
import sys
import tarfile
import threading
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..config import VocabConfig
from .corpus import Corpus
from .tokenize import tokenize
from .vocabulary import Vocabulary

_VOCAB = VocabConfig()  # the defaults (pyro_ssl/config.py)

__all__ = ["ReadStats", "read_texts", "load_corpus", "gensim_corpus_texts", "check_text_file"]

_SPLITS = ("train", "test")
# Folder name -> label, using the vocabulary of the IMDB CSV so that every
# layout yields the same label strings.
_ACL_LABELS = {"neg": "negative", "pos": "positive"}
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_CSV_TEXT_COLUMNS = ("review", "text")
_CSV_LABEL_COLUMNS = ("sentiment", "label")
_EXPECTED = (
    "expected an aclImdb directory (train|test/pos|neg/*.txt), an aclImdb .tar.gz archive, "
    "a CSV with a 'review' (or 'text') column, a directory of .txt files, "
    "or a text file with one document per line"
)


@dataclass(frozen=True)
class ReadStats:
    """What :func:`read_texts` read.

    Attributes:
        path: the path given.
        layout: detected layout (``aclimdb_dir``, ``aclimdb_tar``, ``txt_tar``,
            ``csv``, ``txt_dir`` or ``lines``).
        num_documents: documents returned.
        num_files: files (or archive members) decoded.
        num_replaced_bytes: undecodable bytes replaced by U+FFFD.
        num_files_with_decode_errors: files/members that had such bytes.
        num_skipped_empty: empty or whitespace-only documents (or blank lines) skipped.
    """

    path: str
    layout: str
    num_documents: int
    num_files: int
    num_replaced_bytes: int
    num_files_with_decode_errors: int
    num_skipped_empty: int


# ---------------------------------------------------------------- decoding
class _ThreadCounter(threading.local):
    bad_bytes = 0


_COUNTER = _ThreadCounter()
_ERRORS = "pyro_ssl.replace_and_count"


def _replace_and_count(exc: UnicodeError) -> tuple[str, int]:
    # Same output as errors="replace", but the number of bad bytes is recorded.
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _COUNTER.bad_bytes += exc.end - exc.start
    return "\ufffd", exc.end


codecs.register_error(_ERRORS, _replace_and_count)


class _Decoder:
    """Decodes files with replacement while accumulating statistics."""

    def __init__(self, encoding: str) -> None:
        codecs.lookup(encoding)  # fail early, with LookupError, on a bad encoding name
        self.encoding = encoding
        self.num_files = 0
        self.replaced_bytes = 0
        self.files_with_errors = 0

    def _account(self, before: int) -> None:
        n = _COUNTER.bad_bytes - before
        self.num_files += 1
        if n:
            self.replaced_bytes += n
            self.files_with_errors += 1

    def decode(self, data: bytes) -> str:
        before = _COUNTER.bad_bytes
        text = data.decode(self.encoding, errors=_ERRORS)
        self._account(before)
        return text[1:] if text.startswith("\ufeff") else text

    def open_lines(self, path: Path, newline: str | None = None) -> Iterator[str]:
        """Stream a text file; statistics are recorded when the generator closes."""
        before = _COUNTER.bad_bytes
        try:
            with open(path, encoding=self.encoding, errors=_ERRORS, newline=newline) as f:
                first = True
                for line in f:
                    if first:
                        first = False
                        if line.startswith("\ufeff"):
                            line = line[1:]
                    yield line
        finally:
            self._account(before)

    def warn(self, path: Path) -> None:
        if self.replaced_bytes:
            warnings.warn(
                f"{path}: replaced {self.replaced_bytes} undecodable byte(s) in "
                f"{self.files_with_errors} file(s) with U+FFFD (encoding={self.encoding!r})",
                UnicodeWarning,
                stacklevel=3,
            )


# ------------------------------------------------------------ layout logic
def _is_acl_root(d: Path) -> bool:
    return any((d / s / lab).is_dir() for s in _SPLITS for lab in _ACL_LABELS)


def _is_acl_split(d: Path) -> bool:
    return any((d / lab).is_dir() for lab in _ACL_LABELS)


def _txt_files(d: Path) -> list[Path]:
    with os.scandir(d) as it:
        names = [e.name for e in it if e.name.endswith(".txt") and e.is_file()]
    return [d / n for n in sorted(names)]


def _looks_binary(path: Path, encoding: str) -> str | None:
    """A reason string if ``path`` is clearly not text, else None."""
    with open(path, "rb") as f:
        head = f.read(8192)
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file that is not a tar archive (decompress it first)"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (extract it first)"
    # UTF-16/32 text legitimately contains NUL bytes.
    if b"\x00" in head and not codecs.lookup(encoding).name.startswith(("utf-16", "utf-32")):
        return "a binary file (it contains NUL bytes)"
    return None


def check_text_file(path: str | os.PathLike, encoding: str = "utf-8") -> Path:
    """``path`` as a readable text file, or a ``ValueError`` / ``FileNotFoundError`` saying why not
    (missing, a directory, a binary file such as an executable, an archive)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path} is not a regular file; give a text file with one document per line")
    reason = _looks_binary(path, encoding)
    if reason:
        raise ValueError(f"{path}: {reason}; give a text file with one document per line")
    return path


def _detect(path: Path, encoding: str) -> tuple[str, Path]:
    """Return (layout, root) for an existing path, or raise ValueError."""
    if path.is_dir():
        if (path / "aclImdb").is_dir() and _is_acl_root(path / "aclImdb"):
            return "aclimdb_dir", path / "aclImdb"
        if _is_acl_root(path):
            return "aclimdb_dir", path
        if _is_acl_split(path):
            return "aclimdb_split_dir", path
        if _txt_files(path):
            return "txt_dir", path
        raise ValueError(f"{path}: directory has no .txt files and no aclImdb structure; {_EXPECTED}")
    name = path.name.lower()
    if name.endswith(_TAR_SUFFIXES):
        return "tar", path
    if name.endswith((".csv", ".tsv")):
        return "csv", path
    if tarfile.is_tarfile(path):
        return "tar", path
    reason = _looks_binary(path, encoding)
    if reason:
        raise ValueError(f"{path}: {reason}; {_EXPECTED}")
    return "lines", path


# ----------------------------------------------------------------- readers
# Each reader yields (text, label) pairs in the final order; read_texts strips,
# skips empty documents and applies the limit, so readers may stop early.
_Docs = Iterator[tuple[str, Any]]


def _read_acl_files(files: list[tuple[Path, str]], dec: _Decoder) -> _Docs:
    for p, label in files:
        yield dec.decode(p.read_bytes()), label


def _acl_split_files(split_dir: Path) -> list[tuple[Path, str]]:
    files = []
    for lab, label in _ACL_LABELS.items():
        if (split_dir / lab).is_dir():
            files += [(p, label) for p in _txt_files(split_dir / lab)]
    files.sort(key=lambda pl: str(pl[0]))
    return files


def _acl_dir_files(root: Path, splits: tuple[str, ...]) -> list[tuple[Path, str]]:
    files: list[tuple[Path, str]] = []
    for s in splits:
        part = _acl_split_files(root / s)
        if not part and len(splits) == 1:
            raise ValueError(
                f"{root}: no review files for split {s!r} "
                f"(expected {root / s / 'pos'}/*.txt and {root / s / 'neg'}/*.txt)"
            )
        files += part
    if not files:
        raise ValueError(f"{root}: no review files under train|test/pos|neg; {_EXPECTED}")
    return files


def _read_tar(path: Path, splits: tuple[str, ...], dec: _Decoder, layout_out: list[str]) -> _Docs:
    """Stream the archive once, keeping only the wanted review members in memory.

    Members are collected and sorted by name because archive order is not
    guaranteed; seeking back in a gzip stream would mean re-decompressing it.
    """
    wanted: dict[tuple[int, str], tuple[bytes, str]] = {}
    found_acl = False
    other_txt: list[str] = []
    try:
        with tarfile.open(path, mode="r|*") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                parts = PurePosixPath(m.name).parts
                if (
                    len(parts) >= 3
                    and parts[-1].endswith(".txt")
                    and parts[-2] in _ACL_LABELS
                    and parts[-3] in _SPLITS
                ):
                    found_acl = True
                    if parts[-3] in splits:
                        f = tf.extractfile(m)
                        assert f is not None  # regular file
                        wanted[(splits.index(parts[-3]), m.name)] = (f.read(), _ACL_LABELS[parts[-2]])
                elif parts and parts[-1].endswith(".txt") and "unsup" not in parts:
                    other_txt.append(m.name)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise ValueError(f"{path}: not a readable tar archive ({e}); {_EXPECTED}") from e
    if found_acl:
        if not wanted:
            raise ValueError(f"{path}: archive has no aclImdb review files for split(s) {list(splits)}")
        layout_out.append("aclimdb_tar")
        for key in sorted(wanted):
            data, label = wanted.pop(key)
            yield dec.decode(data), label
        return
    if not other_txt:
        raise ValueError(
            f"{path}: archive contains no aclImdb review files "
            f"(members like aclImdb/train/pos/0_9.txt) and no .txt files"
        )
    # Rare fallback (a tar of plain .txt files): a second streaming pass reads
    # only the needed members, so the first pass never buffered non-review text.
    layout_out.append("txt_tar")
    names = set(other_txt)
    blobs: dict[str, bytes] = {}
    with tarfile.open(path, mode="r|*") as tf:
        for m in tf:
            if m.isfile() and m.name in names:
                f = tf.extractfile(m)
                assert f is not None
                blobs[m.name] = f.read()
    for name in sorted(blobs):
        yield dec.decode(blobs.pop(name)), None


def _read_csv(path: Path, dec: _Decoder, need_labels: bool) -> _Docs:
    old_limit = csv.field_size_limit()
    # Reviews can exceed csv's default 128 KiB field limit; restore it afterwards
    # because the limit is process-global.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    lines = dec.open_lines(path, newline="")
    try:
        reader = csv.reader(lines)
        try:
            header = next(reader, None)
        except csv.Error as e:
            raise ValueError(f"{path}: cannot parse CSV header ({e})") from e
        if header is None:
            return
        names = [h.strip().lower() for h in header]
        text_col = next((names.index(c) for c in _CSV_TEXT_COLUMNS if c in names), None)
        if text_col is None:
            raise ValueError(
                f"{path}: CSV header {header!r} has no text column; expected a column named "
                f"{' or '.join(repr(c) for c in _CSV_TEXT_COLUMNS)} (IMDB layout: review,sentiment)"
            )
        label_col = next((names.index(c) for c in _CSV_LABEL_COLUMNS if c in names), None)
        if need_labels and label_col is None:
            raise ValueError(
                f"{path}: labels requested but the CSV header {header!r} has no "
                f"{' or '.join(repr(c) for c in _CSV_LABEL_COLUMNS)} column"
            )
        width = max(text_col, label_col or 0) + 1
        try:
            for row in reader:
                if not row:
                    continue
                if len(row) < width:
                    raise ValueError(
                        f"{path}: CSV record ending at line {reader.line_num} has {len(row)} "
                        f"field(s), expected at least {width}"
                    )
                yield row[text_col], (row[label_col].strip() if label_col is not None else None)
        except csv.Error as e:
            raise ValueError(f"{path}: malformed CSV near line {reader.line_num} ({e})") from e
    finally:
        lines.close()
        csv.field_size_limit(old_limit)


def _read_lines(path: Path, dec: _Decoder) -> _Docs:
    lines = dec.open_lines(path)
    try:
        for line in lines:
            yield line, None
    finally:
        lines.close()


def _read_txt_dir(path: Path, dec: _Decoder) -> _Docs:
    for p in _txt_files(path):
        yield dec.decode(p.read_bytes()), None


# ---------------------------------------------------------------- public API
def read_texts(
    path: str | os.PathLike,
    *,
    split: str = "train",
    labels: bool = False,
    limit: int | None = None,
    encoding: str = "utf-8",
    return_stats: bool = False,
) -> Any:
    """Read raw documents from any supported layout (see the module docstring).

    Args:
        path: file or directory.
        split: ``"train"``, ``"test"`` or ``"all"`` (train, then test); used by
            the aclImdb layouts only, ignored by the others.
        labels: also return one label per document. aclImdb folders map to the
            CSV's strings (``neg`` -> ``"negative"``, ``pos`` -> ``"positive"``);
            a CSV needs a ``sentiment``/``label`` column. Other layouts have no
            labels and raise ValueError.
        limit: return at most this many documents: the first ones in the
            deterministic order, so for aclImdb (sorted by path) that is
            negatives before positives within a split.
        encoding: text encoding; undecodable bytes become U+FFFD, are counted in
            the stats and reported once with a ``UnicodeWarning``.
        return_stats: also return a :class:`ReadStats`.

    Returns:
        ``texts`` (list of D str); ``(texts, labels)`` with ``labels=True``;
        with ``return_stats=True`` a :class:`ReadStats` is appended to that
        (``(texts, stats)`` or ``(texts, labels, stats)``). Documents are
        stripped of surrounding whitespace; empty ones are skipped.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unknown layout, unusable CSV header, unknown ``split``,
            labels unavailable, or no documents at all.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no such file or directory", str(path))
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if limit is not None and (isinstance(limit, bool) or int(limit) < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    splits = _SPLITS if split == "all" else (split,)
    dec = _Decoder(encoding)
    layout, root = _detect(path, encoding)
    if labels and layout in ("lines", "txt_dir"):
        raise ValueError(f"{path}: labels=True but the {layout!r} layout carries no labels")

    tar_layout: list[str] = []
    if layout == "aclimdb_dir":
        docs = _read_acl_files(_acl_dir_files(root, splits), dec)
    elif layout == "aclimdb_split_dir":
        files = _acl_split_files(root)
        if not files:
            raise ValueError(f"{root}: pos/ and neg/ hold no .txt files; {_EXPECTED}")
        docs = _read_acl_files(files, dec)
    elif layout == "tar":
        docs = _read_tar(root, splits, dec, tar_layout)
    elif layout == "csv":
        docs = _read_csv(root, dec, labels)
    elif layout == "txt_dir":
        docs = _read_txt_dir(root, dec)
    else:
        docs = _read_lines(root, dec)

    texts: list[str] = []
    labs: list[Any] = []
    skipped = 0
    try:
        for text, label in docs:
            text = text.strip()
            if not text:
                skipped += 1
                continue
            texts.append(text)
            labs.append(label)
            if limit is not None and len(texts) >= limit:
                break
    finally:
        docs.close()  # runs the readers' cleanup (file handles, csv limit) on early exit
    if tar_layout:
        layout = tar_layout[0]
        if labels and layout == "txt_tar":
            raise ValueError(f"{path}: labels=True but the archive has no aclImdb pos/neg folders")
    if not texts:
        raise ValueError(f"{path}: no documents found (layout {layout!r}, {skipped} empty skipped)")
    dec.warn(path)

    out: list[Any] = [texts]
    if labels:
        out.append(labs)
    if return_stats:
        out.append(
            ReadStats(
                path=str(path),
                layout=layout,
                num_documents=len(texts),
                num_files=dec.num_files,
                num_replaced_bytes=dec.replaced_bytes,
                num_files_with_decode_errors=dec.files_with_errors,
                num_skipped_empty=skipped,
            )
        )
    return texts if len(out) == 1 else tuple(out)


def load_corpus(
    path: str | os.PathLike,
    vocab_size: int | None = _VOCAB.vocab_size,
    min_count: int = _VOCAB.min_count,
    vocab: Vocabulary | None = None,
    *,
    tokenizer: Callable[[str], list[str]] = tokenize,
    no_below: int | None = _VOCAB.no_below,
    no_above: float | None = _VOCAB.no_above,
    keep_n: int | None = _VOCAB.keep_n,
    stopwords: bool | Iterable[str] | None = _VOCAB.stopwords,
    **read_kwargs: Any,
) -> Corpus:
    """Read, tokenize and encode documents into a :class:`Corpus`.

    Args:
        path: any layout accepted by :func:`read_texts`.
        vocab_size: maximum vocabulary size including ``<unk>`` (when building).
        min_count: minimum word frequency (when building).
        vocab: encode with this vocabulary instead of building one (use the
            training vocabulary for test data).
        tokenizer: text -> tokens.
        no_below, no_above, keep_n, stopwords: gensim-style vocabulary filtering when
            building (:meth:`Corpus.from_texts`, :meth:`Corpus.filter_extremes`; off by
            default, :class:`~pyro_ssl.config.VocabConfig`).
        **read_kwargs: passed to :func:`read_texts` (``split``, ``labels``,
            ``limit``, ``encoding``); with ``labels=True`` the corpus carries them.
    """
    if "return_stats" in read_kwargs:
        raise TypeError("load_corpus does not take return_stats; call read_texts for statistics")
    out = read_texts(path, **read_kwargs)
    texts, labs = out if read_kwargs.get("labels") else (out, None)
    return Corpus.from_texts(
        texts, vocab=vocab, vocab_size=vocab_size, min_count=min_count, labels=labs, tokenizer=tokenizer,
        no_below=no_below, no_above=no_above, keep_n=keep_n, stopwords=stopwords,
    )


# name -> (file in gensim/test/test_data, its encoding). lee.cor is Latin-1
# (it contains a raw 0xA3 pound sign), lee_background.cor is plain UTF-8.
_GENSIM_DATA = {
    "lee_background": ("lee_background.cor", "utf-8"),
    "lee": ("lee_background.cor", "utf-8"),
    "lee_test": ("lee.cor", "latin-1"),
}


def gensim_corpus_texts(name: str = "lee_background", encoding: str | None = None) -> list[str]:
    """Documents of a corpus bundled with gensim's test data (no network needed).

    Args:
        name: ``"lee_background"`` (alias ``"lee"``; 300 news articles),
            ``"lee_test"`` (the 50-document Lee test set), or a ``*.cor`` file
            name from ``gensim/test/test_data``.
        encoding: override the file's known encoding (UTF-8 for unknown files).

    Returns:
        One string per non-blank line of the file.
    """
    if name in _GENSIM_DATA:
        fname, default_encoding = _GENSIM_DATA[name]
    elif name.endswith(".cor"):
        fname, default_encoding = name, "utf-8"
    else:
        raise ValueError(
            f"unknown gensim corpus {name!r}; known: {sorted(_GENSIM_DATA)} or a '*.cor' file name"
        )
    # Imported lazily: gensim is slow to import and only needed here.
    from gensim.test.utils import datapath

    return read_texts(datapath(fname), encoding=encoding or default_encoding)
