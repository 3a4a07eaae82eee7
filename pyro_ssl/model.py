"""The Topical State Space LSTM as a Pyro model (SPEC section 1).

Three pieces:

* :class:`LSTMPrior`, a :class:`~pyro.nn.PyroModule` holding ``theta`` (topic embedding, LSTM
  cell, output layer). It gives ``p(z_t | z_<t)`` two ways that must agree: teacher-forced
  over whole sequences (:meth:`LSTMPrior.sequence_log_prob`, used by the M-step) and one step
  at a time from a carried state (:meth:`LSTMPrior.step`, used by the particle sweep).
* :class:`TopicSequence`, the LSTM prior as a sequence-level distribution over ``z`` (log_prob
  by teacher forcing, sample by ancestral sampling), masked by document lengths.
* :class:`TopicalSSL.model`, the generative story with ``phi``, ``z`` and ``x`` sample sites.

Shapes: ``B`` documents, ``T`` padded length, ``K`` topics, ``V`` words, ``H`` hidden units,
``P`` particles.
"""

from __future__ import annotations

from typing import NamedTuple

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from pyro.distributions.torch_distribution import TorchDistribution
from pyro.nn import PyroModule
from torch import nn

from .runtime import hot_loop

__all__ = [
    "LSTMPrior",
    "DropoutMasks",
    "LSTMState",
    "StepWeights",
    "TopicSequence",
    "TopicEmission",
    "TopicalSSL",
    "length_mask",
    "emission_log_probs",
    "log_joint",
]


class LSTMState(NamedTuple):
    """Carried recurrent state: ``h`` and ``c`` of shape ``batch_shape + (H,)``."""

    h: torch.Tensor
    c: torch.Tensor


class StepWeights(NamedTuple):
    """:class:`LSTMPrior` weights laid out for the one-step update (:meth:`LSTMPrior.step_weights`).

    The ``g`` (cell-candidate) block of ``table`` and ``w_hh_t`` is doubled, so that
    ``sigmoid`` of the gate pre-activations yields ``sigmoid(2 g)`` and
    ``tanh(g) = 2 sigmoid(2 g) - 1`` needs no separate ``tanh`` pass.

    Attributes:
        table: ``(K + 1, 4H)`` input contributions of every symbol plus both biases.
        w_hh_t: ``(H, 4H)`` recurrent weights, transposed and contiguous.
        w_out_t: ``(H, K)`` output weights, transposed; ``b_out``: ``(K,)``.
    """

    table: torch.Tensor
    w_hh_t: torch.Tensor
    w_out_t: torch.Tensor
    b_out: torch.Tensor


class DropoutMasks(NamedTuple):
    """Inverted-dropout masks (already scaled by ``1 / (1 - p)``): ``embed`` ``(B, T, E)`` on the
    topic embedding and ``hidden`` ``(B, T, H)`` on the LSTM output."""

    embed: torch.Tensor
    hidden: torch.Tensor


def length_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """Boolean mask ``(B, T)``, true at real (non-padding) steps."""
    return torch.arange(T, device=lengths.device) < lengths.unsqueeze(-1)


class LSTMPrior(PyroModule):
    """LSTM prior over topic sequences: ``p(z_t = k | z_<t) = softmax(W s_t + b)_k``.

    ``s_t = LSTM(s_{t-1}, embed(z_{t-1}))`` with ``z_0`` a start symbol (index ``K``) and
    ``s_0 = 0``. Dropout (training only) acts on the embedding and on ``s_t`` before the
    output layer, so in eval mode the one-step and sequence paths are the same function.

    Args:
        K: number of topics.
        hidden_size: ``H``.
        embed_dim: topic embedding size (defaults to ``H``).
        dropout: dropout probability used by the M-step.
    """

    def __init__(self, K: int, hidden_size: int = 64, embed_dim: int | None = None, dropout: float = 0.2):
        super().__init__()
        if K < 1:
            raise ValueError(f"K must be >= 1, got {K}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.K = int(K)
        self.hidden_size = int(hidden_size)
        self.embed_dim = int(embed_dim or hidden_size)
        self.embed = nn.Embedding(self.K + 1, self.embed_dim)
        self.lstm = nn.LSTM(self.embed_dim, self.hidden_size, batch_first=True)
        self.out = nn.Linear(self.hidden_size, self.K)
        self.drop = nn.Dropout(dropout)

    @property
    def start_symbol(self) -> int:
        return self.K

    @property
    def device(self) -> torch.device:
        return self.out.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.out.weight.dtype

    # ----------------------------------------------------------------- sequence path
    def sequence_logits(self, z: torch.Tensor, dropout_masks: DropoutMasks | None = None) -> torch.Tensor:
        """Teacher-forced logits.

        Args:
            z: ``(B, T)`` long topic sequences (padding values are ignored by callers).
            dropout_masks: inverted-dropout masks to use instead of ``nn.Dropout``'s draws
                (learning keys them by document, :func:`pyro_ssl.infer.mstep.dropout_masks`).
        Returns:
            ``(B, T, K)`` unnormalised log ``p(z_t | z_<t)``.
        """
        start = torch.full_like(z[:, :1], self.start_symbol)
        inputs = torch.cat([start, z[:, :-1]], dim=1).clamp(0, self.K)
        e = self.embed(inputs)
        e = self.drop(e) if dropout_masks is None else e * dropout_masks.embed
        s, _ = self.lstm(e)
        s = self.drop(s) if dropout_masks is None else s * dropout_masks.hidden
        return self.out(s)

    def sequence_log_prob(self, z: torch.Tensor, mask: torch.Tensor | None = None,
                          dropout_masks: DropoutMasks | None = None) -> torch.Tensor:
        """``log p(z | theta)`` per sequence, ``(B,)``; ``mask`` ``(B, T)`` drops padding."""
        logp = torch.log_softmax(self.sequence_logits(z, dropout_masks), dim=-1)
        logp = logp.gather(-1, z.clamp(0, self.K - 1).unsqueeze(-1)).squeeze(-1)
        if mask is not None:
            logp = logp.masked_fill(~mask, 0.0)
        return logp.sum(-1)

    def continuation_log_prob(self, state: LSTMState, inputs: torch.Tensor,
                              targets: torch.Tensor) -> tuple[torch.Tensor, LSTMState]:
        """Rows continuing from ``state`` (no dropout): each is fed ``inputs`` and scores ``targets``.

        Args:
            state: ``(N, H)`` states before the first input; inputs ``(N, W)`` the topic fed at
                each position (``K`` is the start symbol), targets ``(N, W)`` the topic scored there.
        Returns:
            ``(log p (N, W), state after the last input (N, H))``.
        """
        s, (h, c) = self.lstm(self.embed(inputs.clamp(0, self.K)),
                              (state.h.unsqueeze(0).contiguous(), state.c.unsqueeze(0).contiguous()))
        logp = torch.log_softmax(self.out(s), dim=-1).gather(-1, targets.clamp(0, self.K - 1).unsqueeze(-1))
        return logp.squeeze(-1), LSTMState(h[0], c[0])

    # ----------------------------------------------------------------- one-step path
    def initial_state(self, batch_shape: tuple[int, ...]) -> tuple[LSTMState, torch.Tensor]:
        """Zero state and start-symbol input for a batch of sequences (or particles)."""
        zeros = torch.zeros(*batch_shape, self.hidden_size, device=self.device, dtype=self.dtype)
        z0 = torch.full(batch_shape, self.start_symbol, device=self.device, dtype=torch.long)
        return LSTMState(zeros, zeros.clone()), z0

    def input_table(self) -> torch.Tensor:
        """Input-gate contributions of every topic symbol, ``(K + 1, 4H)``.

        The embedding enters the LSTM only through ``W_ih embed(z) + b``, and ``z`` takes
        ``K + 1`` values, so precomputing this table turns the per-step input projection into
        a row lookup (the particle sweep is dominated by the recurrent matmul alone).
        """
        lstm = self.lstm
        return F.linear(self.embed.weight, lstm.weight_ih_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0)

    def step_weights(self, table: torch.Tensor | None = None) -> "StepWeights":
        """The weights of :meth:`step` laid out once for many steps (see :class:`StepWeights`).

        Args:
            table: optional :meth:`input_table` (recomputed when omitted).
        """
        if table is None:
            table = self.input_table()
        H = self.hidden_size
        # tanh(g) = 2 sigmoid(2 g) - 1: doubling the g block lets one sigmoid cover all four
        # gates (torch's CPU tanh is several times slower than its sigmoid).
        scale = torch.ones(4 * H, device=table.device, dtype=table.dtype)
        scale[2 * H : 3 * H] = 2.0
        return StepWeights(
            table=(table * scale).contiguous(),
            w_hh_t=(self.lstm.weight_hh_l0.T * scale).contiguous(),
            w_out_t=self.out.weight.T.contiguous(),
            b_out=self.out.bias,
        )

    def step(
        self,
        z_prev: torch.Tensor,
        state: LSTMState,
        table: "torch.Tensor | StepWeights | None" = None,
    ) -> tuple[torch.Tensor, LSTMState]:
        """Advance the LSTM one step (eval-mode semantics, no dropout).

        Args:
            z_prev: ``batch_shape`` long (or int32), the previous topic (or the start symbol).
            state: carried ``s_{t-1}``, each ``batch_shape + (H,)``.
            table: optional :meth:`step_weights` (or :meth:`input_table`), passed in by callers
                that step many times.
        Returns:
            ``(log_pi, state)``: ``log p(z_t | z_<t)`` of shape ``batch_shape + (K,)`` and ``s_t``.
        """
        w = table if isinstance(table, StepWeights) else self.step_weights(table)
        batch_shape = z_prev.shape
        H = self.hidden_size
        h = state.h.reshape(-1, H)
        # Look up the input rows, then one in-place GEMM adds the recurrent term: (N, 4H).
        # (An out-of-place addmm would first copy the looked-up rows into a fresh buffer.)
        gates = w.table.index_select(0, z_prev.reshape(-1)).addmm_(h, w.w_hh_t)
        gates = gates.sigmoid_()  # i, f, sigmoid(2 g), o in one pass
        i, f, g2, o = gates.chunk(4, dim=-1)
        c = torch.addcmul(f * state.c.reshape(-1, H), i, g2.mul(2.0).sub_(1.0))  # f c + i tanh(g)
        h = (c * 2.0).sigmoid_().mul_(2.0).sub_(1.0).mul_(o)  # o tanh(c)
        log_pi = torch.log_softmax(torch.addmm(w.b_out, h, w.w_out_t), dim=-1)
        return (
            log_pi.view(*batch_shape, self.K),
            LSTMState(h.view(*batch_shape, H), c.view(*batch_shape, H)),
        )

    @torch.no_grad()
    @hot_loop
    def sample(self, batch_size: int, T: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral sample of ``(batch_size, T)`` topic sequences (eval-mode prior)."""
        table = self.step_weights()
        state, z_prev = self.initial_state((batch_size,))
        out = torch.empty(batch_size, T, dtype=torch.long, device=self.device)
        for t in range(T):
            log_pi, state = self.step(z_prev, state, table)
            z_prev = torch.multinomial(log_pi.exp(), 1, generator=generator).squeeze(-1)
            out[:, t] = z_prev
        return out


class TopicSequence(TorchDistribution):
    """The LSTM prior as a distribution over whole topic sequences.

    ``batch_shape = (B,)``, ``event_shape = (T,)``; values are long ``(B, T)`` with entries in
    ``{0..K-1}``. Steps at or beyond ``lengths[b]`` are padding: ignored by ``log_prob`` and
    filled with 0 by ``sample``.
    """

    arg_constraints = {}
    has_enumerate_support = False

    def __init__(self, prior: LSTMPrior, lengths: torch.Tensor, T: int, dropout_masks: DropoutMasks | None = None,
                 validate_args=None):
        self.prior = prior
        self.dropout_masks = dropout_masks
        self.lengths = lengths
        self.T = int(T)
        self.mask = length_mask(lengths, self.T)
        super().__init__(torch.Size(lengths.shape), torch.Size([self.T]), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        return constraints.independent(constraints.integer_interval(0, self.prior.K - 1), 1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.prior.sequence_log_prob(value.long(), self.mask, self.dropout_masks)

    def sample(self, sample_shape=torch.Size()):
        if sample_shape:
            raise NotImplementedError("TopicSequence.sample supports sample_shape=() only")
        z = self.prior.sample(self.lengths.shape[0], self.T)
        return z.masked_fill(~self.mask, 0)

    def expand(self, batch_shape, _instance=None):
        if torch.Size(batch_shape) != self.batch_shape:
            raise NotImplementedError("TopicSequence cannot be expanded; build it with the document batch")
        return self


class TopicEmission(TorchDistribution):
    """``x_t | z_t ~ Categorical(phi_{z_t})`` without materialising ``phi[z]`` (B x T x V).

    ``batch_shape = z.shape``, ``event_shape = ()``.
    """

    arg_constraints = {}

    def __init__(self, log_phi: torch.Tensor, z: torch.Tensor, validate_args=None):
        self.log_phi = log_phi
        self.z = z
        super().__init__(z.shape, torch.Size(), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return constraints.integer_interval(0, self.log_phi.shape[-1] - 1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.log_phi[self.z, value.long()]

    def sample(self, sample_shape=torch.Size()):
        logits = self.log_phi[self.z]
        return dist.Categorical(logits=logits).sample(sample_shape)


def emission_log_probs(log_phi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``log phi_k[x_t]`` for every topic: ``(K, V)``, ``(B, T)`` -> ``(B, T, K)``."""
    return log_phi.T[x]


def log_joint(
    prior: LSTMPrior,
    log_phi: torch.Tensor,
    x: torch.Tensor,
    z: torch.Tensor,
    lengths: torch.Tensor,
) -> torch.Tensor:
    """Fast ``log p(x, z | theta, phi)`` per document, ``(B,)`` (no ``phi`` prior term)."""
    mask = length_mask(lengths, x.shape[1])
    emit = log_phi[z.clamp(0, log_phi.shape[0] - 1), x].masked_fill(~mask, 0.0).sum(-1)
    return prior.sequence_log_prob(z, mask) + emit


class TopicalSSL(PyroModule):
    """The Topical SSL generative model (SPEC section 1).

    ``model(x, lengths)`` declares::

        phi[k] ~ Dirichlet(beta * 1_V)            plate "topics" (K)
        z[b]   ~ TopicSequence(LSTM prior)         plate "docs" (B), event (T,)
        x[b]   ~ Categorical(phi[z[b, t]])         masked at padding, event (T,)

    Args:
        K, V: topics and vocabulary size.
        hidden_size, embed_dim, dropout: LSTM prior sizes (see :class:`LSTMPrior`).
        beta: symmetric Dirichlet concentration of ``phi``.
    """

    def __init__(
        self,
        K: int,
        V: int,
        hidden_size: int = 64,
        embed_dim: int | None = None,
        dropout: float = 0.2,
        beta: float = 0.1,
    ):
        super().__init__()
        if V < 1:
            raise ValueError(f"V must be >= 1, got {V}")
        if beta <= 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        self.K, self.V, self.beta = int(K), int(V), float(beta)
        self.prior = LSTMPrior(K, hidden_size, embed_dim, dropout)

    def model(self, x: torch.Tensor | None, lengths: torch.Tensor, T: int | None = None):
        """Pyro model. ``x``: ``(B, T)`` long word ids or ``None`` to generate; ``lengths``: ``(B,)``."""
        T = x.shape[1] if x is not None else int(T)
        device, dtype = self.prior.device, self.prior.dtype
        concentration = torch.full((self.V,), self.beta, device=device, dtype=dtype)
        with pyro.plate("topics", self.K):
            phi = pyro.sample("phi", dist.Dirichlet(concentration))
        log_phi = phi.clamp_min(torch.finfo(dtype).tiny).log()
        mask = length_mask(lengths, T)
        with pyro.plate("docs", lengths.shape[0]):
            z = pyro.sample("z", TopicSequence(self.prior, lengths, T))
            x = pyro.sample("x", TopicEmission(log_phi, z).mask(mask).to_event(1), obs=x)
        return z, x
