"""The evaluation protocol's data: document-level train / validation / test splits (issue 17).

Every model in ``docs/results.md`` is trained, tuned and scored on one :class:`ProtocolSplit`:

* documents with at least ``T1 + T2`` tokens are shuffled once (``seed``) and cut into
  ``num_train`` training, ``num_val`` validation and ``num_test`` test reviews, disjoint;
* the vocabulary is built from the *training text only* (the ``T1``-token prefixes of the
  training reviews, the tokens every model trains on), words seen fewer than ``min_count``
  times there become ``<unk>``; nothing scored ever shapes it;
* every model trains on the same ``train`` prefixes;
* ``val``: validation reviews (``T1 + T2`` tokens). Every hyperparameter of every model is
  chosen by completion perplexity on them (first ``T1`` observed, next ``T2`` scored);
* test, scored once at the end, two tasks and a likelihood:
  ``in_doc`` the seed's in-document completion (tokens ``T1 .. T1+T2`` of the *training*
  reviews given their first ``T1``), ``unseen`` completion of the test reviews, and the
  per-token log likelihood of the whole test reviews (``T1 + T2`` tokens each).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .corpus import Corpus
from .tokenize import tokenize
from .vocabulary import Vocabulary

__all__ = ["ProtocolSplit", "protocol_split"]


@dataclass(frozen=True, eq=False)
class ProtocolSplit:
    """Training prefixes, validation and test documents of the protocol.

    Attributes:
        train: ``N`` training documents, each the first ``T1`` tokens of a training review
            (the only text any model is fitted on, and the only text the vocabulary saw).
        in_doc: ``N`` training reviews truncated to ``T1 + T2`` tokens (``in_doc[i][:T1]`` is
            ``train[i]``): the in-document completion task scores tokens ``T1:`` of these.
        val: ``M`` validation reviews of ``T1 + T2`` tokens (model selection only).
        test: ``H`` test reviews of ``T1 + T2`` tokens (scored once, at the end).
        T1, T2: observed prefix and scored continuation lengths.
        indices: ``{"train", "val", "test"} -> LongTensor`` positions in the source texts.
    """

    train: Corpus
    in_doc: Corpus
    val: Corpus
    test: Corpus
    T1: int
    T2: int
    indices: dict

    @property
    def V(self) -> int:
        return int(self.train.V)

    @property
    def vocab(self) -> Vocabulary:
        return self.train.vocab

    def task(self, name: str) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``(tokens (B, T1+T2), lengths (B,), T1)`` of a completion task: ``"val"``,
        ``"in_doc"`` or ``"unseen"`` (the test reviews)."""
        corpus = {"val": self.val, "in_doc": self.in_doc, "unseen": self.test}[name]
        tokens, lengths = corpus.padded()
        return tokens, lengths, self.T1

    def describe(self) -> dict:
        """Sizes for reports: documents, tokens and ``V``."""
        held = self.T2
        return {"T1": self.T1, "T2": self.T2, "V": self.V, "num_train": len(self.train),
                "num_val": len(self.val), "num_test": len(self.test), "train_tokens": int(self.train.num_tokens),
                "val_scored_tokens": held * len(self.val), "in_doc_scored_tokens": held * len(self.in_doc),
                "unseen_scored_tokens": held * len(self.test), "test_tokens": int(self.test.num_tokens),
                "unk_rate_train": _unk_rate(self.train), "unk_rate_test": _unk_rate(self.test)}


def _unk_rate(corpus: Corpus) -> float:
    flat = corpus.padded()[0][corpus.mask()] if len(corpus) else torch.zeros(0)
    return float((flat == corpus.vocab.unk_id).double().mean()) if flat.numel() else 0.0


def protocol_split(
    texts: Sequence[str],
    *,
    T1: int = 100,
    T2: int = 70,
    num_train: int = 200,
    num_val: int = 100,
    num_test: int = 200,
    vocab_size: int = 5000,
    min_count: int = 2,
    seed: int = 0,
    tokenizer: Callable[[str], list[str]] = tokenize,
) -> ProtocolSplit:
    """Cut raw texts into the protocol's splits; the vocabulary comes from training prefixes.

    Args:
        texts: raw documents (e.g. :func:`pyro_ssl.data.read_texts`).
        T1, T2: observed prefix and scored continuation lengths.
        num_train, num_val, num_test: documents per split, drawn from the documents with at
            least ``T1 + T2`` tokens in one seeded shuffle (train first, then validation, then
            test), so the training set does not depend on ``num_val`` or ``num_test``.
        vocab_size: at most this many words, ``<unk>`` included.
        min_count: training-prefix count below which a word is ``<unk>``; 2 gives ``<unk>``
            training mass (the singletons) so unseen words are not scored as impossible events.
        seed: shuffle seed.

    Raises:
        ValueError: too few long documents (the message says how many there are).
    """
    for name, value, low in (("T1", T1, 1), ("T2", T2, 1), ("num_train", num_train, 1),
                             ("num_val", num_val, 1), ("num_test", num_test, 1)):
        if isinstance(value, bool) or int(value) != value or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    token_lists = [tokenizer(t) for t in texts]
    total = T1 + T2
    eligible = torch.tensor([i for i, toks in enumerate(token_lists) if len(toks) >= total], dtype=torch.long)
    needed = num_train + num_val + num_test
    if eligible.numel() < needed:
        raise ValueError(f"protocol_split needs {needed} documents (train {num_train} + validation {num_val} + "
                         f"test {num_test}) with at least T1+T2={total} tokens, but only {eligible.numel()} "
                         f"of the {len(token_lists)} documents are that long")
    g = torch.Generator().manual_seed(int(seed))
    shuffled = eligible[torch.randperm(eligible.numel(), generator=g)]
    parts = {"train": shuffled[:num_train], "val": shuffled[num_train:num_train + num_val],
             "test": shuffled[num_train + num_val:needed]}
    parts = {k: v.sort().values for k, v in parts.items()}  # corpus order within each split
    # The vocabulary sees exactly the training text: the T1-token prefixes of training reviews.
    vocab = Vocabulary.build((token_lists[i][:T1] for i in parts["train"].tolist()), max_size=vocab_size,
                             min_count=min_count)

    def encode(idx: torch.Tensor, n: int) -> Corpus:
        return Corpus([vocab.encode(token_lists[i][:n]) for i in idx.tolist()], vocab=vocab)

    return ProtocolSplit(train=encode(parts["train"], T1), in_doc=encode(parts["train"], total),
                         val=encode(parts["val"], total), test=encode(parts["test"], total),
                         T1=int(T1), T2=int(T2), indices=parts)
