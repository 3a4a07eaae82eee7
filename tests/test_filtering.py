"""Vocabulary filtering as gensim's ``Dictionary.filter_extremes``, stopwords, and its consistency
between the training corpus, later-encoded text, saved vocabularies and the CLI flags."""

import pytest
import torch

from pyro_ssl.config import VocabConfig
from pyro_ssl.data import Corpus, Vocabulary, english_stopwords, gensim_corpus_texts, load_corpus

TEXTS = [
    "the cat sat on the mat .",
    "the dog sat on the log .",
    "the cat chased the dog !",
    "a bird sang , the cat slept",
    "stocks fell , markets closed",
]


def test_filter_extremes_matches_gensim():
    from gensim.corpora import Dictionary

    from pyro_ssl.data import tokenize

    texts = gensim_corpus_texts("lee_background")
    c = Corpus.from_texts(texts, vocab_size=None)
    f = c.filter_extremes(no_below=5, no_above=0.3, keep_n=500)
    d = Dictionary([tokenize(t) for t in texts])
    d.filter_extremes(no_below=5, no_above=0.3, keep_n=500)
    ours, theirs = set(f.vocab.itos[1:]), set(d.token2id)
    assert len(f.vocab) == 501 and len(theirs) == 500 and f.vocab.drop_unknown
    # the same words, except for ties in document frequency at the keep_n cut
    cut = min(d.dfs[i] for i in d.token2id.values())
    full = Dictionary([tokenize(t) for t in texts])
    dfs = {w: full.dfs[i] for w, i in full.token2id.items()}
    assert {dfs[w] for w in ours ^ theirs} <= {cut}
    assert len(ours ^ theirs) <= 4
    # documents keep exactly their kept words, in order
    kept = ours
    expected = [[w for w in tokenize(t) if w in kept] for t in texts]
    assert f.to_texts() == [" ".join(e) for e in expected]


def test_no_below_no_above_keep_n_and_stopwords():
    c = Corpus.from_texts(TEXTS, vocab_size=None)
    f = c.filter_extremes(no_below=2, no_above=0.7, keep_n=None)
    # df: the 4/5 (> 0.7 * 5), cat 3, sat 2, on 2, dog 2, "." 2, "," 2; singletons < 2
    assert set(f.vocab.itos[1:]) == {"cat", "sat", "on", "dog", ".", ","}
    assert f.vocab.itos[1] == "cat"  # by document frequency
    assert f.filter_extremes(no_below=1, no_above=1.0, keep_n=2).V == 3
    s = c.filter_extremes(no_below=1, no_above=1.0, keep_n=None, stopwords=True)
    words = set(s.vocab.itos[1:])
    assert not words & english_stopwords() and not words & {".", ",", "!"}
    assert {"cat", "dog", "stocks"} <= words
    s2 = c.filter_extremes(no_below=1, no_above=1.0, keep_n=None, stopwords=["cat", "dog"])
    assert "cat" not in s2.vocab and "the" in s2.vocab
    assert len(s) == len(c) and s.labels is None
    with pytest.raises(ValueError, match="no words"):
        c.filter_extremes(no_below=99)
    with pytest.raises(ValueError, match="vocabulary"):
        Corpus([[0, 1]]).filter_extremes()


def test_from_texts_and_load_corpus_filter_and_test_text_is_filtered_alike(tmp_path):
    train = Corpus.from_texts(TEXTS, vocab_size=4, no_below=2, stopwords=True)
    assert train.V == 4 and set(train.vocab.itos[1:]) <= {"cat", "sat", "dog"}
    assert all(w in train.vocab for w in train.to_texts()[0].split())
    test = Corpus.from_texts(["the cat and the unknown dog ."], vocab=train.vocab)
    assert test.to_texts() == ["cat dog"]  # dropped, not <unk>
    # without filter options nothing changes: the seed's vocabulary, unknown words -> <unk>
    plain = Corpus.from_texts(TEXTS, vocab_size=5)
    assert not plain.vocab.drop_unknown and plain.num_tokens == sum(len(t.split()) for t in TEXTS)
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(TEXTS) + "\n")
    loaded = load_corpus(path, vocab_size=4, no_below=2, stopwords=True)
    assert loaded == train
    # the flag survives saving
    train.vocab.save(tmp_path / "v.json")
    again = Vocabulary.load(tmp_path / "v.json")
    assert again == train.vocab and again.drop_unknown
    assert not Vocabulary.from_dict({k: v for k, v in plain.vocab.to_dict().items() if k != "drop_unknown"}).drop_unknown


def test_defaults_live_in_the_configuration():
    import inspect

    cfg = VocabConfig()
    assert not cfg.filters and VocabConfig(stopwords=True).filters
    sig = inspect.signature(Corpus.from_texts).parameters
    for name in ("vocab_size", "min_count", "no_below", "no_above", "keep_n", "stopwords"):
        assert sig[name].default == getattr(cfg, name)
    assert inspect.signature(load_corpus).parameters["vocab_size"].default == cfg.vocab_size
    with pytest.raises(ValueError, match="no_above"):
        VocabConfig(no_above=1.5)


def test_filtered_lee_topics_vocabulary_has_content_words():
    texts = gensim_corpus_texts("lee_background")
    f = Corpus.from_texts(texts, vocab_size=2000, no_below=3, no_above=0.5, stopwords=True)
    top = f.vocab.itos[1:21]
    assert not set(top) & (english_stopwords() | {".", ",", "'s", "said"})
    assert int(torch.as_tensor(f.lengths).min()) >= 0 and f.V == 2000
