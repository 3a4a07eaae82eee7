"""Topic quality: coherence via gensim's ``CoherenceModel`` and topic diversity (SPEC section 4).

Coherence is not re-implemented here: :func:`coherence` hands the topics' top words and the
tokenized reference documents to :class:`gensim.models.coherencemodel.CoherenceModel` under a
registered measure name (``"c_npmi"``, ``"c_v"``, ``"u_mass"``, ``"c_uci"``), so numbers are
gensim's and comparable with anything else computed by it. What this module adds:

* the same reference texts for every model (the caller passes them; in
  ``experiments/comparison.py`` they are the training prefixes decoded with the shared vocabulary);
* ``<unk>`` is removed from the top words before scoring: it is the bucket of all
  out-of-vocabulary words, not a word, and its co-occurrence with everything would make a topic
  that happens to rank it highly look coherent (or incoherent) for no linguistic reason.
  The reference texts keep their ``<unk>`` tokens (they only count as a word of the
  dictionary, never as a topic word);
* topic words absent from the reference dictionary are skipped (gensim would raise on them);
  a topic left with fewer than two scorable words gets ``nan`` and is excluded from the mean
  (``num_scored`` says how many topics counted).

:func:`topic_diversity` is the share of unique words among all topics' top-``n`` words
(Dieng et al., 2020): 1 when no two topics share a top word, ``1/K`` when all topics are the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["coherence", "topic_diversity", "clean_topics", "MEASURES"]

#: gensim measure names accepted by :func:`coherence`.
MEASURES = ("c_npmi", "c_v", "u_mass", "c_uci")

UNK_TOKENS = ("<unk>",)


def clean_topics(top_words: Sequence[Sequence[str]], topn: int = 10, exclude=UNK_TOKENS,
                 dictionary=None) -> list[list[str]]:
    """Per topic, its first ``topn`` words after dropping ``exclude`` (``<unk>``), duplicates and,
    when a gensim ``dictionary`` is given, words it does not contain."""
    excluded = set(exclude or ())
    out = []
    for words in top_words:
        seen, kept = set(), []
        for w in words:
            w = str(w)
            if w in excluded or w in seen:
                continue
            if dictionary is not None and w not in dictionary.token2id:
                continue
            seen.add(w)
            kept.append(w)
            if len(kept) >= topn:
                break
        out.append(kept)
    return out


def coherence(
    top_words: Sequence[Sequence[str]],
    texts: Sequence[Sequence[str]],
    measure: str = "c_npmi",
    topn: int = 10,
    *,
    exclude=UNK_TOKENS,
    window_size: int | None = None,
) -> dict:
    """Topic coherence of word lists on reference documents, computed by gensim.

    Args:
        top_words: per topic, its words in decreasing probability (pass more than ``topn``
            so that dropped words can be replaced by the next ones).
        texts: tokenized reference documents (the same for every model compared).
        measure: a gensim ``CoherenceModel`` measure: ``"c_npmi"``, ``"c_v"``, ``"u_mass"``
            or ``"c_uci"``.
        topn: words per topic that are scored.
        exclude: words never scored (default ``("<unk>",)``; see the module docstring).
        window_size: sliding-window size for the window-based measures (gensim's default
            for the measure when ``None``: 110 for ``c_v``, 10 for ``c_npmi``/``c_uci``).

    Returns:
        ``{"measure", "mean", "per_topic", "num_scored", "topn", "words"}``: ``per_topic`` has
        one value per input topic (``nan`` where fewer than two words could be scored),
        ``mean`` is the mean over the scored topics (``nan`` if none), ``words`` are the words
        actually scored.
    """
    from gensim.corpora import Dictionary
    from gensim.models.coherencemodel import CoherenceModel

    if measure not in MEASURES:
        raise ValueError(f"unknown coherence measure {measure!r}; choose one of {MEASURES}")
    if topn < 2:
        raise ValueError("topn must be >= 2 (coherence scores word pairs)")
    texts = [[str(w) for w in doc] for doc in texts]
    if not any(texts):
        raise ValueError("coherence needs non-empty reference texts")
    dictionary = Dictionary(texts)
    words = clean_topics(top_words, topn, exclude, dictionary)
    scorable = [i for i, w in enumerate(words) if len(w) >= 2]
    per_topic = [math.nan] * len(words)
    if scorable:
        kwargs = dict(topics=[words[i] for i in scorable], texts=texts, dictionary=dictionary,
                      coherence=measure, topn=topn, processes=1)
        if window_size is not None:
            kwargs["window_size"] = int(window_size)
        cm = CoherenceModel(**kwargs)
        for i, v in zip(scorable, cm.get_coherence_per_topic()):
            per_topic[i] = float(v)
    finite = [v for v in per_topic if math.isfinite(v)]
    mean = sum(finite) / len(finite) if finite else math.nan
    return {"measure": measure, "mean": mean, "per_topic": per_topic, "num_scored": len(finite),
            "topn": int(topn), "words": words}


def topic_diversity(top_words: Sequence[Sequence[str]], topn: int = 25, *, exclude=UNK_TOKENS) -> float:
    """Share of unique words among all topics' top-``topn`` words.

    ``exclude`` words (``<unk>``) are dropped first, as for :func:`coherence`. Returns
    ``unique / total`` over the kept words (``nan`` for no words at all).
    """
    words = clean_topics(top_words, topn, exclude)
    total = sum(len(w) for w in words)
    if total == 0:
        return math.nan
    return len({w for ws in words for w in ws}) / total
