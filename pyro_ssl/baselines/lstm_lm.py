"""Word-level LSTM language model (the seed's comparison model, SPEC section 5)."""

from __future__ import annotations

import copy
import math
import time
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..runtime import get_threads
from .base import DocList, LanguageModel, intra_op_threads, length_mask, pad_docs

__all__ = ["LSTMLanguageModel", "LSTMNet"]


class LSTMNet(nn.Module):
    """Embedding -> dropout -> LSTM -> dropout -> linear over the ``V`` words.

    The input vocabulary has one extra symbol, ``bos = V``, fed at the first step so that
    the first word of a document is also predicted (from the begin-of-document state).
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        self.vocab_size = vocab_size
        self.bos = vocab_size
        self.embed = nn.Embedding(vocab_size + 1, embed_dim)
        # nn.LSTM's own dropout acts only between stacked layers; input/output dropout
        # below also regularises the single-layer model the seed used.
        self.lstm = nn.LSTM(
            embed_dim, hidden_size, num_layers=num_layers, batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-word logits.

        Args:
            tokens: ``(B, T)`` word ids ``x_0..x_{T-1}`` (padding anywhere after the end).

        Returns:
            ``(B, T, V)`` logits; row ``t`` parameterises ``p(x_t | x_{<t})``. Because the
            LSTM is causal, padding after a document's end cannot affect its real rows.
        """
        B = tokens.shape[0]
        bos = torch.full((B, 1), self.bos, dtype=torch.long, device=tokens.device)
        inputs = torch.cat([bos, tokens[:, :-1]], dim=1)  # shift right: predict x_t from x_{<t}
        h, _ = self.lstm(self.drop(self.embed(inputs)))
        return self.out(self.drop(h))


class LSTMLanguageModel(LanguageModel):
    """Word-level LSTM LM trained with Adam, early stopping on a held-out part of the
    *training* documents.

    Args:
        embed_dim, hidden_size, num_layers, dropout: architecture.
        lr: Adam learning rate. batch_size: documents per step.
        max_epochs: epoch cap. patience: epochs without validation improvement before
            stopping (the best weights are restored).
        val_fraction: fraction of the training documents held out for early stopping
            (0 disables early stopping; all documents are then used for training).
        grad_clip: max global gradient norm (``None`` or 0 disables).
        seed: seeds initialisation, the validation split, shuffling and dropout (the
            global RNG is forked, not reseeded).
        device: where to train; ``None`` = device of the training tensors (CPU for lists).
        verbose: print one line per epoch.
        num_threads: torch intra-op CPU threads used during :meth:`fit` (restored
            afterwards); default the package's setting (:mod:`pyro_ssl.runtime`, one).

    Fitted attributes:
        net: the :class:`LSTMNet`.
        history: list of dicts ``{epoch, train_loss, val_ppl, seconds}`` (``val_ppl`` is
            ``nan`` without a validation split).
        train_indices, val_indices: indices into the ``docs`` passed to :meth:`fit` (with
            ``val_docs``: ``val_indices`` count on from ``len(docs)``).
        best_epoch: epoch whose weights were restored.
    """

    name = "lstm"

    def __init__(
        self,
        embed_dim: int = 64,
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.2,
        lr: float = 1e-3,
        batch_size: int = 32,
        max_epochs: int = 30,
        patience: int = 3,
        val_fraction: float = 0.1,
        grad_clip: Optional[float] = 5.0,
        seed: int = 0,
        device: Union[str, torch.device, None] = None,
        verbose: bool = False,
        num_threads: Optional[int] = None,
    ):
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError("val_fraction must be in [0, 1)")
        self.embed_dim = embed_dim
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.grad_clip = grad_clip
        self.seed = seed
        self.device = torch.device(device) if device is not None else None
        self.verbose = verbose
        self.num_threads = num_threads
        self.net: Optional[LSTMNet] = None
        self.vocab_size: Optional[int] = None
        self.history: list[dict] = []
        self.train_indices: list[int] = []
        self.val_indices: list[int] = []
        self.best_epoch: int = -1

    # ----------------------------------------------------------------- training
    def _split(self, n: int, gen: torch.Generator) -> tuple[list[int], list[int]]:
        """Random train/validation split of the training-document indices."""
        n_val = int(round(self.val_fraction * n))
        if self.val_fraction > 0 and n >= 2:
            n_val = min(max(n_val, 1), n - 1)
        else:
            n_val = 0
        perm = torch.randperm(n, generator=gen).tolist()
        return sorted(perm[n_val:]), sorted(perm[:n_val])

    @staticmethod
    def _nll_sum(net: LSTMNet, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Summed negative log likelihood of the real tokens of a padded batch (scalar)."""
        logits = net(tokens)
        mask = length_mask(lengths, tokens.shape[1])
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1), reduction="none")
        return (nll * mask.reshape(-1)).sum()

    def _batches(self, docs: list[torch.Tensor], order: list[int], device: torch.device):
        for s in range(0, len(order), self.batch_size):
            yield pad_docs([docs[i] for i in order[s : s + self.batch_size]], device=device)

    @torch.no_grad()
    def _eval_ppl(self, docs: list[torch.Tensor], idx: list[int], device: torch.device) -> float:
        self.net.eval()
        total, n = 0.0, 0
        for tok, L in self._batches(docs, idx, device):
            total += float(self._nll_sum(self.net, tok, L))
            n += int(L.sum())
        return math.exp(total / max(n, 1))

    def fit(self, docs: DocList, vocab_size: int, val_docs: DocList | None = None, **kw) -> "LSTMLanguageModel":
        """Train on ``docs``.

        Without ``val_docs`` the early-stopping split is ``val_fraction`` of ``docs`` (so the
        model trains on the rest). With ``val_docs`` (separate validation documents, e.g. the
        protocol's validation reviews) it trains on *all* of ``docs`` and stops early on
        ``val_docs``; ``val_fraction`` is then ignored.
        """
        with intra_op_threads(self.num_threads if self.num_threads is not None else get_threads()):
            return self._fit(docs, vocab_size, val_docs)

    def _fit(self, docs: DocList, vocab_size: int, val_docs: DocList | None = None) -> "LSTMLanguageModel":
        seqs = [d.detach().reshape(-1).long() if isinstance(d, torch.Tensor)
                else torch.as_tensor(list(d), dtype=torch.long) for d in docs]
        n_train = len(seqs)
        if val_docs is not None:  # appended after the training documents, indexed from n_train
            seqs += [d.detach().reshape(-1).long() if isinstance(d, torch.Tensor)
                     else torch.as_tensor(list(d), dtype=torch.long) for d in val_docs]
        if self.device is not None:
            device = self.device
        elif len(docs) > 0 and isinstance(docs[0], torch.Tensor):
            device = docs[0].device
        else:
            device = torch.device("cpu")
        self.vocab_size = int(vocab_size)
        for s in seqs:
            if s.numel() and (int(s.min()) < 0 or int(s.max()) >= vocab_size):
                raise ValueError("token ids out of range [0, vocab_size)")
        seqs = [s.cpu() for s in seqs]  # batches are padded on the CPU, then moved once

        fork_devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(self.seed)  # dropout and initialisation
            gen = torch.Generator().manual_seed(self.seed)  # split and shuffling
            if val_docs is None:
                self.train_indices, self.val_indices = self._split(n_train, gen)
            else:
                self.train_indices, self.val_indices = list(range(n_train)), list(range(n_train, len(seqs)))
            self.net = LSTMNet(vocab_size, self.embed_dim, self.hidden_size, self.num_layers, self.dropout).to(device)
            opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
            best_ppl, best_state, bad = math.inf, None, 0
            self.history = []
            for epoch in range(self.max_epochs):
                t0 = time.perf_counter()
                self.net.train()
                perm = torch.randperm(len(self.train_indices), generator=gen).tolist()
                order = [self.train_indices[i] for i in perm]
                tot, ntok = 0.0, 0
                for tok, L in self._batches(seqs, order, device):
                    n = int(L.sum())
                    if n == 0:
                        continue
                    loss = self._nll_sum(self.net, tok, L) / n  # mean per token
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if self.grad_clip:
                        nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
                    opt.step()
                    tot += float(loss.detach()) * n
                    ntok += n
                val_ppl = self._eval_ppl(seqs, self.val_indices, device) if self.val_indices else float("nan")
                rec = {"epoch": epoch, "train_loss": tot / max(ntok, 1), "val_ppl": val_ppl,
                       "seconds": time.perf_counter() - t0}
                self.history.append(rec)
                if self.verbose:
                    print(f"[lstm] epoch {epoch}: train_loss {rec['train_loss']:.4f} val_ppl {val_ppl:.3f} "
                          f"({rec['seconds']:.1f}s)")
                if not self.val_indices:
                    self.best_epoch = epoch
                    continue
                if val_ppl < best_ppl:
                    best_ppl, bad, self.best_epoch = val_ppl, 0, epoch
                    best_state = copy.deepcopy(self.net.state_dict())
                else:
                    bad += 1
                    if bad >= self.patience:
                        break
            if best_state is not None:
                self.net.load_state_dict(best_state)
        self.net.eval()
        return self

    # ----------------------------------------------------------------- scoring
    @torch.no_grad()
    def predictive_log_probs(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T, V)`` next-word log distributions ``log p(. | x_{<t})`` (eval mode),
        on the device of ``tokens``; rows beyond ``lengths`` are computed but meaningless."""
        if self.net is None:
            raise RuntimeError("call fit() first")
        self._check_batch(tokens, lengths, self.vocab_size)
        self.net.eval()
        dev = next(self.net.parameters()).device
        mask = length_mask(lengths.to(tokens.device), tokens.shape[1])
        safe = torch.where(mask, tokens, torch.zeros_like(tokens)).to(dev)
        return torch.log_softmax(self.net(safe), dim=-1).to(tokens.device)

    @torch.no_grad()
    def token_log_probs(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` float64 ``log p(x_t | x_{<t})`` in eval mode, ``0.0`` at padding."""
        if tokens.shape[1] == 0:
            return torch.zeros(tokens.shape, dtype=torch.float64, device=tokens.device)
        logp = self.predictive_log_probs(tokens, lengths)
        mask = length_mask(lengths.to(tokens.device), tokens.shape[1])
        safe = torch.where(mask, tokens, torch.zeros_like(tokens))
        lp = logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1).double()
        return torch.where(mask, lp, torch.zeros_like(lp))
