"""Interpolated Kneser-Ney: exact normalisation and hand-computed values on a toy corpus."""

import itertools
import math
import random

import pytest
import torch

from pyro_ssl.baselines import KneserNey, LanguageModel, UnigramLM, pad_docs

DOCS = [[0, 1, 0, 1], [1, 2]]  # V = 3; begin-of-document symbol is id 3


def test_bigram_hand_computed_values():
    """Bigram with D = 0.5 on DOCS, worked by hand (bos = 3 pads each document on the left).

    Raw bigram counts: (3,0) 1, (0,1) 2, (1,0) 1, (3,1) 1, (1,2) 1.
    Continuation counts of the unigram level: N1+(. 0) = 2 {1, 3}, N1+(. 1) = 2 {0, 3},
    N1+(. 2) = 1 {1}; total 5, 3 types, so
    P1(0) = (2 - .5 + .5 * 3 / 3) / 5 = .4, P1(1) = .4, P1(2) = (1 - .5 + .5) / 5 = .2.
    P(1 | 0) = (2 - .5 + .5 * 1 * .4) / 2 = .85, P(0 | 0) = .5 * .4 / 2 = .1, P(2 | 0) = .05;
    P(0 | bos) = (1 - .5 + .5 * 2 * .4) / 2 = .45; P(2 | 1) = (1 - .5 + .5 * 2 * .2) / 2 = .35.
    Context 2 was never followed by a word: P(. | 2) = P1.
    """
    kn = KneserNey(order=2, discount=0.5).fit(DOCS, vocab_size=3)
    assert isinstance(kn, LanguageModel) and kn.discounts == [0.5, 0.5]
    assert kn.next_word_probs([]).tolist() == pytest.approx([0.45, 0.5 * 2 * 0.4 / 2 + 0.5 / 2, 0.5 * 2 * 0.2 / 2])
    assert kn.next_word_probs([0]).tolist() == pytest.approx([0.1, 0.85, 0.05])
    assert kn.next_word_probs([2]).tolist() == pytest.approx([0.4, 0.4, 0.2])
    assert kn.next_word_probs([1, 1])[2].item() == pytest.approx(0.35)  # only the last id counts
    tokens, lengths = pad_docs([[0, 1, 2], [2, 0]])
    lp = kn.token_log_probs(tokens, lengths)
    expect0 = [math.log(0.45), math.log(0.85), math.log(0.35)]
    p2_bos = 0.5 * 2 * 0.2 / 2  # (0 - .5)+ = 0, so only the back-off mass
    expect1 = [math.log(p2_bos), math.log(0.4), 0.0]  # P(0 | 2) = P1(0); padding is 0
    assert lp.tolist()[0] == pytest.approx(expect0) and lp.tolist()[1] == pytest.approx(expect1)
    assert kn.completion_log_likelihood(tokens, lengths, 1)[0].item() == pytest.approx(sum(expect0[1:]))


def test_unigram_order_is_continuation_counts():
    kn = KneserNey(order=1, discount=0.5).fit(DOCS, vocab_size=3)
    # order 1 has no continuation level: raw counts 0: 2, 1: 3, 2: 1 (total 6), uniform below
    expect = [(2 - 0.5 + 0.5 * 3 / 3) / 6, (3 - 0.5 + 0.5) / 6, (1 - 0.5 + 0.5) / 6]
    assert kn.next_word_probs([0, 1]).tolist() == pytest.approx(expect)


@pytest.mark.parametrize("order,discount", [(1, "auto"), (2, "auto"), (3, "auto"), (3, 1.0), (4, [0.3, 0.6, 0.8, 0.9])])
def test_sums_to_one_for_every_context(order, discount):
    rng = random.Random(order)
    V = 5
    docs = [[rng.choice([0, 0, 1, 2, 3]) for _ in range(rng.randint(1, 12))] for _ in range(8)]  # word 4 unseen
    kn = KneserNey(order=order, discount=discount).fit(docs, vocab_size=V)
    assert all(0 < d <= 1 for d in kn.discounts) and len(kn.discounts) == order
    contexts = [list(c) for k in range(order) for c in itertools.product(range(V), repeat=k)]
    for ctx in contexts:  # shorter contexts are begin-of-document contexts
        p = kn.next_word_probs(ctx)
        assert p.shape == (V,) and bool((p > 0).all())
        assert p.sum().item() == pytest.approx(1.0, abs=1e-12), ctx
    # token_log_probs is the same distribution read one token at a time
    tokens, lengths = pad_docs(docs[:3])
    lp = kn.token_log_probs(tokens, lengths)
    for b in range(3):
        for t in range(int(lengths[b])):
            ctx = docs[b][max(0, t - order + 1):t]
            assert lp[b, t].item() == pytest.approx(math.log(kn.next_word_probs(ctx)[docs[b][t]].item()), abs=1e-12)


def test_auto_discount_is_ney_estimate():
    kn = KneserNey(order=1).fit([[0, 0, 1, 2, 2, 3]], vocab_size=4)
    # counts 0: 2, 1: 1, 2: 2, 3: 1 -> n1 = 2, n2 = 2, D = 2 / (2 + 4)
    assert kn.discounts == [pytest.approx(1 / 3)]


def test_bigram_structure_beats_unigram():
    rng = random.Random(0)
    docs = [[(i + j) % 6 if rng.random() > 0.1 else rng.randrange(6) for j in range(40)] for i in range(20)]
    tokens, lengths = pad_docs(docs)
    kn = KneserNey(order=3).fit(docs[:15], vocab_size=6)
    uni = UnigramLM(beta=0.1).fit(docs[:15], vocab_size=6)
    held = slice(15, 20)
    assert kn.log_likelihood(tokens[held], lengths[held]).sum() > uni.log_likelihood(tokens[held], lengths[held]).sum() + 100


def test_rejects_bad_settings():
    for bad in (dict(order=0), dict(discount=0.0), dict(discount=1.5), dict(order=2, discount=[0.5]), dict(discount="x")):
        with pytest.raises(ValueError):
            KneserNey(**bad)
    with pytest.raises(RuntimeError):
        KneserNey().next_word_probs([0])
    assert KneserNey(order=2).fit(DOCS, 3).token_log_probs(torch.zeros(1, 0, dtype=torch.long),
                                                         torch.zeros(1, dtype=torch.long)).shape == (1, 0)
