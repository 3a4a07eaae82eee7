"""The document-completion split of the seed's experiment (SPEC sections 4-5).

Each selected document is cut into an observed prefix of ``T1`` tokens and a
held-out continuation of the next ``T2`` tokens. Models train on the prefixes
only; completion perplexity scores the continuation given the prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .corpus import Corpus

__all__ = ["CompletionSplit", "completion_split"]


@dataclass(frozen=True, eq=False)
class CompletionSplit:
    """Training prefixes and evaluation sequences for document completion.

    Attributes:
        train: B documents, each exactly the first ``T1`` tokens of a selected document.
        eval_tokens: LongTensor (B, T1 + T2): the same B documents, truncated to
            ``T1 + T2`` tokens; ``eval_tokens[:, :T1]`` equals ``train.padded()[0]``.
        eval_lengths: LongTensor (B,), all equal to ``T1 + T2``.
        T1: observed prefix length.
        T2: held-out continuation length.
        heldout: optional separate documents (none of the B), truncated to
            ``T1 + T2``, for a held-out-document evaluation; ``None`` if not requested.
        doc_indices: LongTensor (B,), positions of the B documents in the source corpus.
        heldout_indices: LongTensor (H,), positions of the held-out documents, or ``None``.
    """

    train: Corpus
    eval_tokens: torch.Tensor
    eval_lengths: torch.Tensor
    T1: int
    T2: int
    heldout: Corpus | None = None
    doc_indices: torch.Tensor | None = None
    heldout_indices: torch.Tensor | None = None

    def __post_init__(self) -> None:
        B = len(self.train)
        if tuple(self.eval_tokens.shape) != (B, self.T1 + self.T2):
            raise ValueError(
                f"eval_tokens has shape {tuple(self.eval_tokens.shape)}, "
                f"expected ({B}, {self.T1 + self.T2})"
            )
        if tuple(self.eval_lengths.shape) != (B,):
            raise ValueError(f"eval_lengths has shape {tuple(self.eval_lengths.shape)}, expected ({B},)")

    @property
    def observed(self) -> torch.Tensor:
        """LongTensor (B, T1): the observed prefixes."""
        return self.eval_tokens[:, : self.T1]

    @property
    def continuation(self) -> torch.Tensor:
        """LongTensor (B, T2): the held-out continuations."""
        return self.eval_tokens[:, self.T1 :]

    @property
    def eval_corpus(self) -> Corpus:
        """The evaluation sequences as a Corpus (B documents of T1 + T2 tokens)."""
        return Corpus(self.eval_tokens, vocab=self.train.vocab, vocab_size=self.train.V)


def completion_split(
    corpus: Corpus,
    T1: int = 100,
    T2: int = 70,
    num_docs: int = 200,
    seed: int = 0,
    heldout_docs: int = 0,
) -> CompletionSplit:
    """Select documents for the completion experiment.

    Documents with at least ``T1 + T2`` tokens are eligible. They are shuffled
    with a private generator seeded by ``seed``; the first ``num_docs`` form the
    completion set and the next ``heldout_docs`` the separate held-out set. The
    completion set therefore does not depend on ``heldout_docs``. Within each
    set documents keep their original corpus order.

    Args:
        corpus: the encoded corpus (its vocabulary is shared by all outputs).
        T1: observed prefix length (training tokens per document).
        T2: held-out continuation length.
        num_docs: B, number of completion documents.
        seed: shuffle seed.
        heldout_docs: H, number of additional, disjoint documents for held-out
            likelihood; 0 for none.

    Returns:
        A :class:`CompletionSplit` with ``train`` (B docs x T1 tokens),
        ``eval_tokens`` (B, T1+T2), ``eval_lengths`` (B,) and optionally
        ``heldout`` (H docs x (T1+T2) tokens).

    Raises:
        ValueError: fewer than ``num_docs + heldout_docs`` eligible documents
            (the message says how many there are), or invalid sizes.
    """
    checks = (("T1", T1, 1), ("T2", T2, 1), ("num_docs", num_docs, 1), ("heldout_docs", heldout_docs, 0))
    for name, value, low in checks:
        if isinstance(value, bool) or int(value) != value or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    T1, T2, num_docs, heldout_docs = int(T1), int(T2), int(num_docs), int(heldout_docs)
    total = T1 + T2
    eligible = (corpus.lengths >= total).nonzero().flatten()
    needed = num_docs + heldout_docs
    if eligible.numel() < needed:
        extra = f" + heldout_docs={heldout_docs}" if heldout_docs else ""
        raise ValueError(
            f"completion_split needs {needed} documents (num_docs={num_docs}{extra}) with at least "
            f"T1+T2={total} tokens, but only {eligible.numel()} of the {len(corpus)} documents are that long"
        )
    g = torch.Generator().manual_seed(int(seed))
    shuffled = eligible[torch.randperm(eligible.numel(), generator=g)]
    chosen = shuffled[:num_docs].sort().values
    selected = corpus[chosen]
    eval_tokens, eval_lengths = selected.truncate(total).padded()
    heldout = heldout_idx = None
    if heldout_docs:
        heldout_idx = shuffled[num_docs:needed].sort().values
        heldout = corpus[heldout_idx].truncate(total)
    return CompletionSplit(
        train=selected.prefix(T1),
        eval_tokens=eval_tokens,
        eval_lengths=eval_lengths,
        T1=T1,
        T2=T2,
        heldout=heldout,
        doc_indices=chosen,
        heldout_indices=heldout_idx,
    )
