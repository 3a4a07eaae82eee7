"""Data pipeline: tokenizer, vocabulary, encoded corpus, completion split, loaders.

Typical use::

    from pyro_ssl.data import load_corpus, completion_split

    corpus = load_corpus("aclImdb_v1.tar.gz", vocab_size=5000)   # or the IMDB CSV
    split = completion_split(corpus, T1=100, T2=70, num_docs=200, seed=0)
    tokens, lengths = split.train.padded()                         # (200, 100), (200,)
"""

from .completion import CompletionSplit, completion_split
from .corpus import Corpus
from .loaders import ReadStats, check_text_file, gensim_corpus_texts, load_corpus, read_texts
from .protocol import ProtocolSplit, protocol_split
from .stopwords import english_stopwords
from .tokenize import tokenize
from .vocabulary import UNK_TOKEN, Vocabulary

__all__ = [
    "tokenize",
    "english_stopwords",
    "check_text_file",
    "Vocabulary",
    "UNK_TOKEN",
    "Corpus",
    "CompletionSplit",
    "completion_split",
    "ProtocolSplit",
    "protocol_split",
    "ReadStats",
    "read_texts",
    "load_corpus",
    "gensim_corpus_texts",
]
