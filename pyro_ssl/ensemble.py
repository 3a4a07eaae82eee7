"""Predictions averaged over snapshots of one training run: a snapshot ensemble.

Stochastic EM with particle Gibbs moves the paths, ``phi`` and the LSTM weights along one chain,
so models taken at several late epochs differ (on the protocol's validation reviews each
snapshot's own perplexity moves by a few points from one epoch to the next). A
:class:`SnapshotEnsemble` predicts every token by the equal-weight mixture of its members,

    p(x_t | x_<t) = (1/S) sum_s p_s(x_t | x_<t),

where each ``p_s`` is a member's particle-filter estimate. Every factor is a distribution over
the vocabulary, so the product over ``t`` is a proper language model and perplexities compare
with any other model's. It is an ensemble of one chain's snapshots, not one model's posterior
predictive: the members are not reweighted by how well they explain ``x_<t``. How much it helps,
measured on validation only, is in ``docs/results_notes.md``.

    ens = SnapshotEnsemble(SSL(K=100, beta=0.03, preset="heuristic"), every=5, size=8)
    ens.fit(train_docs, epochs=65)   # snapshots at epochs 30, 35, ..., 65
    ens.completion_perplexity(tokens, lengths, T1=100)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from . import evaluation
from .baselines.base import LanguageModel, length_mask
from .config import check_dir, check_int, check_seed
from .estimator import SSL, _check_completion, _check_seeds, as_tokens

__all__ = ["SnapshotEnsemble"]

_INDEX_FILE = "ensemble.json"


class SnapshotEnsemble(LanguageModel):
    """Equal-weight mixture of the predictions of ``size`` snapshots of one SSL, ``every`` epochs apart.

    Args:
        base: the :class:`~pyro_ssl.SSL` to train (fitted or not; ``fit`` continues it).
        every: epochs between snapshots.
        size: number of snapshots; the last is taken when training ends.

    Attributes:
        members: the snapshots (:meth:`SSL.snapshot`), oldest first, once fitted.
    """

    name = "ssl-snapshots"

    def __init__(self, base: SSL | None = None, *, every: int = 5, size: int = 8):
        if base is not None and not isinstance(base, SSL):
            raise TypeError(f"base must be an SSL, got {type(base).__name__}")
        self.base = base
        self.every = check_int("every", every, 1)
        self.size = check_int("size", size, 1)
        self.members: list[SSL] = []

    @classmethod
    def from_members(cls, members: Sequence[SSL]) -> "SnapshotEnsemble":
        """An ensemble of already fitted models (snapshots), e.g. chosen on validation."""
        members = list(members)
        if not members:
            raise ValueError("a SnapshotEnsemble needs at least one member")
        for m in members:
            if not isinstance(m, SSL):
                raise TypeError(f"members must be SSL models, got {type(m).__name__}")
            m._check_fitted()
        if len({m.V for m in members}) != 1:
            raise ValueError(f"members disagree on the vocabulary size: {sorted({m.V for m in members})}")
        ens = cls(None, every=1, size=len(members))
        ens.members = members
        return ens

    @property
    def V(self) -> int:
        self._check_fitted()
        return self.members[0].V

    @property
    def epochs(self) -> list[int]:
        """The training epoch of every member."""
        return [len(m.history) for m in self.members]

    def _check_fitted(self):
        if not self.members:
            raise RuntimeError("this SnapshotEnsemble has no members yet; call fit() or from_members()")

    # ------------------------------------------------------------------ learning
    def fit(self, data, epochs: int | None = None, **fit_settings) -> "SnapshotEnsemble":
        """Train ``base`` until it has ``epochs`` epochs in all, keeping the snapshots at epochs
        ``epochs - (size - 1) * every, ..., epochs``.

        ``epochs`` defaults to the base's ``epochs`` setting; ``fit_settings`` go to
        :meth:`SSL.fit` (``vocab_size``, ``progress``, ``eval_data``, ...). A base already
        trained past the first snapshot epoch is refused.
        """
        if self.base is None:
            raise RuntimeError("an ensemble made by from_members has no base model to train")
        total = self.base.config.learning.epochs if epochs is None else check_int("epochs", epochs, 1)
        first = total - (self.size - 1) * self.every
        done = len(self.base.history)
        if first < 1:
            raise ValueError(f"epochs={total} is too few for {self.size} snapshots {self.every} epochs apart "
                             f"(the first would be at epoch {first}); train longer or take fewer snapshots")
        if done > first:
            raise ValueError(f"the base model has trained {done} epochs, past the first snapshot epoch {first}")
        self.members = []
        for target in range(first, total + 1, self.every):
            if target > len(self.base.history):
                self.base.fit(data, epochs=target - len(self.base.history), **fit_settings)
                if len(self.base.history) < target:  # early stopping ended the run
                    raise RuntimeError(f"training stopped at epoch {len(self.base.history)} before snapshot "
                                       f"epoch {target}; fit the ensemble without early stopping")
            self.members.append(self.base.snapshot())
        return self

    # ------------------------------------------------------------------ scoring
    def token_log_probs(self, tokens: torch.Tensor, lengths: torch.Tensor, seed: int = 0,
                        num_particles: int | None = None) -> torch.Tensor:
        """``(B, T)`` float64 ``log (1/S) sum_s p_s(x_t | x_<t)`` (0 at padding); each member's
        ``p_s`` is its particle-filter estimate with filter ``seed`` and ``num_particles``
        particles (default: its ``eval_particles`` setting)."""
        self._check_fitted()
        tokens, lengths, _, _ = as_tokens((tokens, lengths), self.V)
        seed = check_seed("seed", seed)
        lps = torch.stack([m.token_log_probs(tokens, lengths, seed=seed, num_particles=num_particles).double()
                           for m in self.members])
        mix = torch.logsumexp(lps, 0) - math.log(len(self.members))
        return torch.where(length_mask(lengths.to(mix.device), tokens.shape[1]), mix, torch.zeros_like(mix))

    def completion_perplexity(self, tokens, lengths, T1: int, num_particles: int | None = None,
                              seeds=(0, 1, 2)) -> evaluation.Estimate:
        """Completion perplexity of the tokens after the first ``T1`` of each document; mean and
        sd over the particle-filter ``seeds`` (the evaluator's Monte Carlo error only)."""
        self._check_fitted()
        tokens, lengths, T1 = _check_completion(tokens, lengths, T1, self.V)
        n = int((lengths - T1).clamp(min=0).sum())
        return evaluation.replicate(
            lambda s: evaluation.perplexity(float(self.token_log_probs(tokens, lengths, s, num_particles)[:, T1:].sum()), n),
            _check_seeds(seeds), self._particles(num_particles))

    def score(self, data, num_particles: int | None = None, seeds=(0, 1, 2)) -> evaluation.Estimate:
        """Per-token held-out log likelihood of ``data`` (mean and sd over filter ``seeds``)."""
        self._check_fitted()
        tokens, lengths, _, _ = as_tokens(data, self.V)
        n = int(lengths.sum())
        return evaluation.replicate(lambda s: float(self.token_log_probs(tokens, lengths, s, num_particles).sum()) / n,
                                    _check_seeds(seeds), self._particles(num_particles))

    def _particles(self, num_particles: int | None) -> int:
        return self.members[0].config.learning.eval_particles if num_particles is None else int(num_particles)

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> Path:
        """Save to a directory: one :meth:`SSL.save` directory per member and an index
        (``ensemble.json``, written last, so a half-written ensemble does not load)."""
        self._check_fitted()
        check_dir("path", path)
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        names = [f"snapshot-{i:03d}" for i in range(len(self.members))]
        for name, m in zip(names, self.members):
            m.save(path / name)
        index = {"format": 1, "kind": "SnapshotEnsemble", "members": names, "epochs": self.epochs}
        (path / _INDEX_FILE).write_text(json.dumps(index, indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path, device=None) -> "SnapshotEnsemble":
        """Load an ensemble saved by :meth:`save` (each member loads as :meth:`SSL.load` does)."""
        path = Path(path)
        index_file = path / _INDEX_FILE
        if not index_file.is_file():
            raise FileNotFoundError(f"{index_file}: not found; is {path} a saved SnapshotEnsemble?")
        try:
            index = json.loads(index_file.read_text(encoding="utf-8"))
            names = index["members"]
            ok = index.get("kind") == "SnapshotEnsemble" and isinstance(names, list) and names and all(
                isinstance(n, str) and n.startswith("snapshot-") and "/" not in n and "\\" not in n for n in names)
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{index_file}: not a SnapshotEnsemble index ({e})") from e
        if not ok:
            raise ValueError(f"{index_file}: not a SnapshotEnsemble index")
        return cls.from_members([SSL.load(path / n, device=device) for n in names])

    def __repr__(self) -> str:
        state = f"epochs {self.epochs}" if self.members else f"unfitted, {self.size} snapshots {self.every} epochs apart"
        return f"SnapshotEnsemble({state})"

