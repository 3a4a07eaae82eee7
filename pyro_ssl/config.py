"""Every setting of a fit, defined once.

Three dataclasses group the settings by what they configure: :class:`ModelConfig` (the
generative model), :class:`SamplerConfig` (the conditional-SMC E-step) and
:class:`LearningConfig` (stochastic EM). :class:`SSLConfig` holds one of each plus the seed.
Everything else reads them: :class:`~pyro_ssl.SSL` takes their fields as keyword arguments,
presets are dicts of field values, saved models and checkpoints store :meth:`SSLConfig.to_dict`,
and the command lines generate their flags from the fields (:func:`settings`), with the help
text written here. **To change a default, change it here.**
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "ModelConfig",
    "SamplerConfig",
    "LearningConfig",
    "SSLConfig",
    "VocabConfig",
    "Setting",
    "PRESETS",
    "FULL_LAG",
    "DEFAULT_THREADS",
    "settings",
    "add_setting_flags",
    "chosen_settings",
    "vocab_settings",
    "add_vocab_flags",
    "chosen_vocab",
    "check_int",
    "check_float",
    "check_seed",
    "check_bool",
    "check_device",
    "check_dtype",
    "check_dir",
]

DEFAULT_THREADS = 1
"""torch intra-op threads in the hot loops (:mod:`pyro_ssl.runtime`): one, because OpenMP threads spin
against any other busy process; more cores are used by processes (``fit(..., workers=N)``)."""

FULL_LAG = "full"
"""``ancestor_lag`` value for exact ancestor sampling (look ahead to the document's end)."""

EMISSIONS = ("global", "leave_out", "collapsed")
PHI_UPDATES = ("smoothed", "gibbs")
INITS = ("uniform", "smc", "hmm")
KERNELS = ("ancestor", "blocked")
FINAL_DRAWS = ("gibbs", "metropolised")
"""How a conditional sweep picks its returned particle from the final weights ``W``: ``"gibbs"``
draws it from ``W``; ``"metropolised"`` proposes one of the *other* particles and accepts it by a
Metropolis-Hastings step (:func:`pyro_ssl.smc.csmc.metropolised_index`). Both leave the choice's
conditional law ``W`` invariant, so both are exact; the second moves off the reference more often."""


def _opt(default, help: str, *, choices: tuple | None = None, flag: str | None = None):
    return field(default=default, metadata={"help": help, "choices": choices, "flag": flag})


def _int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) and not (
        isinstance(value, float) and value.is_integer()
    ):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _float(name: str, value, *, low: float = -math.inf, high: float = math.inf, low_open=False, high_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if value < low or (low_open and value == low) or value > high or (high_open and value == high):
        lo, hi = ("(" if low_open else "[") + f"{low:g}", f"{high:g}" + (")" if high_open else "]")
        raise ValueError(f"{name} must be in {lo}, {hi}, got {value!r}")
    return value


def _seed(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValueError(f"{name} must be an integer in [0, 2**63), got {value!r}")
    return int(value)


# Validators of the arguments of public entries that are not settings (epochs of one call,
# particles of one score, seeds, devices). One place, so every entry says the same thing.
def check_int(name: str, value, minimum: int = 0) -> int:
    """``value`` as an ``int >= minimum``; a float with an integer value is accepted, ``bool``,
    ``2.5``, ``"3"`` are not. Raises ``ValueError`` naming ``name``, the value and the bound."""
    return _int(name, value, minimum)


def check_float(name: str, value, **bounds) -> float:
    """``value`` as a finite float within ``bounds`` (``low``, ``high``, ``low_open``, ``high_open``)."""
    return _float(name, value, **bounds)


def check_seed(name: str, value) -> int:
    """A random seed: an integer in ``[0, 2**63)`` (what torch generators accept)."""
    return _seed(name, value)


def check_bool(name: str, value) -> bool:
    """A flag that must be ``True`` or ``False`` (not ``"no"``, which is truthy)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def check_device(value):
    """``None`` (the CPU) or a torch device that exists on this machine, as a ``torch.device``."""
    if value is None:
        return torch.device("cpu")
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {value!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={value!r} but CUDA is not available on this machine; use device='cpu'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device={value!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device={value!r} but MPS is not available on this machine; use device='cpu'")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={value!r} is not supported; use 'cpu' or 'cuda'")
    return device


def check_dtype(value):
    """The model's floating type: ``torch.float32`` or ``torch.float64`` (half precision
    underflows the particle weights and the LSTM's gradients: NaN after one epoch)."""
    if value not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {value!r} "
                         "(float16/bfloat16 are refused: particle weights and gradients underflow to NaN)")
    return value


def check_dir(name: str, path) -> Path:
    """A directory argument (existing or to be created) that is not an existing file."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{name} must be a directory path, got {path!r}")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{name}={str(path)!r} is a file, not a directory; give a directory path")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{name}={str(path)!r}: {parent} is a file, so the directory cannot be created")
            break
    return p


def _choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


@dataclass
class ModelConfig:
    """The generative model: ``K`` topics, the LSTM prior's sizes, the Dirichlet on ``phi``."""

    K: int = _opt(50, "number of topics", flag="-K")
    hidden_size: int = _opt(64, "LSTM hidden units")
    embed_dim: int | None = _opt(None, "topic embedding size (default: the hidden size)")
    dropout: float = _opt(0.2, "LSTM dropout during M-steps, in [0, 1)")
    beta: float = _opt(0.1, "Dirichlet concentration of the topic-word distributions, > 0")

    def __post_init__(self):
        self.K = _int("K", self.K, 1)
        self.hidden_size = _int("hidden_size", self.hidden_size, 1)
        if self.embed_dim is not None:
            self.embed_dim = _int("embed_dim", self.embed_dim, 1)
        self.dropout = _float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        self.beta = _float("beta", self.beta, low=0.0, low_open=True)


def _lag(name: str, value) -> int | str:
    """A look-ahead setting: an integer >= 0 (digits accepted) or :data:`FULL_LAG`."""
    if value == FULL_LAG:
        return value
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    try:
        return _int(name, value, 0)
    except ValueError:
        raise ValueError(f"{name} must be an integer >= 0 or {FULL_LAG!r}, got {value!r}") from None


@dataclass
class SamplerConfig:
    """The particle-Gibbs E-step (SPEC section 2)."""

    num_particles: int = _opt(10, "particles per document in the E-step, including the reference (>= 2)",
                              flag="--particles")
    ancestor_lag: int | str = _opt(
        5, "ancestor-sampling look-ahead of kernel='ancestor' and of the warm-up: 0 = plain CSMC (exact, slow to "
        "mix), an integer L (an approximation: the reference's future is truncated after L steps; "
        "benchmarks/lag_bias.py measures its drift), or 'full' (exact PGAS, cost quadratic in length)"
    )
    resampling: str = _opt("systematic", "resampling scheme of the conditional sweeps, plain and blocked (one "
                           "with a conditional form in pyro_ssl.smc.resampling: 'systematic' or 'multinomial')")
    kernel: str = _opt("blocked", "E-step kernel after the warm-up: 'blocked' (exact blocked conditional SMC, "
                       "pyro_ssl.smc.blocked) or 'ancestor' (conditional SMC over whole documents with ancestor "
                       "sampling, see ancestor_lag)", choices=KERNELS)
    block_size: int = _opt(16, "positions per block of the blocked kernel")
    block_stride: int = _opt(8, "distance between block starts of the blocked kernel (<= block_size; smaller overlaps)")
    block_lookahead: int | str = _opt(
        5, "fixed-future positions the blocked kernel scores in every particle's weight: 'full' (all of them), "
        "or an integer L (the first L; the rest corrects the block's new path by a Metropolis-Hastings step that "
        "scores the proposed path only, the current path's terms being kept): exact either way, pyro_ssl.smc.blocked")
    block_final_draw: str = _opt(
        "metropolised", "how each block of the blocked kernel picks its new path from the final particles: 'gibbs' (drawn "
        "from the weights) or 'metropolised' (another particle than the current path's proposed from the weights "
        "and accepted by Metropolis-Hastings; moves more often): exact either way, pyro_ssl.smc.csmc.metropolised_index",
        choices=FINAL_DRAWS)
    block_resample_below: float = _opt(
        0.75, "adaptive resampling inside the blocked kernel's blocks: resample only when the particles' effective "
        "sample size falls below this fraction of num_particles, carrying the weights on otherwise (exact either "
        "way; fewer lineages collapse onto the current path, docs/learning.md); 1 resamples at every step")

    def __post_init__(self):
        self.num_particles = _int("num_particles", self.num_particles, 2)
        self.ancestor_lag = _lag("ancestor_lag", self.ancestor_lag)
        self.block_lookahead = _lag("block_lookahead", self.block_lookahead)
        self.block_resample_below = _float("block_resample_below", self.block_resample_below, low=0.0, high=1.0,
                                           low_open=True)
        _choice("kernel", self.kernel, KERNELS)
        _choice("block_final_draw", self.block_final_draw, FINAL_DRAWS)
        self.block_size = _int("block_size", self.block_size, 1)
        self.block_stride = _int("block_stride", self.block_stride, 1)
        if self.block_stride > self.block_size:
            raise ValueError(f"block_stride must be <= block_size (blocks must cover every position), "
                             f"got {self.block_stride} > {self.block_size}")
        if not isinstance(self.resampling, str):
            raise ValueError(f"resampling must be a scheme name, got {self.resampling!r}")
        # Whether the scheme can be conditioned is the resampling registry's to say; the
        # estimator asks it at construction (pyro_ssl.smc.resampling).

    @property
    def resample_below_or_none(self) -> float | None:
        """``block_resample_below`` as :func:`~pyro_ssl.smc.blocked.blocked_csmc_sweep` takes it (``None``: every step)."""
        return None if self.block_resample_below >= 1.0 else float(self.block_resample_below)

    @property
    def future_lag_or_none(self) -> int | None:
        """``block_lookahead`` as :func:`~pyro_ssl.smc.blocked.blocked_csmc_sweep` takes it (``None``: full)."""
        return None if self.block_lookahead == FULL_LAG else int(self.block_lookahead)


@dataclass
class LearningConfig:
    """Particle Gibbs within stochastic EM (SPEC section 3; evidence in ``docs/learning.md``)."""

    epochs: int = _opt(30, "passes over the training documents")
    batch_size: int = _opt(50, "documents per minibatch (E-step and M-step)")
    mstep_iters: int = _opt(5, "gradient steps on each minibatch's fresh paths")
    lr: float = _opt(1e-2, "Adam learning rate")
    clip_norm: float = _opt(5.0, "gradient-norm clip per parameter")
    phi_update: str = _opt("smoothed", "topic-word update: 'smoothed' (posterior mean) or 'gibbs' (a Dirichlet draw)",
                           choices=PHI_UPDATES)
    emission: str = _opt("collapsed", "emissions in the sweep after the warm-up: 'collapsed' (exact: phi integrated "
                         "out; proposals under phi from the documents outside the ones swept together, corrected by a "
                         "Metropolis-Hastings step, pyro_ssl.infer.collapsed; needs kernel='blocked' or ancestor_lag=0), "
                         "'global' (phi from all documents, the seed's; exact with phi_update='gibbs') or 'leave_out' "
                         "(phi from the other documents; a heuristic, not an exact Gibbs step)",
                         choices=EMISSIONS)
    warmup_epochs: int = _opt(20, "epochs of the fast heuristic E-step before the configured one (ancestor sampling "
                              "with look-ahead ancestor_lag and leave-out emissions): an initialisation, after which "
                              "every sweep targets the stated posterior (docs/learning.md); 0 = the configured "
                              "E-step from the first epoch")
    init: str = _opt("smc", "initial paths: 'uniform' (the seed's), 'smc' (a filter pass under perturbed topics) "
                     "or 'hmm' (paths of an EM-fitted HMM; one process only)", choices=INITS)
    init_steps: int = _opt(0, "M-step passes pre-training the prior on the initial paths")
    sweeps_per_epoch: int = _opt(1, "E-step sweeps over every minibatch per epoch")
    eval_particles: int = _opt(1000, "particle-filter particles when scoring (score, completion, token_log_probs)")
    eval_workers: int = _opt(1, "processes scoring documents with the particle filter (score, perplexity, "
                             "completion, token_log_probs, validation during fit), each an even share on one thread; "
                             "the same estimates as 1; CPU models only; each scoring call starts them (about 2 s), "
                             "except during fit, which keeps them for its validation scores")
    patience: int = _opt(0, "early stopping: stop after this many validation evaluations without improvement and "
                         "restore the best epoch's state; the warm-up's epochs are not watched (0: never stop early; needs a "
                         "validation set)")
    min_delta: float = _opt(0.0, "early stopping: smallest change of the validation value that counts as an "
                            "improvement (perplexity, or log likelihood per token)")

    def __post_init__(self):
        self.epochs = _int("epochs", self.epochs, 1)
        self.batch_size = _int("batch_size", self.batch_size, 1)
        self.mstep_iters = _int("mstep_iters", self.mstep_iters, 0)
        self.lr = _float("lr", self.lr, low=0.0, low_open=True)
        self.clip_norm = _float("clip_norm", self.clip_norm, low=0.0, low_open=True)
        _choice("phi_update", self.phi_update, PHI_UPDATES)
        _choice("emission", self.emission, EMISSIONS)
        _choice("init", self.init, INITS)
        self.init_steps = _int("init_steps", self.init_steps, 0)
        self.warmup_epochs = _int("warmup_epochs", self.warmup_epochs, 0)
        self.sweeps_per_epoch = _int("sweeps_per_epoch", self.sweeps_per_epoch, 1)
        self.eval_particles = _int("eval_particles", self.eval_particles, 1)
        self.eval_workers = _int("eval_workers", self.eval_workers, 1)
        self.patience = _int("patience", self.patience, 0)
        self.min_delta = _float("min_delta", self.min_delta, low=0.0)
        if self.phi_update == "gibbs" and self.emission in ("leave_out", "collapsed"):
            raise ValueError(
                f"phi_update='gibbs' has no effect with emission={self.emission!r}: the sweep reads the "
                "documents' counts, not phi. Use emission='global' for the uncollapsed Gibbs step "
                "(phi ~ Dirichlet(n + beta), then z | phi), or phi_update='smoothed'"
            )


@dataclass
class VocabConfig:
    """How texts become a vocabulary (:meth:`Corpus.from_texts`, :func:`load_corpus`, the CLI).

    Not a setting of a fit: a saved model keeps the vocabulary itself. The filter follows
    gensim's ``Dictionary.filter_extremes`` and is off by default (the seed's vocabulary: the
    ``vocab_size`` most frequent words, the rest read as ``<unk>``); with any filter option,
    the words it drops are removed from the documents (and from text encoded later), as
    gensim's ``doc2bow`` ignores them.
    """

    vocab_size: int | None = _opt(5000, "vocabulary size including <unk> (the most frequent words)")
    min_count: int = _opt(1, "minimum word frequency")
    no_below: int | None = _opt(None, "filter: drop words found in fewer than this many documents (gensim's "
                                "filter_extremes; any filter option removes the dropped words from the text)")
    no_above: float | None = _opt(None, "filter: drop words found in more than this fraction of documents")
    keep_n: int | None = _opt(None, "filter: keep at most this many words after no_below/no_above "
                              "(default: vocab size - 1)")
    stopwords: bool = _opt(False, "filter: drop gensim's English stopwords and punctuation-only tokens")

    def __post_init__(self):
        if self.vocab_size is not None:
            self.vocab_size = _int("vocab_size", self.vocab_size, 1)
        self.min_count = _int("min_count", self.min_count, 1)
        if self.no_below is not None:
            self.no_below = _int("no_below", self.no_below, 1)
        if self.no_above is not None:
            self.no_above = _float("no_above", self.no_above, low=0.0, high=1.0, low_open=True)
        if self.keep_n is not None:
            self.keep_n = _int("keep_n", self.keep_n, 1)
        if not isinstance(self.stopwords, bool):
            raise ValueError(f"stopwords must be True or False here, got {self.stopwords!r}")

    @property
    def filters(self) -> bool:
        """Whether any filter option is set."""
        return self.no_below is not None or self.no_above is not None or self.keep_n is not None or self.stopwords


GROUPS = {"model": ModelConfig, "sampler": SamplerConfig, "learning": LearningConfig}


PRESETS: dict[str, dict[str, Any]] = {
    # The seed's configuration (measured in docs/learning.md): uniform start, plain CSMC with
    # 10 particles, every document swept under phi from all documents, one M-step per epoch.
    "seed": dict(num_particles=10, resampling="multinomial", kernel="ancestor", ancestor_lag=0, init="uniform",
                 emission="global", batch_size=10**9, mstep_iters=1, warmup_epochs=0),
    # The default before 2026-12-03 (docs/learning.md): every epoch runs the fast heuristic
    # E-step that the default now uses only as its warm-up. Approximate: truncated look-ahead
    # and leave-out emissions; it learns better at equal epochs than the exact default.
    "heuristic": dict(num_particles=10, resampling="multinomial", kernel="ancestor", ancestor_lag=5,
                      emission="leave_out", warmup_epochs=0),
}


@dataclass
class SSLConfig:
    """All settings of a fit: ``model``, ``sampler``, ``learning`` and the ``seed``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    learning: LearningConfig = field(default_factory=LearningConfig)
    seed: int = 0

    def __post_init__(self):
        self.seed = _seed("seed", self.seed)
        if (self.learning.emission == "collapsed" and self.sampler.kernel == "ancestor"
                and self.sampler.ancestor_lag != 0):
            raise ValueError(
                "emission='collapsed' corrects the sweep by Metropolis-Hastings, which needs a kernel that is "
                f"reversible for its own target; ancestor sampling (ancestor_lag={self.sampler.ancestor_lag!r}) is "
                "not known to be. Use kernel='blocked' (exact, mixes at every position), ancestor_lag=0, or "
                "another emission (emission='leave_out' is the heuristic; preset='heuristic' sets all three)"
            )

    @classmethod
    def from_flat(cls, preset: str | None = None, **values) -> "SSLConfig":
        """Build from flat field names (``K=10, num_particles=20, ...``), over a preset's values."""
        merged: dict[str, Any] = {}
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
            merged.update(PRESETS[preset])
        merged.update(values)
        seed = merged.pop("seed", 0)
        groups = {}
        for gname, gcls in GROUPS.items():
            names = {f.name for f in fields(gcls)}
            groups[gname] = gcls(**{k: merged.pop(k) for k in list(merged) if k in names})
        if merged:
            known = [s.name for s in settings()] + ["seed"]
            hints = []
            for k in merged:
                close = difflib.get_close_matches(k, known, n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise TypeError(f"unknown setting(s) {', '.join(hints)}; the settings are {known}")
        return cls(**groups, seed=seed)

    def flat(self) -> dict[str, Any]:
        """Every setting by its field name, plus ``seed``."""
        out: dict[str, Any] = {}
        for gname in GROUPS:
            out.update(asdict(getattr(self, gname)))
        out["seed"] = self.seed
        return out

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (JSON-ready): ``{"model": {...}, "sampler": {...}, ..., "seed": s}``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SSLConfig":
        """Inverse of :meth:`to_dict` (also accepts the flat form of older saved models)."""
        if not isinstance(d, dict):
            raise ValueError(f"a configuration must be a dict, got {type(d).__name__}")
        if any(g in d for g in GROUPS):
            flat = {}
            for g in GROUPS:
                part = d.get(g, {})
                if not isinstance(part, dict):
                    raise ValueError(f"configuration group {g!r} must be a dict, got {part!r}")
                flat.update(part)
            flat["seed"] = d.get("seed", 0)
        else:
            flat = dict(d)
        # Saved before the setting existed (2026-12-04): such a model chose its blocks' paths by
        # the Gibbs draw, so that is what it continues with.
        flat.setdefault("block_final_draw", "gibbs")
        return cls.from_flat(**flat)

    def replace(self, **values) -> "SSLConfig":
        """A copy with some flat settings changed."""
        return SSLConfig.from_flat(**{**self.flat(), **values})


@dataclass(frozen=True)
class Setting:
    """One configurable field, for front-ends that list or parse settings."""

    name: str
    group: str
    default: Any
    help: str
    choices: tuple | None
    flag: str

    @property
    def type(self) -> type:
        return type(self.default) if self.default is not None else int


def settings() -> list[Setting]:
    """Every setting of :class:`SSLConfig`'s groups, in declaration order."""
    out = []
    for gname, gcls in GROUPS.items():
        for f in fields(gcls):
            default = f.default if f.default is not MISSING else f.default_factory()
            flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
            out.append(Setting(f.name, gname, default, f.metadata["help"], f.metadata.get("choices"), flag))
    return out


def _lag_arg(value: str):
    if value == FULL_LAG:
        return value
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"a look-ahead must be an integer >= 0 or {FULL_LAG!r}, got {value!r}")
    return int(value)


def add_setting_flags(p: argparse.ArgumentParser) -> None:
    """One flag per setting of :mod:`pyro_ssl.config`, with its help and default (front-ends share this)."""
    for s in settings():
        kw = dict(dest=s.name, default=None, help=s.help + (f" (default {s.default})" if s.default is not None else ""))
        if s.choices:
            kw["choices"] = s.choices
        if s.name in ("ancestor_lag", "block_lookahead"):
            kw["type"] = _lag_arg
        elif s.name != "embed_dim":
            kw["type"] = s.type
        else:
            kw["type"] = int
        p.add_argument(s.flag, **kw)
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")


def vocab_settings() -> list[Setting]:
    """The fields of :class:`VocabConfig` (the CLI's vocabulary flags)."""
    out = []
    for f in fields(VocabConfig):
        out.append(Setting(f.name, "vocab", f.default, f.metadata["help"], None, "--" + f.name.replace("_", "-")))
    return out


def add_vocab_flags(p: argparse.ArgumentParser) -> None:
    """One flag per :class:`VocabConfig` field, with its help and default."""
    types = {"vocab_size": int, "min_count": int, "no_below": int, "no_above": float, "keep_n": int}
    for s in vocab_settings():
        kw = dict(dest=s.name, default=None, help=s.help + (f" (default {s.default})" if s.default is not None else ""))
        if s.name == "stopwords":
            kw.update(action="store_true", default=None, help=s.help)
        else:
            kw["type"] = types[s.name]
        p.add_argument(s.flag, **kw)


def chosen_vocab(args: argparse.Namespace) -> VocabConfig:
    """The :class:`VocabConfig` of the command line's vocabulary flags (defaults for the others)."""
    return VocabConfig(**{s.name: getattr(args, s.name) for s in vocab_settings()
                          if getattr(args, s.name, None) is not None})


def chosen_settings(args: argparse.Namespace) -> dict:
    """The settings given on the command line (the others keep their defaults)."""
    out = {s.name: getattr(args, s.name) for s in settings() if getattr(args, s.name, None) is not None}
    if getattr(args, "seed", None) is not None:
        out["seed"] = args.seed
    return out
