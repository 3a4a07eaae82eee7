"""Baseline document language models scored by document completion (SPEC section 4).

All share :class:`LanguageModel`: ``fit(docs, vocab_size)``, ``token_log_probs(tokens,
lengths) -> (B, T)``, ``completion_log_likelihood(tokens, lengths, T1) -> (B,)`` and
``log_likelihood(tokens, lengths) -> (B,)``.
"""

from .base import LanguageModel, intra_op_threads, length_mask, pad_docs, perplexity
from .hmm import HMM
from .kneser_ney import KneserNey
from .lda import LDABaseline
from .lstm_lm import LSTMLanguageModel
from .unigram import UnigramLM

BASELINES = {
    "unigram": UnigramLM,
    "hmm": HMM,
    "kn": KneserNey,
    "lstm": LSTMLanguageModel,
    "lda": LDABaseline,
}

__all__ = [
    "LanguageModel",
    "perplexity",
    "pad_docs",
    "length_mask",
    "intra_op_threads",
    "UnigramLM",
    "HMM",
    "KneserNey",
    "LSTMLanguageModel",
    "LDABaseline",
    "BASELINES",
]
