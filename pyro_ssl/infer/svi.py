"""The Pyro SVI baseline: the same Topical SSL learned with an amortised guide (issue 5).

The model is :meth:`pyro_ssl.model.TopicalSSL.model` itself, unchanged; only the learning
method differs from particle Gibbs. Pieces:

* :class:`GuideSequence`, the guide's ``q(z | x)`` as a sequence-level distribution (batch
  ``(B,)``, event ``(T,)``), matching the model's :class:`~pyro_ssl.model.TopicSequence` site.
  ``sample`` draws ancestrally and caches the log-probability it computed on the way;
  ``log_prob`` of any other value teacher-forces the same recursion.
* :class:`SSLGuide`, a :class:`~pyro.nn.PyroModule` inference network: a bidirectional LSTM
  over word embeddings, then a forward LSTM decoder fed the previous *sampled* topic
  (autoregressive), giving per-step topic logits; optionally plus ``log phi[:, x_t]``
  (detached), the emission term the fully adapted SMC proposal uses. It also holds ``phi``
  as a simplex-constrained ``PyroParam`` (a Delta guide site, MAP in the softmax basis; see
  ``docs/svi.md``) and a learned, input-dependent baseline for the score-function estimator.
* :class:`SVITrainer`, ``pyro.infer.SVI`` with ``TraceGraph_ELBO`` over document minibatches.
* :func:`fit_svi`, the ``fit``-style entry point returning a fitted :class:`~pyro_ssl.SSL`,
  scored with the same SMC completion perplexity as a particle-Gibbs fit.

Shapes: ``B`` documents, ``T`` padded length, ``K`` topics, ``V`` words, ``H`` hidden units.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import pyro
import pyro.distributions as dist
import pyro.optim
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.distributions import constraints
from pyro.distributions.torch_distribution import TorchDistribution
from pyro.infer import SVI, TraceGraph_ELBO
from pyro.nn import PyroModule, PyroParam
from pyro.ops.provenance import get_provenance, track_provenance
from pyro.poutine.messenger import Messenger
from torch import nn

from ..model import TopicalSSL, length_mask
from ..runtime import hot_loop
from ..smc.resampling import inverse_cdf
from .em import perturbed_log_phi
from .mstep import topic_word_counts

__all__ = ["GuideSequence", "SSLGuide", "DocBaseline", "SVITrainer", "SVIConfig", "SVIResult", "train_svi", "scale_sites"]


# ---------------------------------------------------------------------------- distribution
class GuideSequence(TorchDistribution):
    """``q(z | x) = prod_t q(z_t | z_<t, x)`` over whole topic sequences.

    ``batch_shape = (B,)``, ``event_shape = (T,)``, values long ``(B, T)``; steps at or beyond
    ``lengths[b]`` are padding: ignored by ``log_prob`` and filled with 0 by ``sample``.
    Not reparameterisable (``has_rsample = False``): ELBO gradients use the score function.

    Args:
        guide: the :class:`SSLGuide` whose decoder runs the recursion.
        feats: ``(B, T, 4H)`` per-step decoder input contributions (from the encoder).
        lengths: ``(B,)``.
        emit: optional ``(B, T, K)`` additive logits (``log phi[:, x_t]``).
        prior: optional :class:`~pyro_ssl.model.LSTMPrior` whose one-step log-probabilities
            along the path are added to the logits (detached).
    """

    arg_constraints = {}
    has_rsample = False

    def __init__(self, guide: "SSLGuide", feats, lengths, emit=None, prior=None, validate_args=None):
        self.guide, self.feats, self.lengths, self.emit, self.prior = guide, feats, lengths, emit, prior
        self.T = feats.shape[1]
        self.mask = length_mask(lengths, self.T)
        self._cache = None
        super().__init__(torch.Size(lengths.shape), torch.Size([self.T]), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        return constraints.independent(constraints.integer_interval(0, self.guide.K - 1), 1)

    def expand(self, batch_shape, _instance=None):
        if torch.Size(batch_shape) != self.batch_shape:
            raise NotImplementedError("GuideSequence cannot be expanded; build it with the document batch")
        return self

    def sample(self, sample_shape=torch.Size()):
        if sample_shape:
            raise NotImplementedError("GuideSequence.sample supports sample_shape=() only")
        z, logq = self.guide.decode(self.feats, self.mask, self.emit, self.prior)
        self._cache = (z, logq)
        return z

    def log_prob(self, value):
        if self._cache is not None and value.shape == self._cache[0].shape and torch.equal(value, self._cache[0]):
            # Same value as drawn: the log-probability computed while sampling is the
            # teacher-forced one (same recursion, same inputs). Pyro's provenance tracking
            # (TraceGraph_ELBO's Rao-Blackwellisation) must see that it depends on `value`.
            return track_provenance(self._cache[1], get_provenance(value))
        _, logq = self.guide.decode(self.feats, self.mask, self.emit, self.prior, z=value.long())
        return logq


# ---------------------------------------------------------------------------- networks
class DocBaseline(nn.Module):
    """Input-dependent baseline for the score-function term of document ``b``.

    ``b(doc) = scale * len * (running mean per-token cost + mlp(encoder summary))``: the running
    mean (a decaying average of the per-token ELBO, updated by :class:`SVITrainer` after every
    step) takes the bulk; the MLP, trained by TraceGraph_ELBO's squared-error baseline loss,
    learns each document's residual from the guide encoder's pooled features.
    Input ``(B, F + 2)``: features, then ``len`` and ``scale`` columns.
    """

    def __init__(self, in_features: int, hidden: int = 32):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)
        self.register_buffer("avg", torch.zeros(()))

    def forward(self, inp):
        feat, n, scale = inp[:, :-2], inp[:, -2], inp[:, -1]
        return scale * n * (self.avg + self.mlp(feat).squeeze(-1))


class SSLGuide(PyroModule):
    """Amortised guide ``q(z | x)`` and the point estimate of ``phi`` for the SSL.

    Encoder: word embeddings -> bidirectional LSTM (packed by length). Decoder: an LSTM over
    ``[encoder_t, embed(z_{t-1})]`` (``z_0`` a start symbol), stepped with the topic it just
    sampled, then ``logits_t = out(h_t)``, plus, when the guide is *model-informed*, the
    current model's own terms (detached): ``log phi[:, x_t]`` (``informed="phi"``) and also the
    LSTM prior's ``log p(z_t | z_<t)`` stepped along the sampled path (``informed="full"``).
    With ``"full"`` and an untrained network the guide is the locally optimal ("fully
    adapted") proposal of the particle filter, ``q(z_t) ∝ p(z_t | z_<t) phi_{z_t}[x_t]``, and
    the network learns the look-ahead correction from the backward encoder.

    Args:
        K, V: topics and vocabulary size.
        word_dim, hidden_size, topic_dim: embedding, LSTM and topic-embedding sizes.
        informed: ``"none"``, ``"phi"`` or ``"full"`` (see above).
        log_phi_init: ``(K, V)`` initial ``log phi`` (uniform when omitted).
        learn_phi: hold ``phi`` as a simplex ``PyroParam`` (a Delta guide site); ``False`` when
            ``phi`` is fixed (then the guide has no ``phi`` site).
    """

    def __init__(
        self,
        K: int,
        V: int,
        word_dim: int = 64,
        hidden_size: int = 64,
        topic_dim: int = 16,
        informed: str = "phi",
        log_phi_init: torch.Tensor | None = None,
        learn_phi: bool = True,
    ):
        super().__init__()
        self.K, self.V, self.H = int(K), int(V), int(hidden_size)
        if informed not in ("none", "phi", "full"):
            raise ValueError(f"informed must be 'none', 'phi' or 'full', got {informed!r}")
        self.informed = informed
        self.learn_phi = bool(learn_phi)
        self.word_embed = nn.Embedding(V, word_dim)
        self.encoder = nn.LSTM(word_dim, hidden_size, batch_first=True, bidirectional=True)
        self.topic_embed = nn.Embedding(K + 1, topic_dim)
        self.enc_proj = nn.Linear(2 * hidden_size, 4 * hidden_size)
        self.dec = nn.LSTMCell(topic_dim, hidden_size)  # input part used via topic_table()
        self.out = nn.Linear(hidden_size, K)
        self.baseline = DocBaseline(2 * hidden_size)
        if learn_phi:
            init = torch.full((K, V), 1.0 / V) if log_phi_init is None else log_phi_init.exp()
            self.phi = PyroParam(init / init.sum(-1, keepdim=True), constraint=constraints.simplex, event_dim=1)

    @property
    def device(self):
        return self.out.weight.device

    # ----------------------------------------------------------------- encoder
    def encode(self, x: torch.Tensor, lengths: torch.Tensor):
        """``(feats (B, T, 4H), pooled (B, 2H))``: decoder input contributions and mean encoding."""
        emb = self.word_embed(x)
        packed = nn.utils.rnn.pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.encoder(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        mask = length_mask(lengths, x.shape[1]).unsqueeze(-1).to(out.dtype)
        pooled = (out * mask).sum(1) / mask.sum(1).clamp_min(1)
        return self.enc_proj(out), pooled

    def topic_table(self) -> torch.Tensor:
        """``(K + 1, 4H)`` decoder gate contributions of each previous-topic symbol."""
        d = self.dec
        return F.linear(self.topic_embed.weight, d.weight_ih, d.bias_ih + d.bias_hh)

    # ----------------------------------------------------------------- decoder
    def decode(self, feats, mask, emit=None, prior=None, z=None):
        """Run the autoregressive recursion: sample ``z`` (``z=None``) or teacher-force it.

        Returns ``(z (B, T) long, log q(z) (B,))``; padding steps are 0 in ``z`` and skipped.
        """
        B, T = mask.shape
        table = self.topic_table()
        w_hh = self.dec.weight_hh
        h = feats.new_zeros(B, self.H)
        c = feats.new_zeros(B, self.H)
        prev = torch.full((B,), self.K, dtype=torch.long, device=feats.device)
        sampling = z is None
        zs, logq = [], feats.new_zeros(B)
        if prior is not None:
            with torch.no_grad():
                ptable = prior.input_table()
                pstate, _ = prior.initial_state((B,))
        for t in range(T):
            gates = feats[:, t] + table[prev] + h @ w_hh.T
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            logits = self.out(h)
            if emit is not None:
                logits = logits + emit[:, t]
            if prior is not None:
                with torch.no_grad():
                    log_pi, pstate = prior.step(prev, pstate, ptable)
                logits = logits + log_pi
            logp = torch.log_softmax(logits, -1)
            zt = inverse_cdf(logp.detach(), torch.rand(logp.shape[:-1] + (1,), device=logp.device, dtype=logp.dtype)).squeeze(-1) if sampling else z[:, t].clamp(0, self.K - 1)
            zt = torch.where(mask[:, t], zt, torch.zeros_like(zt))
            logq = logq + logp.gather(-1, zt.unsqueeze(-1)).squeeze(-1).masked_fill(~mask[:, t], 0.0)
            zs.append(zt)
            prev = zt
        return torch.stack(zs, 1) if sampling else z, logq

    def distribution(self, x, lengths, log_phi=None, prior=None):
        """The guide's ``q(z | x)`` for a batch (and the encoder's pooled features).

        ``log_phi`` and ``prior`` are the current model's; they enter only as detached inputs,
        as configured by ``informed``.
        """
        feats, pooled = self.encode(x, lengths)
        emit = log_phi.detach().T[x] if self.informed != "none" and log_phi is not None else None
        prior = prior if self.informed == "full" else None
        return GuideSequence(self, feats, lengths, emit, prior), pooled


# ---------------------------------------------------------------------------- handlers
class scale_sites(Messenger):
    """Multiply the scale of the named sample sites (and mask others off entirely).

    ``TopicalSSL.model`` declares its ``docs`` plate with the minibatch size, so the
    subsampling factor ``D / B`` (what ``pyro.plate(D, subsample=idx)`` would apply) is put on
    the per-document sites ``z`` and ``x`` here, leaving the corpus-level ``phi`` unscaled.
    """

    def __init__(self, scales: dict[str, float], masked: tuple[str, ...] = ()):
        super().__init__()
        self.scales, self.masked = dict(scales), set(masked)

    def _process_message(self, msg):
        if msg["type"] != "sample":
            return
        if msg["name"] in self.scales:
            msg["scale"] = self.scales[msg["name"]] * msg["scale"]
        if msg["name"] in self.masked:
            msg["mask"] = False


# ---------------------------------------------------------------------------- config + trainer
@dataclass
class SVIConfig:
    """Settings of :class:`SVITrainer` (see ``docs/svi.md``); ``fit(method="svi")`` takes them as keywords.

    Attributes:
        batch_size: documents per SVI step.
        num_particles: independent guide samples per document per step (the batch is
            replicated, so particles are vectorised in one pass).
        lr, phi_lr: Adam learning rates for the networks and for ``phi``'s logits.
        clip_norm: per-parameter gradient-norm clip.
        baseline_beta: decay of the running per-token ELBO baseline.
        word_dim, guide_hidden, topic_dim, informed: the guide (see :class:`SSLGuide`).
    """

    batch_size: int = 20
    num_particles: int = 1
    lr: float = 1e-2
    phi_lr: float = 5e-2
    clip_norm: float = 5.0
    baseline_beta: float = 0.9
    word_dim: int = 64
    guide_hidden: int = 64
    topic_dim: int = 16
    informed: str = "phi"

    def __post_init__(self):
        if self.batch_size < 1 or self.num_particles < 1:
            raise ValueError("batch_size and num_particles must be >= 1")
        if not 0.0 <= self.baseline_beta < 1.0:
            raise ValueError("baseline_beta must be in [0, 1)")

    def as_dict(self) -> dict:
        return asdict(self)


class SVITrainer:
    """SVI for the Topical SSL: ``TraceGraph_ELBO`` with a running-average + learned baseline.

    Args:
        model: the :class:`~pyro_ssl.model.TopicalSSL` (its prior is trained in place unless
            ``learn_prior=False``).
        guide: the :class:`SSLGuide`.
        config: :class:`SVIConfig`.
        fixed_log_phi: ``(K, V)``: hold ``phi`` fixed (the model's ``phi`` site is conditioned
            on it and masked out, the guide has no ``phi`` site); the ELBO is then a bound on
            ``log p(x | theta, phi)``.
        learn_prior: train the LSTM prior (``False``: guide only).
    """

    def __init__(self, model: TopicalSSL, guide: SSLGuide, config: SVIConfig | None = None,
                 fixed_log_phi: torch.Tensor | None = None, learn_prior: bool = True):
        self.ssl, self.net = model, guide
        self.config = config or SVIConfig()
        self.fixed_log_phi = fixed_log_phi
        self.learn_prior = learn_prior
        if fixed_log_phi is None and not guide.learn_phi:
            raise ValueError("the guide holds no phi: pass fixed_log_phi or build it with learn_phi=True")
        cfg = self.config

        def optim_args(name):
            return {"lr": cfg.phi_lr if "phi" in name.split(".")[-1] else cfg.lr}

        self.optim = pyro.optim.Adam(optim_args, {"clip_norm": cfg.clip_norm})
        self.elbo = TraceGraph_ELBO()
        self.svi = SVI(self.model, self.guide, self.optim, self.elbo)
        self.steps = 0
        self.last_objective = float("nan")
        self._baseline_ready = False

    # ----------------------------------------------------------------- current phi
    def log_phi(self) -> torch.Tensor:
        if self.fixed_log_phi is not None:
            return self.fixed_log_phi
        return self.net.phi.clamp_min(torch.finfo(self.net.phi.dtype).tiny).log()

    # ----------------------------------------------------------------- model and guide
    def model(self, x, lengths, scale=1.0):
        if self.learn_prior:
            pyro.module("ssl_prior", self.ssl.prior)
        scales = {"z": scale, "x": scale}
        if self.fixed_log_phi is not None:
            cond = poutine.condition(self.ssl.model, data={"phi": self.fixed_log_phi.exp()})
            with scale_sites(scales, masked=("phi",)):
                return cond(x, lengths)
        with scale_sites(scales):
            return self.ssl.model(x, lengths)

    def guide(self, x, lengths, scale=1.0):
        pyro.module("ssl_guide", self.net)
        if self.fixed_log_phi is None:
            phi = self.net.phi
            with pyro.plate("topics", self.net.K):
                # MAP in the softmax basis: the Delta's log density -sum_w log phi_kw makes the
                # ELBO's phi terms log Dir(phi | beta) + sum_w log phi_kw = beta sum_w log phi_kw,
                # maximised at phi = (n_kw + beta) / (n_k + V beta) given expected counts n.
                log_phi = phi.clamp_min(torch.finfo(phi.dtype).tiny).log()
                pyro.sample("phi", dist.Delta(phi, log_density=-log_phi.sum(-1), event_dim=1))
        else:
            log_phi = self.fixed_log_phi
        q, pooled = self.net.distribution(x, lengths, log_phi, self.ssl.prior)
        n = lengths.to(pooled.dtype)
        inp = torch.cat([pooled, n.unsqueeze(-1), torch.full_like(n, float(scale)).unsqueeze(-1)], -1)
        baseline = {"nn_baseline": self.net.baseline, "nn_baseline_input": inp}
        with pyro.plate("docs", x.shape[0]), poutine.scale(scale=scale):
            return pyro.sample("z", q, infer={"baseline": baseline})

    # ----------------------------------------------------------------- steps
    def _replicate(self, x, lengths, total_docs):
        S = self.config.num_particles
        B = x.shape[0]
        if S > 1:
            x, lengths = x.repeat(S, 1), lengths.repeat(S)
        scale = float(total_docs) / (B * S)
        return x, lengths, scale

    def step(self, x, lengths, total_docs: int | None = None) -> float:
        """One SVI step on a minibatch.

        Returns the documents' ELBO estimate (scaled to ``total_docs``; a bound on
        ``log p(x | theta, phi)``); the full objective, which adds ``phi``'s terms, is kept in
        ``last_objective``.
        """
        total_docs = x.shape[0] if total_docs is None else int(total_docs)
        x, lengths, scale = self._replicate(x, lengths, total_docs)
        tokens_scaled = scale * float(lengths.sum())
        phi_term = self._phi_objective_value()  # at the phi this step's loss is evaluated at
        self.ssl.prior.train(self.learn_prior)
        try:
            with pyro.get_param_store().scope():
                if not self._baseline_ready:
                    # Start the running baseline at this batch's ELBO, not at 0.
                    with torch.no_grad():
                        first = -self.elbo.loss(self.model, self.guide, x, lengths, scale) - phi_term
                    self.net.baseline.avg.fill_(first / tokens_scaled)
                    self._baseline_ready = True
                loss = self.svi.step(x, lengths, scale)
        finally:
            self.ssl.prior.eval()
        self.last_objective = -float(loss)
        # Decaying average of the per-token ELBO of the documents (what the baseline predicts);
        # the phi terms of the objective are not part of the z site's downstream cost.
        doc_elbo = self.last_objective - phi_term
        b = self.config.baseline_beta
        with torch.no_grad():
            self.net.baseline.avg.mul_(b).add_((1 - b) * doc_elbo / tokens_scaled)
        self.steps += 1
        return doc_elbo

    @torch.no_grad()
    def _phi_objective_value(self) -> float:
        """The ``phi`` terms of the objective, ``log Dir(phi) + sum log phi`` (0 when ``phi`` is fixed)."""
        if self.fixed_log_phi is not None:
            return 0.0
        phi = self.net.phi
        log_phi = phi.clamp_min(torch.finfo(phi.dtype).tiny).log()
        conc = torch.full_like(phi, self.ssl.beta)
        return float((dist.Dirichlet(conc).log_prob(phi) + log_phi.sum(-1)).sum())

    @torch.no_grad()
    def per_document_elbo(self, x, lengths) -> torch.Tensor:
        """One-sample ELBO estimate per document, ``log p(x_b, z_b) - log q(z_b | x_b)``, ``(B,)``.

        Traces the guide and replays the model against it (the same sites the ELBO uses);
        ``phi``'s terms are left out, so with fixed ``phi`` it is a bound on ``log p(x_b)``.
        """
        self.ssl.prior.eval()
        with pyro.get_param_store().scope():
            gtr = poutine.trace(self.guide).get_trace(x, lengths, 1.0)
            mtr = poutine.trace(poutine.replay(self.model, trace=gtr)).get_trace(x, lengths, 1.0)
        z = gtr.nodes["z"]
        log_q = z["fn"].log_prob(z["value"])
        log_p = mtr.nodes["z"]["fn"].log_prob(z["value"]) + mtr.nodes["x"]["fn"].log_prob(x)
        return log_p - log_q


# ---------------------------------------------------------------------------- entry point
@dataclass
class SVIResult:
    """What :func:`train_svi` learned: the guide, the trainer (its optimiser state), ``log_phi``
    ``(K, V)`` and one history entry per epoch. :meth:`pyro_ssl.SSL.fit` with
    ``method="svi"`` wraps it into a fitted estimator."""

    config: SVIConfig
    guide: "SSLGuide"
    trainer: "SVITrainer"
    log_phi: torch.Tensor
    history: list = field(default_factory=list)


@hot_loop
def train_svi(model: TopicalSSL, tokens: torch.Tensor, lengths: torch.Tensor, cfg: SVIConfig, *, seed: int,
              epochs: int, progress: bool = True, on_epoch=None) -> SVIResult:
    """Learn ``model``'s prior and ``phi`` by SVI with an amortised guide.

    Args:
        model: a :class:`~pyro_ssl.model.TopicalSSL` (its prior is trained in place).
        tokens: ``(D, T)`` padded word ids on the model's device; lengths ``(D,)``.
        cfg: :class:`SVIConfig`. seed: the minibatch order and the guide's initial ``phi``.
        on_epoch: called as ``on_epoch(entry, log_phi)`` after every epoch (it may add keys
            to ``entry``); returning ``True`` stops.
    """
    from tqdm.auto import tqdm

    dev, dtype = model.prior.device, model.prior.dtype
    K, V = model.K, model.V
    unigram = topic_word_counts(torch.zeros_like(tokens), tokens, lengths, 1, V)[0]
    log_phi0 = perturbed_log_phi(unigram, K, model.beta, seed, dtype)
    guide = SSLGuide(K, V, cfg.word_dim, cfg.guide_hidden, cfg.topic_dim, cfg.informed, log_phi0)
    guide.to(device=dev, dtype=dtype)
    trainer = SVITrainer(model, guide, cfg)
    result = SVIResult(cfg, guide, trainer, trainer.log_phi().detach())
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    D, num_tokens = tokens.shape[0], int(lengths.sum())
    bar = tqdm(range(int(epochs)), desc="pyro-ssl svi", disable=not progress, unit="epoch")
    for epoch in range(1, int(epochs) + 1):
        t0 = time.perf_counter()
        elbos, objectives = [], []
        for idx in torch.randperm(D, generator=gen, device=dev).split(cfg.batch_size):
            n = lengths[idx]
            elbos.append(trainer.step(tokens[idx, : int(n.max())], n, total_docs=D))
            objectives.append(trainer.last_objective)
        result.log_phi = trainer.log_phi().detach().clone()
        entry = {
            "epoch": epoch,
            "elbo_per_token": sum(elbos) / len(elbos) / num_tokens,
            "objective_per_token": sum(objectives) / len(objectives) / num_tokens,
            "seconds": time.perf_counter() - t0,
            "steps": len(elbos),
            "baseline_per_token": float(guide.baseline.avg),
        }
        stop = bool(on_epoch(entry, result.log_phi)) if on_epoch is not None else False
        result.history.append(entry)
        bar.update(1)
        bar.set_postfix({k: f"{entry[k]:.3f}" for k in ("elbo_per_token", "completion_ppl") if k in entry})
        if stop:
            break
    bar.close()
    return result
