"""A small, deterministic word tokenizer for review-style English text.

The same tokenizer must be used by every model in a comparison (SPEC section 4),
so it is deliberately simple, dependency-free and stable across versions.
"""

from __future__ import annotations

import html
import re
import unicodedata

__all__ = ["tokenize"]

# A tag name must follow "<" directly (as in HTML), so that text such as
# "a < b > c" or "<3" is kept rather than mistaken for markup.
_TAG_RE = re.compile(r"</?[a-z][a-z0-9]*(?:\s[^<>]*)?/?>")

# Words are runs of letters/digits, optionally joined by single internal
# apostrophes ("don't", "rock'n'roll"). Any other non-space character becomes
# a one-character token, so punctuation is never silently dropped and "!!!"
# yields three tokens.
_TOKEN_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)*|\S")

# Typographic apostrophes would otherwise split "don’t" differently from "don't".
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


def tokenize(text: str) -> list[str]:
    """Split raw text into lowercase word and punctuation tokens.

    Steps: Unicode NFC normalisation, lowercasing, removal of simple HTML tags
    (``<br />``, ``<br/>``, ``<br>``, ``<i>``, ``</a>``, ... each replaced by a
    space), unescaping of HTML entities (``&amp;`` -> ``&``), then splitting into
    words (letters/digits with internal apostrophes kept: ``"don't"``) and
    single-character punctuation tokens.

    Args:
        text: one document.

    Returns:
        The tokens, in order; an empty list for empty or whitespace-only text.

    Example:
        >>> tokenize("Great movie!<br /><br />I DON'T regret it...")
        ['great', 'movie', '!', 'i', "don't", 'regret', 'it', '.', '.', '.']
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize expects a str, got {type(text).__name__}")
    text = text.lower()
    if "<" in text:
        text = _TAG_RE.sub(" ", text)
    if "&" in text:
        # After tag removal, so that an escaped "&lt;b&gt;" stays visible text.
        text = html.unescape(text)
    if not text.isascii():  # most reviews are ASCII: skip the slow Unicode steps
        # NFC so that a decomposed "e" + combining accent is one word character.
        text = unicodedata.normalize("NFC", text).translate(_APOSTROPHES)
    return _TOKEN_RE.findall(text)
