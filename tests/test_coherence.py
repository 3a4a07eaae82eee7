"""Topic coherence (gensim CoherenceModel by name) and topic diversity on hand-made cases."""

import math

import pytest

from pyro_ssl.coherence import clean_topics, coherence, topic_diversity

PETS = "cat dog pet food bark".split()
MONEY = "stock market price trade bank".split()
ROADS = "car road drive fuel wheel".split()
# every document draws from one theme only, so words of a theme always co-occur
TEXTS = [PETS] * 8 + [MONEY] * 8 + [ROADS] * 8 + [PETS[:3] + ["<unk>"]] * 2
COHERENT = ["cat", "dog", "pet", "food"]
INCOHERENT = ["cat", "stock", "car", "price"]


@pytest.mark.parametrize("measure", ["c_npmi", "c_v", "u_mass"])
def test_coherent_topic_scores_higher(measure):
    res = coherence([COHERENT, INCOHERENT], TEXTS, measure, topn=4)
    good, bad = res["per_topic"]
    assert math.isfinite(good) and math.isfinite(bad)
    assert good > bad
    assert res["mean"] == pytest.approx((good + bad) / 2)
    assert res["num_scored"] == 2 and res["measure"] == measure


def test_npmi_extremes():
    res = coherence([COHERENT[:3], INCOHERENT[:3]], TEXTS, "c_npmi", topn=3, window_size=10)
    good, bad = res["per_topic"]
    assert good == pytest.approx(1.0, abs=1e-6)  # always together: NPMI 1
    assert bad < -0.5  # never together: NPMI near -1


def test_unk_and_unknown_words_are_skipped():
    # <unk> is dropped, "zebra" is not in the reference dictionary: the next words fill in
    res = coherence([["<unk>", "cat", "zebra", "dog", "pet", "food"]], TEXTS, "c_npmi", topn=4)
    assert res["words"] == [COHERENT]
    plain = coherence([COHERENT], TEXTS, "c_npmi", topn=4)
    assert res["per_topic"][0] == pytest.approx(plain["per_topic"][0])


def test_topic_without_two_scorable_words_is_nan_and_excluded():
    res = coherence([COHERENT, ["<unk>", "zebra", "cat"], []], TEXTS, "c_v", topn=4)
    assert math.isfinite(res["per_topic"][0])
    assert math.isnan(res["per_topic"][1]) and math.isnan(res["per_topic"][2])
    assert res["num_scored"] == 1 and res["mean"] == pytest.approx(res["per_topic"][0])
    none = coherence([["zebra", "lion"]], TEXTS, "c_npmi")
    assert math.isnan(none["mean"]) and none["num_scored"] == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown coherence measure"):
        coherence([COHERENT], TEXTS, "c_magic")
    with pytest.raises(ValueError, match="topn"):
        coherence([COHERENT], TEXTS, topn=1)
    with pytest.raises(ValueError, match="non-empty"):
        coherence([COHERENT], [[], []])


def test_topic_diversity_hand_computed():
    topics = [["a", "b", "c"], ["a", "d", "e"]]
    assert topic_diversity(topics, topn=3) == pytest.approx(5 / 6)
    assert topic_diversity(topics, topn=2) == pytest.approx(3 / 4)  # [a, b] and [a, d]
    assert topic_diversity([["x", "y"], ["x", "y"], ["x", "y"]]) == pytest.approx(1 / 3)
    assert topic_diversity([["a", "b"], ["c", "d"]]) == 1.0
    # <unk> is excluded before the top n are taken: [a, b], [a, c]
    assert topic_diversity([["<unk>", "a", "b"], ["a", "<unk>", "c"]], topn=2) == pytest.approx(3 / 4)
    assert math.isnan(topic_diversity([["<unk>"], []]))


def test_clean_topics():
    assert clean_topics([["<unk>", "a", "a", "b", "c"]], topn=2) == [["a", "b"]]
    assert clean_topics([[1, 2, 3]], topn=5, exclude=()) == [["1", "2", "3"]]
