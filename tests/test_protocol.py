"""The evaluation protocol (issue 17): splits by review, vocabulary from training text only,
selection on validation only, test scored once; the quick variant on the shared sample."""

import json
import math
import random
import sys
from pathlib import Path

import pytest
import torch

from pyro_ssl.data import Vocabulary, protocol_split, tokenize

REPO = Path(__file__).resolve().parents[1]
SHARED_CSV = REPO.parent / "shared" / "data" / "imdb" / "imdb_reviews_sample.csv"
sys.path.insert(0, str(REPO / "experiments"))
import protocol  # noqa: E402

PETS = "cat dog pet food bark meow".split()
MONEY = "stock market price trade bank money".split()


def make_texts(n=30, seed=0):
    rng = random.Random(seed)
    out = []
    for d in range(n):
        length = rng.randint(30, 45) if d % 5 else 20  # every fifth text is too short
        # skewed word frequencies (a flat unigram must lose), themes switching every 5 words
        words = [rng.choices(PETS if (t // 5 + d) % 2 else MONEY, weights=[12, 6, 3, 1, 1, 1])[0]
                 if rng.random() > 0.1 else f"w{d}x{t}" for t in range(length)]
        out.append(" ".join(words))
    return out


def test_split_is_by_review_and_vocabulary_sees_training_prefixes_only():
    texts = make_texts()
    s = protocol_split(texts, T1=20, T2=10, num_train=10, num_val=6, num_test=7, min_count=2, seed=3)
    idx = {k: set(v.tolist()) for k, v in s.indices.items()}
    assert [len(idx[k]) for k in ("train", "val", "test")] == [10, 6, 7]
    assert not (idx["train"] & idx["val"]) and not (idx["train"] & idx["test"]) and not (idx["val"] & idx["test"])
    assert all(len(tokenize(texts[i])) >= 30 for v in idx.values() for i in v)
    # the vocabulary is exactly what Vocabulary.build makes of the training prefixes
    prefixes = [tokenize(texts[i])[:20] for i in sorted(idx["train"])]
    assert s.vocab == Vocabulary.build(prefixes, max_size=5000, min_count=2)
    # a word that occurs only in a continuation or a test review is <unk>
    only_later = {w for i in idx["train"] for w in tokenize(texts[i])[20:]} - {w for p in prefixes for w in p}
    assert only_later and not (only_later & set(s.vocab.itos))
    # shapes and the in-document task: its prefixes are the training documents
    assert all(len(d) == 20 for d in s.train) and all(len(d) == 30 for d in s.in_doc)
    assert all(len(d) == 30 for d in s.val) and all(len(d) == 30 for d in s.test)
    assert [d[:20] for d in s.in_doc] == s.train.tolist()
    tokens, lengths, T1 = s.task("unseen")
    assert tokens.shape == (7, 30) and T1 == 20 and torch.equal(tokens, s.test.padded()[0])
    d = s.describe()
    assert d["train_tokens"] == 200 and d["unseen_scored_tokens"] == 70 and d["V"] == len(s.vocab)
    # the training reviews do not depend on how many validation / test reviews are drawn
    s2 = protocol_split(texts, T1=20, T2=10, num_train=10, num_val=2, num_test=3, min_count=2, seed=3)
    assert torch.equal(s2.indices["train"], s.indices["train"])


def test_split_errors():
    with pytest.raises(ValueError, match="only 24"):
        protocol_split(make_texts(), T1=20, T2=10, num_train=20, num_val=3, num_test=3)
    with pytest.raises(ValueError):
        protocol_split(make_texts(), T1=0)


@pytest.fixture(scope="module")
def tiny_result():
    s = protocol_split(make_texts(40, seed=1), T1=20, T2=10, num_train=14, num_val=8, num_test=8, seed=0)
    grids = {"unigram": {"beta": [0.01, 100.0]}, "kn": {"order": [1, 2], "discount": ["auto"]},
             "hmm": {"K": [2], "beta": [0.1], "restarts": [2]},
             "lstm": {"lr": [1e-2], "dropout": [0.0], "hidden_size": [8]},
             "lda": {"K": [2], "alpha": ["auto"], "eta": [None]},
             "ssl": {"K": [2], "beta": [0.1], "hidden_size": [8], "dropout": [0.0], "num_particles": [4]}}
    fixed = {"test_particles": 20, "curve_particles": 10, "ssl_epochs": 2, "ssl_eval_every": 1, "hmm_iters": 5}
    res = protocol.run_protocol(s, protocol.MODELS, scale="quick", seeds=(0, 1), filter_seeds=(0, 1), grids=grids,
                                fixed=fixed, progress=False)
    return s, res


def test_selection_reads_validation_only(tiny_result, monkeypatch):
    s, res = tiny_result
    uni = res["models"]["unigram"]
    # beta = 100 flattens the unigram towards uniform: validation must reject it
    assert [c["params"]["beta"] for c in uni["candidates"]] == [0.01, 100.0]
    assert uni["chosen"]["params"] == {"beta": 0.01}
    assert uni["chosen"]["val_ppl"] == min(c["val_ppl"] for c in uni["candidates"])
    for m, r in res["models"].items():
        best = min(r["candidates"], key=lambda c: c["val_ppl"])
        assert r["chosen"]["params"] == best["params"], m
    # the chosen SSL epoch is the best validation point of its curve
    ssl = res["models"]["ssl"]["candidates"][0]
    assert ssl["epochs"] == min(ssl["curve"], key=lambda p: p[1])[0]
    assert ssl["val_ppl"] == pytest.approx(min(v for _, v in ssl["curve"]))


def test_selection_never_touches_test_tokens(monkeypatch):
    """Scramble every test token after the split: nothing chosen may change."""
    s = protocol_split(make_texts(40, seed=1), T1=20, T2=10, num_train=14, num_val=8, num_test=8, seed=0)
    grids = {"unigram": {"beta": [0.01, 0.3, 100.0]}, "kn": {"order": [1, 2, 3], "discount": ["auto", 0.5]}}
    a = protocol.run_protocol(s, ["unigram", "kn"], seeds=(0,), grids=grids, progress=False)
    tokens = s.test.padded()[0]
    scrambled = type(s)(train=s.train, in_doc=s.in_doc, val=s.val,
                        test=type(s.test)((tokens.flip(1) * 7 + 3) % s.V, vocab=s.vocab),
                        T1=s.T1, T2=s.T2, indices=s.indices)
    b = protocol.run_protocol(scrambled, ["unigram", "kn"], seeds=(0,), grids=grids, progress=False)
    for m in ("unigram", "kn"):
        strip = [[{k: v for k, v in c.items() if k != "train_seconds"} for c in r["models"][m]["candidates"]]
                 for r in (a, b)]
        assert strip[0] == strip[1] and a["models"][m]["chosen"] == b["models"][m]["chosen"]
        assert a["models"][m]["runs"][0]["unseen_ppl"] != b["models"][m]["runs"][0]["unseen_ppl"]


def test_test_scores_are_chain_rule_and_seeds_are_reported_apart(tiny_result):
    s, res = tiny_result
    rows = {r["model"]: r for r in res["summary"]}
    assert set(rows) == set(protocol.MODELS)
    for m, row in rows.items():
        runs = res["models"][m]["runs"]
        assert len(runs) == (1 if m in ("unigram", "kn") else 2)
        assert 1 < row["in_doc_ppl"] < s.V and 1 < row["unseen_ppl"] < s.V and row["heldout_ll"] < 0
        vals = [r["unseen_ppl"] for r in runs]
        assert row["unseen_ppl"] == pytest.approx(sum(vals) / len(vals))
        if len(vals) > 1:  # sd over training seeds
            assert row["unseen_ppl_sd"] == pytest.approx(float(torch.tensor(vals, dtype=torch.float64).std()))
    # the unigram row is the chosen unigram scored by hand
    from pyro_ssl.baselines import UnigramLM, perplexity
    uni = UnigramLM(beta=0.01).fit(s.train.tolist(), s.V)
    tok, L, T1 = s.task("in_doc")
    assert rows["unigram"]["in_doc_ppl"] == pytest.approx(
        perplexity(float(uni.completion_log_likelihood(tok, L, T1).sum()), int((L - T1).sum())))
    tok, L, _ = s.task("unseen")
    assert rows["unigram"]["heldout_ll"] == pytest.approx(float(uni.log_likelihood(tok, L).sum()) / int(L.sum()))
    # the SSL's Monte Carlo error (sd over filter seeds) is kept apart from the training-seed sd
    ssl_runs = res["models"]["ssl"]["runs"]
    assert all(r["filter_seeds"] == [0, 1] and r["unseen_ppl_mc_sd"] > 0 for r in ssl_runs)
    assert rows["ssl"]["unseen_ppl_mc_sd"] == pytest.approx(sum(r["unseen_ppl_mc_sd"] for r in ssl_runs) / 2)
    assert rows["hmm"]["unseen_ppl_mc_sd"] is None


def test_page_and_plots(tiny_result, tmp_path):
    _, res = tiny_result
    imgs = protocol.plot_results(res, tmp_path)
    for p in imgs.values():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = protocol.render_page(res, command="cmd", data="d.csv", images={"test": "t.png", "validation": "v.png"})
    assert "chosen on validation" in page and "MC sd" in page and "(chosen)" in page
    assert page.count("| SSL (particle Gibbs) |") == 1 and "Kneser-Ney" in page
    json.dumps(res)  # JSON-able


def test_keep_from_merges_models_of_an_earlier_run_on_the_same_split_only(tiny_result):
    _, res = tiny_result
    old = json.loads(json.dumps(res))
    new = json.loads(json.dumps(res))
    new["models"] = {"ssl": new["models"]["ssl"]}
    new["settings"]["fixed"]["hmm_iters"] = 999  # not the HMM's run: the merged page keeps the old one's
    new["models"]["ssl"]["runs"][0]["unseen_ppl"] += 1.0
    merged = protocol.merge_results(new, old)
    assert list(merged["models"]) == list(protocol.MODELS)
    assert merged["models"]["ssl"] == new["models"]["ssl"] and merged["models"]["hmm"] == old["models"]["hmm"]
    assert merged["settings"]["fixed"]["hmm_iters"] == old["settings"]["fixed"]["hmm_iters"]
    assert sorted(merged["settings"]["kept_from"]["models"]) == sorted(m for m in protocol.MODELS if m != "ssl")
    rows = {r["model"]: r for r in merged["summary"]}
    runs = merged["models"]["ssl"]["runs"]
    assert rows["ssl"]["unseen_ppl"] == pytest.approx(sum(r["unseen_ppl"] for r in runs) / len(runs))
    page = protocol.render_page(merged, command="cmd", data="d.csv", images={"test": "t.png", "validation": "v.png"})
    assert "merged by `--keep-from`" in page
    other = json.loads(json.dumps(old))
    other["split"]["V"] += 1
    with pytest.raises(ValueError, match="another split"):
        protocol.merge_results(new, other)


@pytest.mark.skipif(not SHARED_CSV.is_file(), reason="shared IMDB sample not present")
def test_quick_variant_on_shared_sample(tmp_path):
    """The one command, quick variant: writes the page, the JSON and both plots."""
    out, page = tmp_path / "out", tmp_path / "results.md"
    assert protocol.main(["--data", str(SHARED_CSV), "--quick", "--out", str(out), "--page", str(page),
                          "--quiet"]) == 0
    data = json.loads((out / "protocol.json").read_text())
    assert {r["model"] for r in data["summary"]} == set(protocol.MODELS)
    assert data["split"]["num_train"] == 40 and data["split"]["V"] < 5000
    text = page.read_text()
    assert "out/protocol_test.png" in text and "Test results" in text
    assert all(math.isfinite(r["unseen_ppl"]) for r in data["summary"])
    # re-rendering from the JSON needs no training and gives the same page
    page2 = tmp_path / "again.md"
    assert protocol.main(["--data", str(SHARED_CSV), "--out", str(out), "--page", str(page2),
                          "--from-json", str(out / "protocol.json"), "--quiet"]) == 0
    assert page2.read_text() == text


def test_validate_only_reads_no_test_token(monkeypatch):
    s = protocol_split(make_texts(40, seed=1), T1=20, T2=10, num_train=14, num_val=8, num_test=8, seed=0)
    real = type(s).task

    def val_only(self, name):
        assert name == "val", f"read the {name} task"
        return real(self, name)

    monkeypatch.setattr(type(s), "task", val_only)
    grids = {"unigram": {"beta": [0.01, 0.3]}, "kn": {"order": [1, 2], "discount": ["auto"]}}
    res = protocol.run_protocol(s, ["unigram", "kn"], grids=grids, progress=False, validate_only=True)
    assert res["summary"] == [] and all(r["runs"] == [] for r in res["models"].values())
    assert [len(r["candidates"]) for r in res["models"].values()] == [2, 2]


def test_grid_points():
    assert protocol.grid_points({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    assert protocol.grid_points([{"K": 50}, {"K": 10, "beta": 0.01}]) == [{"K": 50}, {"K": 10, "beta": 0.01}]


def test_snapshot_points_choose_their_window_on_validation_and_replicate_it(monkeypatch):
    """An SSL point with ``snapshot_every``: every snapshot scored on validation, the window of at
    most ``ssl_max_snapshots`` consecutive snapshots with the best averaged perplexity chosen (its
    validation ppl recomputed here from the members), the other training seed keeping the same
    snapshot epochs; selection reads no test token."""
    s = protocol_split(make_texts(40, seed=1), T1=20, T2=10, num_train=14, num_val=8, num_test=8, seed=0)
    grids = {"ssl": {"K": [2], "beta": [0.1], "hidden_size": [8], "dropout": [0.0], "num_particles": [4],
                     "snapshot_every": [1]}}
    fixed = {"test_particles": 20, "curve_particles": 10, "ssl_epochs": 4, "ssl_max_snapshots": 3}
    real = type(s).task
    monkeypatch.setattr(type(s), "task", lambda self, name: real(self, "val") if name == "val" else pytest.fail(name))
    sel = protocol.run_protocol(s, ["ssl"], scale="quick", seeds=(0,), grids=grids, fixed=fixed, progress=False,
                                validate_only=True)
    monkeypatch.setattr(type(s), "task", real)
    fitted = {}
    res = protocol.run_protocol(s, ["ssl"], scale="quick", seeds=(0, 1), filter_seeds=(0,), grids=grids, fixed=fixed,
                                progress=False, fitted=fitted)
    cand = res["models"]["ssl"]["candidates"][0]
    assert sel["models"]["ssl"]["candidates"][0]["val_ppl"] == cand["val_ppl"]
    assert [e for e, _ in cand["curve"]] == [1, 2, 3, 4]
    by_size = {int(k): v for k, v in cand["by_size"].items()}
    assert sorted(by_size) == [1, 2, 3] and by_size[1]["val_ppl"] == pytest.approx(min(v for _, v in cand["curve"]))
    assert cand["val_ppl"] == min(v["val_ppl"] for v in by_size.values())
    chosen = res["models"]["ssl"]["chosen"]
    assert chosen["snapshot_epochs"] == by_size[chosen["snapshots"]]["epochs"] and chosen["epochs"] == chosen["snapshot_epochs"][-1]
    tokens, lengths, T1 = s.task("val")
    ens = fitted[("ssl", 0)]
    assert ens.epochs == chosen["snapshot_epochs"]
    lp = ens.token_log_probs(tokens, lengths, seed=0, num_particles=10)[:, T1:]
    assert cand["val_ppl"] == pytest.approx(math.exp(-float(lp.sum()) / int((lengths - T1).sum())), rel=1e-9)
    assert fitted[("ssl", 1)].epochs == chosen["snapshot_epochs"]
    page = protocol.render_page(res, command="cmd", data="d.csv", images={"test": "t.png", "validation": "v.png"})
    assert "snapshot" in page


def test_best_windows_finds_the_best_run_of_consecutive_snapshots():
    """Five snapshots' predictions of 4 tokens: the second and third predict well and differently,
    so the best pair is (1, 2) in the middle; a single snapshot's best is the better of those two;
    the mixture's perplexity is computed by hand."""
    good_a = torch.log(torch.tensor([[0.5, 0.1, 0.5, 0.1]]))
    good_b = torch.log(torch.tensor([[0.1, 0.5, 0.1, 0.45]]))
    bad = torch.log(torch.full((1, 4), 0.05))
    lps = [bad, good_a, good_b, bad, bad]
    wins = protocol.best_windows(lps, 3, 4)
    assert wins[2][1] == 2  # the pair ending at index 2: snapshots 1 and 2
    mix = torch.tensor([0.3, 0.3, 0.3, 0.275])
    assert wins[2][0] == pytest.approx(float(torch.exp(-mix.log().mean())))
    assert wins[1] == (pytest.approx(float(torch.exp(-good_a.mean()))), 1)
    assert wins[3][1] in (2, 3) and wins[2][0] < wins[1][0] and wins[2][0] < wins[3][0]
    assert sorted(wins) == [1, 2, 3]


def test_best_windows_pools_the_same_snapshots_of_every_chain():
    """Two chains of three snapshots: a window of one snapshot at index b is the mixture of both
    chains' snapshot b (computed by hand); one chain alone is the single-chain call."""
    a = [torch.log(torch.tensor([[p, 0.2]])) for p in (0.1, 0.6, 0.3)]
    b = [torch.log(torch.tensor([[p, 0.4]])) for p in (0.2, 0.2, 0.7)]
    wins = protocol.best_windows([a, b], 2, 2)
    pooled = [torch.tensor([(pa + pb) / 2, 0.3]) for pa, pb in ((0.1, 0.2), (0.6, 0.2), (0.3, 0.7))]
    ppl = [float(torch.exp(-p.log().mean())) for p in pooled]
    assert wins[1] == (pytest.approx(min(ppl)), ppl.index(min(ppl))) and wins[1][1] == 2  # chain a alone: 1
    assert protocol.best_windows([a], 2, 2)[1][1] == 1
    assert protocol.best_windows([a], 2, 2) == protocol.best_windows(a, 2, 2)


def test_chains_pool_their_windows_and_replicate_with_their_own_seeds():
    """An SSL point with ``chains=2``: both chains (training seeds 0 and 1000) snapshot every
    epoch, the window is chosen on their pooled mixture (at most ``ssl_max_snapshots // 2`` per
    chain), and the ensemble holds both chains' window; its validation ppl is recomputed here
    from the members. The replicate for training seed 1 trains chains 1 and 1001."""
    s = protocol_split(make_texts(40, seed=1), T1=20, T2=10, num_train=14, num_val=8, num_test=8, seed=0)
    grids = {"ssl": [dict(K=2, beta=0.1, hidden_size=8, dropout=0.0, num_particles=4, snapshot_every=1, chains=2)]}
    fixed = {"test_particles": 20, "curve_particles": 10, "ssl_epochs": 3, "ssl_max_snapshots": 4}
    fitted = {}
    res = protocol.run_protocol(s, ["ssl"], scale="quick", seeds=(0, 1), filter_seeds=(0,), grids=grids, fixed=fixed,
                                progress=False, fitted=fitted)
    cand, chosen = res["models"]["ssl"]["candidates"][0], res["models"]["ssl"]["chosen"]
    assert cand["chains"] == 2 and sorted(int(k) for k in cand["by_size"]) == [1, 2]
    ens = fitted[("ssl", 0)]
    assert len(ens.members) == 2 * chosen["snapshots"]
    assert ens.epochs == chosen["snapshot_epochs"] * 2
    assert [m.config.seed for m in ens.members] == [0] * chosen["snapshots"] + [1000] * chosen["snapshots"]
    tokens, lengths, T1 = s.task("val")
    lp = ens.token_log_probs(tokens, lengths, seed=0, num_particles=10)[:, T1:]
    assert cand["val_ppl"] == pytest.approx(math.exp(-float(lp.sum()) / int((lengths - T1).sum())), rel=1e-9)
    rep = fitted[("ssl", 1)]
    assert [m.config.seed for m in rep.members] == [1] * chosen["snapshots"] + [1001] * chosen["snapshots"]
    assert rep.epochs == chosen["snapshot_epochs"] * 2
    # the page counts every chain's members and says so
    row = protocol.results_table(res).splitlines()[-1]
    assert f"averaged over {2 * chosen['snapshots']} snapshots" in row or "2 snapshots (epoch" in row
    assert "of each of 2 chains" in row
