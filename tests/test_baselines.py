"""Tests of the baseline language models against hand-computable answers.

Every random quantity uses a fixed seed; statistical tolerances are derived from the
Monte Carlo / sampling standard error where one applies (stated next to each check).
"""

import itertools
import math

import numpy as np
import pytest
import torch

from pyro_ssl.baselines import (
    BASELINES,
    HMM,
    LDABaseline,
    LanguageModel,
    LSTMLanguageModel,
    UnigramLM,
    intra_op_threads,
    pad_docs,
    perplexity,
)

DT = torch.float64


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Run this module's tiny models on one intra-op thread (restored afterwards).

    With ops this small, OpenMP threads spin-waiting on a shared, oversubscribed CPU
    made the LSTM fit 10-50x slower than one thread (measured: 16 s vs 0.3 s); results
    do not depend on the thread count beyond float rounding.
    """
    with intra_op_threads(1):
        yield


# --------------------------------------------------------------------------- helpers
def random_hmm(K, V, seed):
    g = torch.Generator().manual_seed(seed)
    lp = torch.log_softmax(torch.randn(K, generator=g, dtype=DT), -1)
    lA = torch.log_softmax(torch.randn(K, K, generator=g, dtype=DT), -1)
    lB = torch.log_softmax(torch.randn(K, V, generator=g, dtype=DT), -1)
    return lp, lA, lB


def enumerate_posterior(lp, lA, lB, x):
    """All K^L paths of one document: (paths (N, L), log p(x, z) (N,))."""
    K, L = lp.shape[0], len(x)
    x = torch.as_tensor(x)
    paths = torch.tensor(list(itertools.product(range(K), repeat=L)), dtype=torch.long)
    lj = lp[paths[:, 0]] + lB[paths, x].sum(1)
    if L > 1:
        lj = lj + lA[paths[:, :-1], paths[:, 1:]].sum(1)
    return paths, lj


def simulate_hmm(pi0, A, B, n_docs, T, seed):
    rs = np.random.RandomState(seed)
    K, V = B.shape
    docs, states = [], []
    for _ in range(n_docs):
        z = [rs.choice(K, p=pi0)]
        for _ in range(T - 1):
            z.append(rs.choice(K, p=A[z[-1]]))
        docs.append([int(rs.choice(V, p=B[k])) for k in z])
        states.append(z)
    return docs, states


# --------------------------------------------------------------------------- common API
def test_perplexity_helper_and_registry():
    assert perplexity(-2 * math.log(4.0), 2) == pytest.approx(4.0, rel=1e-12)
    assert perplexity(torch.tensor([-math.log(2.0), -math.log(8.0)], dtype=DT), 2) == pytest.approx(4.0, rel=1e-12)
    assert set(BASELINES) == {"unigram", "hmm", "kn", "lstm", "lda"}
    assert all(issubclass(cls, LanguageModel) for cls in BASELINES.values())
    tok, L = pad_docs([[1, 2, 3], [4]])
    assert tok.tolist() == [[1, 2, 3], [4, 0, 0]] and L.tolist() == [3, 1]


# --------------------------------------------------------------------------- unigram
def test_unigram_exact_perplexity():
    # counts n = [1, 3, 1, 0], N = 5, V = 4, beta = 1: p = [2, 4, 2, 1] / 9
    lm = UnigramLM(beta=1.0).fit([[0, 1, 1], [2, 1]], vocab_size=4)
    assert torch.allclose(lm.log_probs.exp(), torch.tensor([2, 4, 2, 1], dtype=DT) / 9, atol=1e-15)
    tok, L = pad_docs([[1, 3], [1, 3, 0]])
    ll = lm.log_likelihood(tok, L)
    assert ll[0].item() == pytest.approx(math.log(4 / 81), abs=1e-12)
    # perplexity of doc 0 = (81/4)^(1/2) = 4.5 exactly
    assert perplexity(ll[0], 2) == pytest.approx(4.5, rel=1e-12)
    # completion of doc 1 after T1 = 1: tokens 3, 0 -> p = 1/9 * 2/9
    comp = lm.completion_log_likelihood(tok, L, T1=1)
    assert comp[1].item() == pytest.approx(math.log(2 / 81), abs=1e-12)
    lp = lm.token_log_probs(tok, L)
    assert lp[0, 2].item() == 0.0  # padding


# --------------------------------------------------------------------------- HMM
def test_hmm_forward_matches_enumeration():
    K, V = 3, 4
    lp, lA, lB = random_hmm(K, V, seed=1)
    hmm = HMM.from_params(lp, lA, lB)
    docs = [[0, 3, 1, 1, 2], [2, 2, 0], [3], [1, 0, 3, 2]]
    tok, L = pad_docs(docs)
    tok[1, 3:] = V - 1  # arbitrary padding ids must not matter
    ll = hmm.log_likelihood(tok, L)
    tlp = hmm.token_log_probs(tok, L)
    marg = hmm.posterior_marginals(tok, L)
    for b, x in enumerate(docs):
        paths, lj = enumerate_posterior(lp, lA, lB, x)
        exact = torch.logsumexp(lj, 0)
        assert abs(ll[b].item() - exact.item()) < 1e-10
        # token_log_probs sums to the document log likelihood, zeros at padding
        assert abs(tlp[b].sum().item() - exact.item()) < 1e-10
        assert torch.all(tlp[b, len(x):] == 0)
        # smoothing marginals p(z_t = k | x) from the enumeration
        w = torch.softmax(lj, 0)
        exact_marg = torch.zeros(len(x), K, dtype=DT)
        for t in range(len(x)):
            exact_marg[t].index_add_(0, paths[:, t], w)
        assert torch.allclose(marg[b, : len(x)], exact_marg, atol=1e-10)
        assert torch.all(marg[b, len(x):] == 0)
        # padded batch equals the document scored alone
        alone = hmm.token_log_probs(torch.tensor([x]), torch.tensor([len(x)]))
        assert torch.allclose(alone[0], tlp[b, : len(x)], atol=1e-12)
        # log_joint agrees with the enumeration for one path
        z = torch.zeros(1, tok.shape[1], dtype=torch.long)
        z[0, : len(x)] = paths[7 % len(paths)]
        assert abs(hmm.log_joint(tok[b : b + 1], L[b : b + 1], z).item() - lj[7 % len(paths)].item()) < 1e-12


def test_hmm_sample_paths_match_exact_posterior():
    K, V = 3, 4
    lp, lA, lB = random_hmm(K, V, seed=2)
    hmm = HMM.from_params(lp, lA, lB)
    docs = [[0, 3, 1, 2], [2, 2]]
    tok, L = pad_docs(docs)
    N = 20000
    z = hmm.sample_paths(tok.repeat(N, 1), L.repeat(N), generator=torch.Generator().manual_seed(0))
    z = z.view(N, 2, -1)
    assert torch.all(z[:, 1, 2:] == 0)  # padding positions are 0
    marg = hmm.posterior_marginals(tok, L)

    def check(freq, p):
        # N i.i.d. exact draws: each frequency is Binomial(N, p)/N with standard error
        # sqrt(p (1 - p) / N); allow 5 standard errors (two-sided false-alarm rate
        # ~6e-7 per cell, ~1e-4 over all cells checked here).
        se = torch.sqrt(p * (1 - p) / N)
        assert torch.all((freq - p).abs() <= 5 * se + 1e-12), (freq, p)

    for b, x in enumerate(docs):
        onehot = torch.nn.functional.one_hot(z[:, b, : len(x)], K).to(DT)
        check(onehot.mean(0), marg[b, : len(x)])
        # whole-path frequencies against the exact joint posterior (tests the backward
        # sampling of the dependence between steps, not only the marginals)
        paths, lj = enumerate_posterior(lp, lA, lB, x)
        code = (z[:, b, : len(x)] * (K ** torch.arange(len(x) - 1, -1, -1))).sum(1)
        freq = torch.bincount(code, minlength=K ** len(x)).to(DT) / N
        check(freq, torch.softmax(lj, 0))  # itertools.product order = base-K code order


def test_hmm_em_monotone_and_recovers_emissions():
    pi0 = np.array([0.6, 0.4])
    A = np.array([[0.9, 0.1], [0.2, 0.8]])
    B = np.array([[0.45, 0.30, 0.20, 0.02, 0.02, 0.01],
                  [0.01, 0.02, 0.02, 0.20, 0.30, 0.45]])
    docs, _ = simulate_hmm(pi0, A, B, n_docs=100, T=50, seed=0)
    hmm = HMM(K=2, beta=0.01, alpha=1.0, n_iter=200, tol=1e-6, seed=0).fit(docs, vocab_size=6)
    h = np.array(hmm.history)
    assert hmm.converged and len(h) >= 3
    # EM is monotone in the penalised objective (up to float rounding)
    assert np.all(np.diff(h) >= -1e-8 * np.abs(h[:-1]))
    est_B = hmm.log_B.exp().numpy()
    est_A = hmm.log_A.exp().numpy()
    perm = [0, 1] if abs(est_B[0] - B[0]).sum() < abs(est_B[0] - B[1]).sum() else [1, 0]
    # ~2500 tokens per state: emission probabilities have standard error
    # sqrt(p (1-p) / 2500) <= 0.01, so 0.05 is about 5 standard errors; transitions are
    # estimated from ~2500 transitions per row (SE <= 0.008).
    assert np.max(np.abs(est_B[perm] - B)) < 0.05
    assert np.max(np.abs(est_A[np.ix_(perm, perm)] - A)) < 0.05
    # the fitted model explains the data better than the unigram model
    tok, L = pad_docs(docs)
    uni = UnigramLM(beta=0.01).fit(docs, 6)
    assert hmm.log_likelihood(tok, L).sum() > uni.log_likelihood(tok, L).sum() + 100


def test_hmm_k1_equals_unigram():
    rs = np.random.RandomState(3)
    docs = [list(rs.randint(0, 7, size=n)) for n in (5, 9, 3, 12)]
    beta = 0.5
    hmm = HMM(K=1, beta=beta, alpha=1.0, n_iter=5).fit(docs, vocab_size=8)
    uni = UnigramLM(beta=beta).fit(docs, vocab_size=8)
    assert torch.allclose(hmm.log_B[0], uni.log_probs, atol=1e-12)
    tok, L = pad_docs(docs)
    assert torch.allclose(hmm.token_log_probs(tok, L), uni.token_log_probs(tok, L), atol=1e-12)
    assert torch.allclose(hmm.completion_log_likelihood(tok, L, 2), uni.completion_log_likelihood(tok, L, 2), atol=1e-12)


def test_hmm_chunked_em_equals_single_batch():
    # documents of different lengths, E-step in chunks of 2 (sorted by length) or in
    # one padded batch: the expected counts, hence the parameters, must agree
    rs = np.random.RandomState(4)
    docs = [list(rs.randint(0, 9, size=n)) for n in (7, 1, 12, 4, 9, 3, 15)]
    a = HMM(K=3, n_iter=6, tol=0.0, seed=1, chunk_size=2, num_threads=2).fit(docs, vocab_size=9)
    b = HMM(K=3, n_iter=6, tol=0.0, seed=1, chunk_size=1000).fit(docs, vocab_size=9)
    assert np.allclose(a.history, b.history, rtol=0, atol=1e-9)
    for x, y in ((a.log_pi0, b.log_pi0), (a.log_A, b.log_A), (a.log_B, b.log_B)):
        assert torch.allclose(x, y, atol=1e-12)
    assert torch.get_num_threads() == 1  # num_threads is restored (module fixture set 1)


def test_hmm_restarts_keep_the_best_objective():
    rs = np.random.RandomState(5)
    docs = [list(rs.randint(0, 9, size=n)) for n in (17, 11, 22, 14, 19, 9)]
    runs = [HMM(K=3, n_iter=15, seed=s).fit(docs, vocab_size=9) for s in (21, 22, 23)]
    best = HMM(K=3, n_iter=15, seed=7, restarts=3).fit(docs, vocab_size=9)  # starts 7 * 3 + r
    finals = [r.history[-1] for r in runs]
    assert best.restart_objectives == pytest.approx(finals)
    i = int(np.argmax(finals))
    assert best.best_restart_seed == 21 + i and best.history == runs[i].history
    assert torch.equal(best.log_B, runs[i].log_B) and torch.equal(best.log_A, runs[i].log_A)
    assert len(set(np.round(finals, 6))) > 1  # the starts really differ
    # another training seed restarts from disjoint initialisations
    other = HMM(K=3, n_iter=15, seed=8, restarts=3).fit(docs, vocab_size=9)
    assert other.best_restart_seed in (24, 25, 26)
    with pytest.raises(ValueError):
        HMM(K=2, restarts=0)


# --------------------------------------------------------------------------- LSTM LM
def cyclic_docs(n_docs, length, V, seed):
    rs = np.random.RandomState(seed)
    return [[(int(o) + t) % V for t in range(length)] for o in rs.randint(0, V, size=n_docs)]


@pytest.fixture(scope="module")
def lstm_fit():
    V = 5
    docs = cyclic_docs(40, 20, V, seed=0)
    lm = LSTMLanguageModel(embed_dim=16, hidden_size=32, dropout=0.1, lr=1e-2, batch_size=8,
                           max_epochs=40, patience=5, val_fraction=0.2, seed=0)
    return lm.fit(docs, vocab_size=V), docs, V


def test_lstm_learns_deterministic_sequences(lstm_fit):
    lm, _, V = lstm_fit
    test = cyclic_docs(10, 20, V, seed=1)
    tok, L = pad_docs(test)
    ll = lm.log_likelihood(tok, L)
    # only the first token of each document is unpredictable (ppl 5 there):
    # the ideal perplexity is 5^(1/20) = 1.08
    assert perplexity(ll.sum(), int(L.sum())) < 1.5
    comp = lm.completion_log_likelihood(tok, L, T1=10)
    assert perplexity(comp.sum(), int((L - 10).sum())) < 1.1


def test_lstm_token_log_probs_valid_and_padding(lstm_fit):
    lm, _, V = lstm_fit
    docs = [[0, 1, 2, 3], [4, 0], [2, 3, 4, 0, 1, 2]]
    tok, L = pad_docs(docs)
    logp = lm.predictive_log_probs(tok, L)
    assert logp.shape == (3, tok.shape[1], V)
    # every next-token distribution is normalised over the vocabulary
    assert torch.allclose(torch.logsumexp(logp, -1), torch.zeros(3, tok.shape[1]), atol=1e-5)
    lp = lm.token_log_probs(tok, L)
    assert torch.all(lp <= 0) and torch.all(lp[1, 2:] == 0)
    for b, x in enumerate(docs):
        alone = lm.token_log_probs(torch.tensor([x]), torch.tensor([len(x)]))
        assert torch.allclose(alone[0], lp[b, : len(x)], atol=1e-5)
    assert torch.allclose(lm.log_likelihood(tok, L), lp.sum(1))
    # scoring is deterministic (eval mode: no dropout)
    assert torch.equal(lm.token_log_probs(tok, L), lp)


def test_lstm_early_stopping_uses_training_docs_only(lstm_fit):
    lm, docs, _ = lstm_fit
    n = len(docs)
    # the validation split is a subset of the training documents, disjoint from the
    # documents trained on; fit() never sees any other (test) document
    assert set(lm.val_indices) | set(lm.train_indices) == set(range(n))
    assert not set(lm.val_indices) & set(lm.train_indices)
    assert len(lm.val_indices) == 8  # 0.2 * 40
    hist = lm.history
    assert all({"epoch", "train_loss", "val_ppl", "seconds"} <= set(r) for r in hist)
    best = min(range(len(hist)), key=lambda i: hist[i]["val_ppl"])
    assert lm.best_epoch == hist[best]["epoch"]
    # the restored weights are the best epoch's: recomputing the validation perplexity
    # on docs[val_indices] reproduces the recorded minimum
    tok, L = pad_docs([docs[i] for i in lm.val_indices])
    val_ppl = perplexity(lm.log_likelihood(tok, L).sum(), int(L.sum()))
    assert val_ppl == pytest.approx(hist[best]["val_ppl"], rel=1e-4)
    if len(hist) < lm.max_epochs:  # stopped early: the last `patience` epochs did not improve
        assert len(hist) - 1 - best == lm.patience


def test_lstm_val_docs_train_on_all_documents():
    V = 5
    docs, val = cyclic_docs(12, 15, V, seed=2), cyclic_docs(4, 15, V, seed=3)
    lm = LSTMLanguageModel(embed_dim=8, hidden_size=8, lr=1e-2, batch_size=4, max_epochs=3, patience=1,
                           val_fraction=0.5, seed=0).fit(docs, vocab_size=V, val_docs=val)
    # every training document is trained on; early stopping reads the separate documents only
    assert lm.train_indices == list(range(12)) and lm.val_indices == list(range(12, 16))
    tok, L = pad_docs(val)
    best = min(r["val_ppl"] for r in lm.history)
    assert perplexity(lm.log_likelihood(tok, L).sum(), int(L.sum())) == pytest.approx(best, rel=1e-4)


# --------------------------------------------------------------------------- LDA
def two_type_corpus(n_docs, length, seed):
    """Type-0 documents use words 0..9, type-1 documents words 10..19 (uniformly)."""
    rs = np.random.RandomState(seed)
    return [list(rs.randint(0, 10, size=length) + 10 * (i % 2)) for i in range(n_docs)]


@pytest.fixture(scope="module")
def lda_fit():
    docs = two_type_corpus(60, 40, seed=0)
    return LDABaseline(K=2, passes=20, iterations=100, alpha="auto", seed=0).fit(docs, vocab_size=20), docs


def test_lda_predictive_normalised(lda_fit):
    lda, _ = lda_fit
    assert lda.topics.shape == (2, 20)
    assert torch.allclose(lda.topics.sum(1), torch.ones(2, dtype=DT), atol=1e-12)
    theta = torch.distributions.Dirichlet(torch.ones(2, dtype=DT)).sample((5,))
    p = lda.predictive(theta)
    assert torch.all(p > 0)
    assert torch.allclose(p.sum(1), torch.ones(5, dtype=DT), atol=1e-12)
    # the two topics are the two vocabularies
    top = sorted(sorted(w) for w in lda.top_words(10))
    assert top == [list(range(10)), list(range(10, 20))]


def test_lda_completion_uses_prefix_only_and_beats_unigram(lda_fit):
    lda, docs = lda_fit
    test = two_type_corpus(20, 40, seed=1)
    tok, L = pad_docs(test)
    L[3] = 30  # one shorter document (padding beyond 30)
    T1 = 20
    comp = lda.completion_log_likelihood(tok, L, T1)
    # hand computation: theta from the prefix x_{<T1}, p(w) = sum_k theta_k phi_k[w]
    theta = lda.infer_theta([tok[b, :T1] for b in range(len(test))])
    manual = torch.stack([torch.log(lda.predictive(theta[b : b + 1])[0, tok[b, T1 : int(L[b])]]).sum()
                          for b in range(len(test))])
    assert torch.allclose(comp, manual, atol=1e-10)
    # the held-out tokens do not influence the fold-in: moving doc 0's continuation to
    # the other vocabulary leaves its prefix mixture unchanged
    tok2 = tok.clone()
    tok2[0, T1:] = (tok2[0, T1:] + 10) % 20
    comp2 = lda.completion_log_likelihood(tok2, L, T1)
    assert comp2[0].item() == pytest.approx(torch.log(lda.predictive(theta[:1])[0, tok2[0, T1:]]).sum().item(), abs=1e-10)
    assert comp2[0] < comp[0] - 20  # continuation from the wrong topic is much less likely
    # token_log_probs with T1 uses the same prefix mixture for t >= T1
    tlp = lda.token_log_probs(tok[:4], L[:4], T1=T1)
    assert torch.allclose(tlp[:, T1:].sum(1), comp[:4], atol=1e-10)
    n = int((L - T1).sum())
    lda_ppl = perplexity(comp.sum(), n)
    uni = UnigramLM(beta=1.0).fit(docs, 20)
    uni_ppl = perplexity(uni.completion_log_likelihood(tok, L, T1).sum(), n)
    # ideal values: 10 for LDA (one vocabulary of 10 words), 20 for the unigram model
    assert lda_ppl < 11.0 and uni_ppl > 19.0
    assert lda_ppl < 0.6 * uni_ppl


def test_lda_chain_rule_scoring(lda_fit):
    """scoring="chain": every held-out token gets the mixture folded in from all earlier tokens,
    exactly token_log_probs' running mixture (the chain rule the other models use)."""
    lda, _ = lda_fit
    chain = LDABaseline(K=2, scoring="chain")
    chain.__dict__.update({k: v for k, v in lda.__dict__.items() if k != "scoring"})
    tok, L = pad_docs(two_type_corpus(6, 30, seed=2))
    L[1] = 25
    T1 = 20
    got = chain.completion_log_likelihood(tok, L, T1)
    running = lda.token_log_probs(tok, L, T1=None)
    assert torch.allclose(got, running[:, T1:].sum(1), atol=1e-10)
    assert not torch.allclose(got, lda.completion_log_likelihood(tok, L, T1), atol=1e-6)
    with pytest.raises(ValueError):
        LDABaseline(K=2, scoring="other")
