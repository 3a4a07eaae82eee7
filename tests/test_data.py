"""Tests of the data pipeline: tokenizer, vocabulary, corpus, completion split, loaders.

All inputs are written to ``tmp_path`` by the tests themselves, except the
optional check on the shared IMDB sample, which is skipped when it is absent.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_ssl.data import (
    CompletionSplit,
    Corpus,
    ReadStats,
    Vocabulary,
    completion_split,
    gensim_corpus_texts,
    load_corpus,
    read_texts,
    tokenize,
)

IMDB_SAMPLE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "imdb" / "imdb_reviews_sample.csv"


# ---------------------------------------------------------------- tokenizer
class TestTokenize:
    def test_lowercase_words_and_punctuation(self):
        assert tokenize("Great movie! Really, GREAT.") == ["great", "movie", "!", "really", ",", "great", "."]

    @pytest.mark.parametrize("br", ["<br />", "<br/>", "<br>", "<BR />"])
    def test_html_line_breaks_removed_and_separate_words(self, br):
        assert tokenize(f"end{br}{br}start") == ["end", "start"]

    def test_other_simple_tags_removed_but_not_comparisons(self):
        assert tokenize('<i>Psycho</i> <a href="x">link</a>') == ["psycho", "link"]
        # "<" not followed by a tag name is text, not markup.
        assert tokenize("a < b and i <3 it") == ["a", "<", "b", "and", "i", "<", "3", "it"]

    def test_internal_apostrophes_kept_outer_ones_split(self):
        assert tokenize("Don't 'quote' rock'n'roll players'") == [
            "don't", "'", "quote", "'", "rock'n'roll", "players", "'",
        ]

    def test_typographic_apostrophe_normalised(self):
        assert tokenize("Don\u2019t") == ["don't"]

    def test_each_punctuation_char_is_a_token(self):
        assert tokenize("Wow!!!...9/10") == ["wow", "!", "!", "!", ".", ".", ".", "9", "/", "10"]

    def test_entities_unicode_and_empty(self):
        assert tokenize("Tom &amp; Jerry caf\u00e9") == ["tom", "&", "jerry", "caf\u00e9"]
        # Decomposed accent (e + U+0301) stays one word after NFC.
        assert tokenize("cafe\u0301") == ["caf\u00e9"]
        assert tokenize("") == [] and tokenize("  \n\t") == []

    def test_rejects_non_string(self):
        with pytest.raises(TypeError):
            tokenize(["a", "b"])  # type: ignore[arg-type]


# --------------------------------------------------------------- vocabulary
DOCS = [["b", "a", "c", "a"], ["c", "d", "a", "e"], ["b", "f"]]
# counts: a3, b2, c2, d1, e1, f1; first appearance order: b, a, c, d, e, f


class TestVocabulary:
    def test_top_n_with_unk_counted_in_max_size(self):
        v = Vocabulary.build(DOCS, max_size=4)
        assert len(v) == 4
        # a (3), then ties b/c (2) in first-appearance order.
        assert v.itos == ("<unk>", "a", "b", "c")
        assert v.unk_id == 0 and v.stoi["<unk>"] == 0
        assert v.counts == (3, 3, 2, 2)  # d, e, f -> 3 unknown tokens

    def test_tie_break_is_first_appearance(self):
        v = Vocabulary.build([["z", "y", "x", "y", "z", "x"]], max_size=None)
        assert v.itos[1:] == ("z", "y", "x")

    def test_min_count_and_no_limit(self):
        assert Vocabulary.build(DOCS, max_size=None, min_count=2).itos == ("<unk>", "a", "b", "c")
        assert len(Vocabulary.build(DOCS, max_size=None)) == 7

    def test_encode_decode_contains(self):
        v = Vocabulary.build(DOCS, max_size=4)
        ids = v.encode(["a", "zzz", "c"])
        assert ids == [1, 0, 3]
        assert v.decode(ids) == ["a", "<unk>", "c"]
        assert v.decode(torch.tensor(ids)) == ["a", "<unk>", "c"]
        assert "a" in v and "d" not in v
        with pytest.raises(IndexError):
            v.decode([4])
        with pytest.raises(TypeError):
            v.encode("abc")

    def test_unk_token_in_input_is_not_a_word(self):
        v = Vocabulary.build([["<unk>", "<unk>", "a"]], max_size=None)
        assert v.itos == ("<unk>", "a") and v.counts == (2, 1)

    def test_frozen(self):
        v = Vocabulary.build(DOCS)
        assert v.frozen
        with pytest.raises(RuntimeError, match="frozen"):
            v.add("new")
        with pytest.raises(AttributeError):
            v._itos = ("<unk>",)
        with pytest.raises(TypeError):
            v.stoi["new"] = 99  # read-only mapping
        assert "new" not in v

    def test_save_load_round_trip_utf8(self, tmp_path):
        v = Vocabulary.build([["caf\u00e9", "na\u00efve", "caf\u00e9", "\u2603"]])
        p = tmp_path / "vocab.json"
        v.save(p)
        assert "caf\u00e9" in p.read_text(encoding="utf-8")  # stored as UTF-8, not \u escapes
        w = Vocabulary.load(p)
        assert w == v and w.counts == v.counts and w.stoi == v.stoi
        assert Vocabulary.from_dict(v.to_dict()) == v
        assert pickle.loads(pickle.dumps(v)) == v
        assert v != Vocabulary(["x"])

    def test_load_errors(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="nope.json"):
            Vocabulary.load(tmp_path / "nope.json")
        bad = tmp_path / "bad.json"
        bad.write_text('{"itos": ["a"]}', encoding="utf-8")
        with pytest.raises(ValueError, match="bad.json"):
            Vocabulary.load(bad)
        with pytest.raises(ValueError, match="duplicate"):
            Vocabulary(["a", "a"])

    def test_bad_arguments(self):
        with pytest.raises(ValueError):
            Vocabulary.build(DOCS, max_size=0)
        with pytest.raises(TypeError):
            Vocabulary.build(["abc"])


# ------------------------------------------------------------------- corpus
def small_corpus() -> Corpus:
    return Corpus([[1, 2, 3], [4], [], [5, 6, 7, 8, 9]], vocab_size=10, labels=["a", "b", "c", "d"])


class TestCorpus:
    def test_basic_properties_and_input_types(self):
        c = small_corpus()
        assert len(c) == 4 and c.V == 10 and c.num_tokens == 9
        assert torch.equal(c.lengths, torch.tensor([3, 1, 0, 5]))
        assert c.lengths.dtype == torch.long
        assert c[0] == [1, 2, 3] and c[-1] == [5, 6, 7, 8, 9] and c[2] == []
        same = Corpus(
            [np.array([1, 2, 3]), torch.tensor([4]), np.array([], dtype=np.int64), torch.arange(5, 10)],
            vocab_size=10,
            labels=["a", "b", "c", "d"],
        )
        assert same == c
        assert Corpus([[0, 3]]).V == 4  # inferred as max id + 1

    def test_invalid_ids_name_the_document(self):
        with pytest.raises(ValueError, match=r"document 2 .*token id 10.*\[0, 10\)"):
            Corpus([[1], [2], [3, 10]], vocab_size=10)
        with pytest.raises(ValueError, match="document 1"):
            Corpus([[1], [-1]], vocab_size=10)
        v = Vocabulary.build(DOCS, max_size=4)
        with pytest.raises(ValueError, match="document 0"):
            Corpus([[4]], vocab=v)
        with pytest.raises(TypeError, match="document 1"):
            Corpus([[1], [1.5]], vocab_size=10)
        with pytest.raises(ValueError, match="1-D"):
            Corpus([torch.zeros(2, 2, dtype=torch.long)])
        with pytest.raises(ValueError, match="labels"):
            Corpus([[1]], labels=[1, 2])
        with pytest.raises(ValueError, match="disagrees"):
            Corpus([[1]], vocab=v, vocab_size=7)

    def test_padded_lengths_mask(self):
        c = small_corpus()
        tokens, lengths = c.padded(pad_id=-1)
        assert tokens.shape == (4, 5) and tokens.dtype == torch.long
        assert tokens.tolist() == [
            [1, 2, 3, -1, -1],
            [4, -1, -1, -1, -1],
            [-1, -1, -1, -1, -1],
            [5, 6, 7, 8, 9],
        ]
        assert torch.equal(lengths, c.lengths)
        mask = c.mask()
        assert mask.dtype == torch.bool and torch.equal(mask, tokens != -1)
        assert torch.equal(mask.sum(1), lengths)
        tokens0, _ = c.padded()
        assert int(tokens0[1, 1]) == 0

    def test_indexing_returns_subcorpus_with_vocab_and_labels(self):
        c = Corpus.from_texts(["a b c", "b c", "c d e f"], vocab_size=None, labels=[0, 1, 0])
        sub = c[[2, 0]]
        assert isinstance(sub, Corpus) and sub.vocab is c.vocab
        assert sub[0] == c[2] and sub[1] == c[0] and sub.labels == [0, 0]
        assert c[1:] == c[torch.tensor([1, 2])] == c[[False, True, True]]
        assert c[np.array([1, 2])] == c[1:]
        assert len(c[[]]) == 0
        with pytest.raises(IndexError):
            c[3]
        with pytest.raises(IndexError):
            c[[0, 5]]

    def test_from_texts_to_texts_and_unknowns(self):
        c = Corpus.from_texts(["The film, the film!", "A film"], vocab_size=3)
        assert c.vocab.itos == ("<unk>", "film", "the")
        assert c.to_texts() == ["the film <unk> the film <unk>", "<unk> film"]
        test = Corpus.from_texts(["the unseen"], vocab=c.vocab)
        assert test[0] == [2, 0] and test.vocab is c.vocab
        with pytest.raises(ValueError, match="vocabulary"):
            Corpus([[1]]).to_texts()

    def test_split_reproducible_disjoint_and_covering(self):
        c = Corpus([[i] for i in range(50)], vocab_size=50)
        train, test = c.split(10, seed=3)
        train2, test2 = c.split(10, seed=3)
        assert train == train2 and test == test2
        assert len(test) == 10 and len(train) == 40
        tr, te = {d[0] for d in train}, {d[0] for d in test}
        assert not tr & te and tr | te == set(range(50))
        _, other = c.split(10, seed=4)
        assert other != test
        _, frac = c.split(0.2, seed=3)
        assert len(frac) == 10
        for bad in (0, 50, 0.0, 1.0):
            with pytest.raises(ValueError):
                c.split(bad)

    def test_prefix_truncate_take_filter(self):
        c = small_corpus()
        assert c.truncate(2).tolist() == [[1, 2], [4], [], [5, 6]]
        assert c.truncate(2).labels == c.labels
        assert c.filter_min_length(3).tolist() == [[1, 2, 3], [5, 6, 7, 8, 9]]
        assert c.filter_min_length(3).prefix(3).tolist() == [[1, 2, 3], [5, 6, 7]]
        with pytest.raises(ValueError, match="document 1 has 1 tokens"):
            c.prefix(2)
        with pytest.raises(ValueError, match="no document has at least 6 tokens"):
            c.filter_min_length(6)
        assert c.take(2).tolist() == [[1, 2, 3], [4]]

    def test_batches(self):
        c = Corpus([[i] for i in range(10)], vocab_size=10)
        batches = list(c.batches(4))
        assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
        s1 = [b.tolist() for b in c.batches(4, shuffle=True, seed=1)]
        s2 = [b.tolist() for b in c.batches(4, shuffle=True, seed=1)]
        assert s1 == s2 and sorted(sum(s1, [])) == list(range(10)) and s1 != [b.tolist() for b in batches]
        assert len(list(c.batches(4, drop_last=True))) == 2
        tokens, _ = c[batches[2]].padded()
        assert tokens.tolist() == [[8], [9]]

    def test_word_counts_and_bow(self):
        c = Corpus([[1, 1, 2], [2]], vocab_size=4)
        assert c.word_counts().tolist() == [0, 2, 2, 0]
        assert c.to_bow() == [[(1, 2), (2, 1)], [(2, 1)]]


# -------------------------------------------------------- completion split
def lengthy_corpus(lengths: list[int]) -> Corpus:
    g = torch.Generator().manual_seed(0)
    return Corpus([torch.randint(0, 20, (n,), generator=g) for n in lengths], vocab_size=20)


class TestCompletionSplit:
    def test_shapes_and_prefix_equals_train(self):
        c = lengthy_corpus([5, 12, 8, 20, 7, 9, 15, 3])  # docs with >= 8 tokens: 1, 2, 3, 5, 6
        s = completion_split(c, T1=5, T2=3, num_docs=3, seed=0)
        assert isinstance(s, CompletionSplit) and s.T1 == 5 and s.T2 == 3
        assert len(s.train) == 3 and torch.equal(s.train.lengths, torch.full((3,), 5))
        assert s.eval_tokens.shape == (3, 8) and s.eval_tokens.dtype == torch.long
        assert torch.equal(s.eval_lengths, torch.full((3,), 8))
        assert torch.equal(s.eval_tokens[:, :5], s.train.padded()[0])
        assert torch.equal(s.observed, s.train.padded()[0]) and s.continuation.shape == (3, 3)
        assert set(s.doc_indices.tolist()) <= {1, 2, 3, 5, 6}
        for row, d in zip(s.eval_tokens.tolist(), s.doc_indices.tolist()):
            assert row == c[d][:8]
        assert s.heldout is None
        assert s.eval_corpus.tolist() == s.eval_tokens.tolist()

    def test_seeded_and_heldout_disjoint(self):
        c = lengthy_corpus([10 + i for i in range(30)])
        a = completion_split(c, T1=6, T2=4, num_docs=10, seed=1)
        b = completion_split(c, T1=6, T2=4, num_docs=10, seed=1, heldout_docs=5)
        assert torch.equal(a.eval_tokens, b.eval_tokens)  # heldout_docs does not change the chosen set
        assert not set(b.doc_indices.tolist()) & set(b.heldout_indices.tolist())
        assert len(b.heldout) == 5 and torch.equal(b.heldout.lengths, torch.full((5,), 10))
        other = completion_split(c, T1=6, T2=4, num_docs=10, seed=2)
        assert not torch.equal(a.doc_indices, other.doc_indices)

    def test_not_enough_long_documents(self):
        c = lengthy_corpus([5, 12, 8, 20, 7])
        with pytest.raises(ValueError, match="only 3 of the 5 documents"):
            completion_split(c, T1=5, T2=3, num_docs=4)
        with pytest.raises(ValueError, match="only 3"):
            completion_split(c, T1=5, T2=3, num_docs=2, heldout_docs=2)


# ------------------------------------------------------------------ loaders
REVIEWS = {
    ("train", "pos", "0_9.txt"): "Loved it.<br /><br />Great acting!",
    ("train", "pos", "1_8.txt"): "Wonderful film",
    ("train", "neg", "0_2.txt"): "Terrible, just terrible.",
    ("train", "neg", "10_1.txt"): "Worst movie ever",
    ("test", "pos", "0_10.txt"): "A masterpiece",
    ("test", "neg", "0_3.txt"): "Boring",
    ("train", "unsup", "0_0.txt"): "unlabelled review that must be ignored",
}
TRAIN_ORDER = ["Terrible, just terrible.", "Worst movie ever", "Loved it.<br /><br />Great acting!", "Wonderful film"]


def write_aclimdb(base: Path) -> Path:
    root = base / "aclImdb"
    for (split, label, name), text in REVIEWS.items():
        p = root / split / label / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    (root / "imdb.vocab").write_text("the\nand\n", encoding="utf-8")
    (root / "train" / "urls_pos.txt").write_text("http://x\n", encoding="utf-8")
    return root


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


class TestLoaders:
    def test_aclimdb_directory(self, tmp_path):
        root = write_aclimdb(tmp_path / "data")
        texts, labels, stats = read_texts(tmp_path / "data", labels=True, return_stats=True)
        assert texts == TRAIN_ORDER  # sorted by path: neg before pos, unsup ignored
        assert labels == ["negative", "negative", "positive", "positive"]
        assert stats.layout == "aclimdb_dir" and stats.num_documents == 4 and stats.num_files == 4
        assert read_texts(root) == TRAIN_ORDER  # the aclImdb folder itself
        assert read_texts(root, split="test") == ["Boring", "A masterpiece"]
        assert read_texts(root, split="all") == TRAIN_ORDER + ["Boring", "A masterpiece"]
        assert read_texts(root, limit=2) == TRAIN_ORDER[:2]
        assert read_texts(root / "test") == ["Boring", "A masterpiece"]  # a single split folder
        with pytest.raises(ValueError, match="split"):
            read_texts(root, split="unsup")

    def test_aclimdb_tar_streamed_sorted_and_not_extracted(self, tmp_path):
        members = {
            f"aclImdb/{split}/{label}/{name}": text.encode("utf-8")
            for (split, label, name), text in REVIEWS.items()
        }
        members["aclImdb/README"] = b"readme"
        # Reverse the archive order so that the reader has to sort.
        archive = write_tar(tmp_path / "aclImdb_v1.tar.gz", dict(reversed(list(members.items()))))
        before = sorted(p.name for p in tmp_path.iterdir())
        texts, labels, stats = read_texts(archive, labels=True, return_stats=True)
        assert texts == TRAIN_ORDER and labels == ["negative", "negative", "positive", "positive"]
        assert stats.layout == "aclimdb_tar"
        assert read_texts(archive, split="test") == ["Boring", "A masterpiece"]
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing extracted

    def test_tar_of_plain_txt_and_bad_tar(self, tmp_path):
        archive = write_tar(tmp_path / "docs.tar.gz", {"d/b.txt": b"second", "d/a.txt": b"first"})
        assert read_texts(archive) == ["first", "second"]
        bad = tmp_path / "broken.tar.gz"
        bad.write_bytes(b"not a tar at all")
        with pytest.raises(ValueError, match="broken.tar.gz"):
            read_texts(bad)
        empty = write_tar(tmp_path / "empty.tar.gz", {"x/readme.md": b"hi"})
        with pytest.raises(ValueError, match="no aclImdb review files"):
            read_texts(empty)

    def test_csv_quoted_multiline(self, tmp_path):
        p = tmp_path / "imdb.csv"
        p.write_text(
            "\ufeffreview,sentiment\n"
            '"First line, with comma.<br /><br />Second ""quoted"" line\nthird line",positive\n'
            "Short one,negative\n"
            '"",negative\n',
            encoding="utf-8",
        )
        texts, labels, stats = read_texts(p, labels=True, return_stats=True)
        assert len(texts) == 2 and labels == ["positive", "negative"]
        assert texts[0] == 'First line, with comma.<br /><br />Second "quoted" line\nthird line'
        assert tokenize(texts[0])[:6] == ["first", "line", ",", "with", "comma", "."]
        assert "br" not in tokenize(texts[0])
        assert stats.layout == "csv" and stats.num_skipped_empty == 1
        corpus = load_corpus(p, labels=True, vocab_size=None)
        assert len(corpus) == 2 and corpus.labels == ["positive", "negative"]

    def test_csv_without_text_column(self, tmp_path):
        p = tmp_path / "other.csv"
        p.write_text("title,score\nx,1\n", encoding="utf-8")
        with pytest.raises(ValueError, match=r"other\.csv.*no text column.*'review'"):
            read_texts(p)
        only_header = tmp_path / "header.csv"
        only_header.write_text("review,sentiment\n", encoding="utf-8")
        with pytest.raises(ValueError, match=r"header\.csv: no documents"):
            read_texts(only_header)

    def test_plain_text_one_document_per_line(self, tmp_path):
        p = tmp_path / "docs.txt"
        p.write_text("first doc\n\n   \nsecond doc\r\nthird\n", encoding="utf-8")
        texts, stats = read_texts(p, return_stats=True)
        assert texts == ["first doc", "second doc", "third"]
        assert stats.layout == "lines" and stats.num_skipped_empty == 2
        with pytest.raises(ValueError, match="no labels"):
            read_texts(p, labels=True)

    def test_directory_of_txt_files(self, tmp_path):
        d = tmp_path / "docs"
        d.mkdir()
        for name, text in [("b.txt", "bee"), ("a.txt", "ay"), ("c.md", "ignored"), ("c.txt", "  ")]:
            (d / name).write_text(text, encoding="utf-8")
        texts, stats = read_texts(d, return_stats=True)
        assert texts == ["ay", "bee"] and stats.layout == "txt_dir" and stats.num_skipped_empty == 1

    def test_missing_unknown_and_empty(self, tmp_path):
        missing = tmp_path / "nowhere" / "reviews.csv"
        with pytest.raises(FileNotFoundError, match="reviews.csv"):
            read_texts(missing)
        with pytest.raises(FileNotFoundError):
            load_corpus(missing)
        d = tmp_path / "nothing_here"
        d.mkdir()
        (d / "notes.md").write_text("x", encoding="utf-8")
        with pytest.raises(ValueError, match=r"nothing_here.*no \.txt files"):
            read_texts(d)
        empty = tmp_path / "empty.txt"
        empty.write_text("\n\n", encoding="utf-8")
        with pytest.raises(ValueError, match=r"empty\.txt: no documents"):
            read_texts(empty)
        binary = tmp_path / "model.bin"
        binary.write_bytes(b"\x00\x01\x02" * 100)
        with pytest.raises(ValueError, match=r"model\.bin.*binary"):
            read_texts(binary)

    def test_undecodable_bytes_replaced_and_counted(self, tmp_path):
        p = tmp_path / "bad.txt"
        p.write_bytes(b"good line\ncaf\xe9 and \xff\xfe bytes\n")
        with pytest.warns(UnicodeWarning, match="replaced 3 undecodable byte"):
            texts, stats = read_texts(p, return_stats=True)
        assert texts == ["good line", "caf\ufffd and \ufffd\ufffd bytes"]
        assert stats.num_replaced_bytes == 3 and stats.num_files_with_decode_errors == 1
        assert read_texts(p, encoding="latin-1")[1] == "caf\u00e9 and \u00ff\u00fe bytes"

        root = write_aclimdb(tmp_path / "acl")
        (root / "train" / "pos" / "2_7.txt").write_bytes(b"ok \x80 review")
        with pytest.warns(UnicodeWarning):
            texts, stats = read_texts(root, return_stats=True)
        assert "ok \ufffd review" in texts
        assert (stats.num_replaced_bytes, stats.num_files_with_decode_errors, stats.num_files) == (1, 1, 5)

        csv_path = tmp_path / "bad.csv"
        csv_path.write_bytes(b'review,sentiment\n"bad \xc3\x28 byte",positive\n')
        with pytest.warns(UnicodeWarning):
            texts, stats = read_texts(csv_path, return_stats=True)
        assert texts == ["bad \ufffd( byte"] and stats.num_replaced_bytes == 1

    def test_clean_read_does_not_warn(self, tmp_path):
        p = tmp_path / "ok.txt"
        p.write_text("fine\n", encoding="utf-8")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            stats = read_texts(p, return_stats=True)[1]
        assert isinstance(stats, ReadStats) and stats.num_replaced_bytes == 0

    def test_load_corpus_shares_vocab(self, tmp_path):
        train = tmp_path / "train.txt"
        train.write_text("good good film\nbad film\n", encoding="utf-8")
        test = tmp_path / "test.txt"
        test.write_text("good unseen film\n", encoding="utf-8")
        c = load_corpus(train, vocab_size=3)
        assert c.vocab.itos == ("<unk>", "good", "film")
        t = load_corpus(test, vocab=c.vocab)
        assert t.vocab is c.vocab and t[0] == [1, 0, 2]
        with pytest.raises(TypeError):
            load_corpus(train, return_stats=True)

    def test_gensim_lee(self):
        texts = gensim_corpus_texts("lee")
        assert len(texts) == 300 and texts == gensim_corpus_texts("lee_background")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # lee.cor is Latin-1 and must decode cleanly
            assert len(gensim_corpus_texts("lee_test")) == 50
        with pytest.raises(ValueError, match="unknown gensim corpus"):
            gensim_corpus_texts("nope")


# ---------------------------------------------------------- real IMDB sample
def test_real_imdb_sample():
    if not IMDB_SAMPLE.is_file():
        pytest.skip(f"IMDB sample not available at {IMDB_SAMPLE}")
    texts, labels = read_texts(IMDB_SAMPLE, labels=True)
    assert len(texts) > 1000 and set(labels) == {"positive", "negative"}
    assert not any("<br" in " ".join(tokenize(t)) for t in texts[:50])
    corpus = Corpus.from_texts(texts, vocab_size=5000)
    assert len(corpus.vocab) == 5000
    long_enough = int((corpus.lengths >= 170).sum())
    assert long_enough >= 600
    split = completion_split(corpus, T1=100, T2=70, num_docs=200, seed=0, heldout_docs=200)
    assert split.train.padded()[0].shape == (200, 100) and split.eval_tokens.shape == (200, 170)
