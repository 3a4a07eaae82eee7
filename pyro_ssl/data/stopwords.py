"""Stopword lists for vocabulary filtering (:meth:`Corpus.filter_extremes`).

``stopwords=True`` means gensim's English list (``gensim.parsing.preprocessing.STOPWORDS``,
337 words) plus every punctuation-only token: the tokenizer keeps punctuation as tokens
(:func:`~pyro_ssl.data.tokenize`), and a topic model's top words should not be ``,`` and ``.``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["english_stopwords", "is_punctuation", "resolve_stopwords"]

_WORDLIKE = re.compile(r"[^\W_]")


def english_stopwords() -> frozenset[str]:
    """gensim's English stopword list."""
    # Imported here: gensim is slow to import and only needed when filtering asks for it.
    from gensim.parsing.preprocessing import STOPWORDS

    return frozenset(STOPWORDS)


def is_punctuation(token: str) -> bool:
    """A token without a letter or digit (``","``, ``"--"``, ``"$"``)."""
    return _WORDLIKE.search(token) is None


def resolve_stopwords(stopwords: bool | Iterable[str] | None):
    """``(words, drop_punctuation)`` for a ``stopwords`` option: ``None``/``False`` (none),
    ``True`` (gensim's English list and punctuation), or a collection of words (just those)."""
    if stopwords is None or stopwords is False:
        return frozenset(), False
    if stopwords is True:
        return english_stopwords(), True
    if isinstance(stopwords, str):
        raise TypeError("stopwords must be True, False or a collection of words, not a single string")
    return frozenset(stopwords), False
