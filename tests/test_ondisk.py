"""The on-disk, memory-mapped corpus (issue 9): round trip, shards, padded minibatches."""

import numpy as np
import pytest
import torch

from pyro_ssl.data import Corpus
from pyro_ssl.data.ondisk import OnDiskCorpus, OnDiskWriter, is_ondisk_corpus, write_ondisk

TEXTS = [
    "the movie was great and the acting was great",
    "a terrible film",
    "i loved the plot",
    "worst movie ever made , the plot was thin",
    "great",
    "the actors were fine but the film was long",
    "plot plot plot",
]


@pytest.fixture
def corpus():
    return Corpus.from_texts(TEXTS, vocab_size=100, labels=list(range(len(TEXTS))))


def test_round_trip_and_memory_map(tmp_path, corpus):
    od = write_ondisk(corpus, tmp_path / "c")
    assert is_ondisk_corpus(tmp_path / "c") and not is_ondisk_corpus(tmp_path)
    od = OnDiskCorpus.open(tmp_path / "c")
    assert isinstance(od._tokens, np.memmap)  # tokens are mapped, not read
    assert len(od) == len(corpus) and od.V == corpus.V and od.num_tokens == corpus.num_tokens
    assert od.vocab == corpus.vocab and od.labels == corpus.labels
    assert torch.equal(od.lengths, corpus.lengths)
    assert [od[i] for i in range(len(od))] == corpus.tolist()
    assert od.to_corpus() == corpus
    assert od.to_texts() == corpus.to_texts()
    assert torch.equal(od.word_counts(), corpus.word_counts())
    tokens, lengths = od.padded()
    ref_tokens, ref_lengths = corpus.padded()
    assert torch.equal(tokens, ref_tokens) and torch.equal(lengths, ref_lengths)


def test_padded_reads_a_subset(tmp_path, corpus):
    od = write_ondisk(corpus, tmp_path / "c")
    idx = torch.tensor([5, 1, 3])
    tokens, lengths = od.padded(idx)
    ref = corpus[idx]
    assert torch.equal(lengths, ref.lengths)
    assert tokens.shape == (3, ref.max_length)
    assert torch.equal(tokens, ref.padded()[0])
    assert od[idx] == ref  # index arrays give an in-memory Corpus
    assert od[-1] == corpus[-1]
    empty_t, empty_l = od.padded([])
    assert empty_t.shape == (0, 0) and empty_l.shape == (0,)


@pytest.mark.parametrize("world_size", [1, 2, 3, 7, 9])
def test_shards_partition_and_decode_back(tmp_path, corpus, world_size):
    od = write_ondisk(corpus, tmp_path / "c")
    shards = [od.shard(r, world_size) for r in range(world_size)]
    ids = torch.cat([s.doc_ids for s in shards])
    assert torch.equal(ids, torch.arange(len(corpus)))  # a partition, in order
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    texts = []
    for s in shards:
        assert s.labels == [corpus.labels[i] for i in s.doc_ids.tolist()]
        texts += s.to_texts()
        if len(s):
            tok, n = s.padded()
            assert torch.equal(tok, corpus[s.doc_ids].padded()[0])
            assert s[0] == corpus[int(s.start)]
    assert texts == TEXTS
    with pytest.raises(ValueError):
        od.shard(world_size, world_size)


def test_streaming_writer_without_vocab(tmp_path):
    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(70000, (int(n),), generator=g) for n in torch.randint(1, 30, (50,), generator=g)]
    with OnDiskWriter(tmp_path / "big", buffer_tokens=64) as w:  # small buffer: many flushes
        for d in docs:
            w.add(d)
    od = OnDiskCorpus.open(tmp_path / "big")
    assert od.vocab is None and od.V == max(int(d.max()) for d in docs) + 1
    assert od._meta["dtype"] == "int32"  # ids above 65535 need 4 bytes
    assert all(torch.equal(od.doc(i), d) for i, d in enumerate(docs))
    view = od[10:20]
    assert len(view) == 10 and torch.equal(view.doc(0), docs[10])
    assert torch.equal(view.shard(1, 2).doc_ids, torch.arange(15, 20))


def test_small_vocab_uses_two_bytes_and_rejects_bad_ids(tmp_path):
    od = write_ondisk([[1, 2, 3], [4]], tmp_path / "s", V=10)
    assert od._meta["dtype"] == "uint16" and (tmp_path / "s" / "tokens.bin").stat().st_size == 8
    with pytest.raises(ValueError, match="outside"):
        write_ondisk([[1, 2, 30]], tmp_path / "bad", V=10)
    with pytest.raises(FileNotFoundError):
        OnDiskCorpus.open(tmp_path / "missing")


def test_estimator_accepts_an_ondisk_corpus(tmp_path, corpus):
    from pyro_ssl.estimator import as_tokens

    od = write_ondisk(corpus, tmp_path / "c")
    tokens, lengths, V, vocab = as_tokens(od)
    ref = as_tokens(corpus)
    assert torch.equal(tokens, ref[0]) and torch.equal(lengths, ref[1]) and V == ref[2] and vocab == ref[3]
