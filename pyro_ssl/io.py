"""Safe persistence: saved models and training checkpoints.

A **saved model** is a directory::

    model_dir/
        config.json           readable: hyperparameters (SSL.get_params()), K, V, dtype,
                              package and format versions, training history, file checksums
        vocab.json            the vocabulary (when the model has one)
        weights.safetensors   LSTM prior state dict (``model.*``) and ``log_phi``

Weights are stored with safetensors, a format that holds only tensors and cannot execute code
when loaded. ``config.json`` records the SHA-256 of the other files, so a corrupt, truncated or
modified file is refused with an error naming it.

A **checkpoint** (``checkpoint_dir/checkpoint.pt``) holds everything needed to continue a fit
exactly: model weights, ``log_phi``, the :class:`~pyro_ssl.infer.em.StochasticEM` state (topic
paths, counts, sweep generator, Adam state), the torch global RNG state (dropout), the history,
the epoch, and fingerprints of the data and hyperparameters. It is written with ``torch.save``
to a temporary file in the same directory and renamed over the previous one
(:func:`os.replace` is atomic), and read back with ``torch.load(..., weights_only=True)``, which
only rebuilds tensors and plain containers.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "FORMAT_VERSION",
    "CONFIG_FILE",
    "VOCAB_FILE",
    "WEIGHTS_FILE",
    "CHECKPOINT_FILE",
    "save_model",
    "load_model",
    "save_checkpoint",
    "load_checkpoint",
    "restore_checkpoint",
    "data_fingerprint",
    "atomic_write",
]

FORMAT_VERSION = 1
"""Version of the saved-model directory layout (bumped on incompatible changes)."""
CHECKPOINT_VERSION = 1
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
WEIGHTS_FILE = "weights.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"
_FORMAT_TAG = "pyro-ssl-model"
_CHECKPOINT_TAG = "pyro-ssl-checkpoint"

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _dtype_from_name(name: Any, where: Path) -> torch.dtype:
    if name not in _DTYPES:
        raise ValueError(f"{where}: unknown dtype {name!r} (expected one of {sorted(_DTYPES)})")
    return _DTYPES[name]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Write ``path`` atomically: ``write(tmp_path)`` fills a temporary file in the same
    directory, which is flushed to disk and renamed over ``path``. A crash leaves either the
    old file or the new one, never a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _write_text(path: Path, text: str) -> Path:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write)


def _package_version() -> str:
    from . import __version__

    return __version__


def _jsonable(x):
    """History entries as plain JSON values (tensors and numpy scalars to Python numbers)."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if torch.is_tensor(x):
        return x.tolist()
    if hasattr(x, "item") and callable(x.item):
        return x.item()
    return x


# ---------------------------------------------------------------------------- saved models
def save_model(ssl, path: str | os.PathLike) -> Path:
    """Save a fitted :class:`~pyro_ssl.SSL` to the directory ``path`` (created if needed).

    Every file is written atomically; ``config.json`` is written last and records the other
    files' checksums, so a directory whose save was interrupted is refused by
    :func:`load_model` rather than loaded half-updated.

    Returns:
        the directory.
    """
    from safetensors.torch import save_file

    ssl._check_fitted()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in ssl.model.state_dict().items()}
    tensors["log_phi"] = ssl.log_phi.detach().cpu().contiguous()
    atomic_write(path / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp, metadata={"format": _FORMAT_TAG}))
    files = {WEIGHTS_FILE: _sha256(path / WEIGHTS_FILE)}
    vocab_file = path / VOCAB_FILE
    if ssl.vocab is not None:
        ssl.vocab.save(vocab_file)
        files[VOCAB_FILE] = _sha256(vocab_file)
    elif vocab_file.exists():
        vocab_file.unlink()  # a stale vocabulary from an earlier save into this directory
    config = {
        "format": _FORMAT_TAG,
        "format_version": FORMAT_VERSION,
        "pyro_ssl_version": _package_version(),
        "params": ssl.get_params(),
        "K": ssl.K,
        "V": ssl.V,
        "dtype": _dtype_name(ssl.dtype),
        "files": files,
        "history": _jsonable(ssl.history),
    }
    _write_text(path / CONFIG_FILE, json.dumps(config, indent=2))
    return path


def _read_config(path: Path) -> dict:
    cfg_path = path / CONFIG_FILE
    if not path.is_dir():
        raise FileNotFoundError(f"saved model directory not found: {path}")
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: missing; not a saved pyro-ssl model directory")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg_path}: not valid JSON ({e})") from e
    if not isinstance(cfg, dict) or cfg.get("format") != _FORMAT_TAG:
        raise ValueError(f"{cfg_path}: not a pyro-ssl model config (expected format {_FORMAT_TAG!r})")
    version = cfg.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{cfg_path}: format_version {version!r} is not supported by this pyro-ssl "
            f"(reads up to {FORMAT_VERSION}); upgrade pyro-ssl"
        )
    missing = [k for k in ("params", "K", "V", "dtype", "files") if k not in cfg]
    if missing:
        raise ValueError(f"{cfg_path}: missing keys {missing}")
    if not isinstance(cfg["params"], dict) or not isinstance(cfg["files"], dict):
        raise ValueError(f"{cfg_path}: 'params' and 'files' must be JSON objects")
    for key in ("K", "V"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ValueError(f"{cfg_path}: {key} must be a positive integer, got {cfg[key]!r}")
    return cfg


def _check_file(path: Path, name: str, cfg: dict) -> Path:
    f = path / name
    if not f.is_file():
        raise FileNotFoundError(f"{f}: missing from the saved model")
    expected = cfg["files"].get(name)
    if expected is not None and _sha256(f) != expected:
        raise ValueError(
            f"{f}: checksum mismatch with {CONFIG_FILE} (the file is corrupt or was modified after saving)"
        )
    return f


def _load_weights(f: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(f))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"{f}: not a readable safetensors file ({e})") from e


def load_model(path: str | os.PathLike, device=None):
    """Load a model saved by :func:`save_model` (or :meth:`SSL.save`).

    Args:
        path: the saved-model directory.
        device: where to put the model (``None``: CPU).

    Returns:
        a fitted :class:`~pyro_ssl.SSL` (``model``, ``log_phi``, ``vocab``, ``V``, ``history``).

    Raises:
        FileNotFoundError: the directory or one of its files is missing.
        ValueError: a file is corrupt, modified, or inconsistent with the config (the message
            names the file).
    """
    from .data import Vocabulary
    from .estimator import SSL
    from .model import TopicalSSL

    path = Path(path)
    cfg = _read_config(path)
    cfg_path = path / CONFIG_FILE
    dtype = _dtype_from_name(cfg["dtype"], cfg_path)
    params = dict(cfg["params"])
    try:
        ssl = SSL(**params, device=device, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{cfg_path}: invalid 'params' ({e})") from e
    K, V = int(cfg["K"]), int(cfg["V"])
    if ssl.K != K:
        raise ValueError(f"{cfg_path}: params K={ssl.K} disagrees with K={K}")

    weights_file = _check_file(path, WEIGHTS_FILE, cfg)
    tensors = _load_weights(weights_file)
    vocab = None
    if VOCAB_FILE in cfg["files"]:
        vocab_file = _check_file(path, VOCAB_FILE, cfg)
        vocab = Vocabulary.load(vocab_file)
        if len(vocab) != V:
            raise ValueError(f"{vocab_file}: {len(vocab)} words but the model has V={V}")

    # Build without touching the caller's global RNG stream (initial weights are overwritten).
    with torch.random.fork_rng(devices=[]):
        model = TopicalSSL(K, V, ssl.hidden_size, ssl.embed_dim, ssl.dropout, ssl.beta)
    model.to(device=ssl.device, dtype=dtype)
    expected = {f"model.{k}": v for k, v in model.state_dict().items()}
    expected_keys = set(expected) | {"log_phi"}
    missing, unexpected = sorted(expected_keys - set(tensors)), sorted(set(tensors) - expected_keys)
    if missing or unexpected:
        raise ValueError(f"{weights_file}: missing tensors {missing}, unexpected tensors {unexpected}")
    for k, ref in expected.items():
        t = tensors[k]
        if tuple(t.shape) != tuple(ref.shape) or t.dtype != ref.dtype:
            raise ValueError(
                f"{weights_file}: tensor {k!r} is {tuple(t.shape)} {t.dtype}, expected {tuple(ref.shape)} {ref.dtype}"
            )
    log_phi = tensors["log_phi"]
    if tuple(log_phi.shape) != (K, V) or log_phi.dtype != dtype:
        raise ValueError(
            f"{weights_file}: log_phi is {tuple(log_phi.shape)} {log_phi.dtype}, expected ({K}, {V}) {dtype}"
        )
    bad = [k for k, t in tensors.items() if t.is_floating_point() and torch.isnan(t).any()]
    if bad:
        raise ValueError(f"{weights_file}: NaN values in {bad}")
    norm = log_phi.double().logsumexp(-1)
    if not torch.allclose(norm, torch.zeros_like(norm), atol=1e-3):
        worst = float(norm.abs().max())
        raise ValueError(f"{weights_file}: log_phi rows do not normalise (max |logsumexp| {worst:.3g})")
    model.load_state_dict({k[len("model."):]: tensors[k] for k in expected})
    model.prior.eval()

    ssl.model = model
    ssl.V = V
    ssl.log_phi = log_phi.to(ssl.device)
    ssl.vocab = vocab
    history = cfg.get("history", [])
    ssl.history = list(history) if isinstance(history, list) else []
    return ssl


# ---------------------------------------------------------------------------- checkpoints
def data_fingerprint(tokens: torch.Tensor, lengths: torch.Tensor, V: int | None = None) -> str:
    """SHA-256 of the training documents' token ids (padding ignored), lengths and ``V``."""
    from .model import length_mask

    tokens, lengths = tokens.detach().cpu().long(), lengths.detach().cpu().long()
    mask = length_mask(lengths, tokens.shape[1])
    h = hashlib.sha256()
    h.update(b"pyro-ssl-data-v1")
    h.update(lengths.numpy().tobytes())
    h.update(tokens[mask].numpy().tobytes())
    h.update(str(V).encode())
    return h.hexdigest()


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda" and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"], device)


def _to_cpu(x):
    if torch.is_tensor(x):
        return x.detach().cpu()
    if isinstance(x, dict):
        return {k: _to_cpu(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_cpu(v) for v in x)
    return x


def save_checkpoint(ssl, directory: str | os.PathLike, *, fingerprint: str, start_epoch: int) -> Path:
    """Write ``directory/checkpoint.pt`` atomically from a fitting :class:`~pyro_ssl.SSL`.

    Args:
        ssl: the estimator being fitted (its ``_em`` holds the learning state).
        fingerprint: :func:`data_fingerprint` of the training data.
        start_epoch: the EM epoch at which the current ``fit`` call started (so a resumed
            call with the same ``epochs`` ends where the uninterrupted one would).
    """
    em = ssl._em
    state = {
        "format": _CHECKPOINT_TAG,
        "version": CHECKPOINT_VERSION,
        "pyro_ssl_version": _package_version(),
        "params": ssl.get_params(),
        "K": ssl.K,
        "V": ssl.V,
        "dtype": _dtype_name(ssl.dtype),
        "data_fingerprint": fingerprint,
        "epoch": em.epoch,
        "start_epoch": int(start_epoch),
        "model": _to_cpu(ssl.model.state_dict()),
        "log_phi": _to_cpu(ssl.log_phi),
        "em": _to_cpu(em.state_dict()),
        "rng": _to_cpu(_rng_state(ssl.device)),
        "history": _jsonable(ssl.history),
        "vocab": json.dumps(ssl.vocab.to_dict()) if ssl.vocab is not None else None,
    }
    return atomic_write(Path(directory) / CHECKPOINT_FILE, lambda tmp: torch.save(state, tmp))


def load_checkpoint(directory: str | os.PathLike) -> dict | None:
    """Read ``directory/checkpoint.pt`` with ``weights_only=True``; ``None`` if there is none.

    Raises:
        ValueError: the file is corrupt or not a pyro-ssl checkpoint.
    """
    f = Path(directory) / CHECKPOINT_FILE
    if not f.is_file():
        return None
    try:
        state = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors of several kinds: one clear message
        raise ValueError(f"{f}: not a readable pyro-ssl checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_TAG:
        raise ValueError(f"{f}: not a pyro-ssl checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{f}: unsupported checkpoint version {state.get('version')!r}")
    missing = [k for k in ("params", "K", "V", "dtype", "data_fingerprint", "epoch", "start_epoch", "model",
                           "log_phi", "em", "rng", "history") if k not in state]
    if missing:
        raise ValueError(f"{f}: checkpoint is missing {missing}")
    state["path"] = str(f)
    return state


def restore_checkpoint(ssl, state: dict, fingerprint: str) -> int:
    """Put a checkpoint's state into ``ssl`` (its model and ``_em`` must be built already).

    Checks that the data and hyperparameters match the checkpoint's, then restores weights,
    ``log_phi``, the EM state, the global RNG and the history.

    Returns:
        the epoch at which the interrupted ``fit`` call started.

    Raises:
        ValueError: different data or hyperparameters than the checkpointed run.
    """
    f = state.get("path", CHECKPOINT_FILE)
    if state["data_fingerprint"] != fingerprint:
        raise ValueError(
            f"{f}: the checkpoint was written for different training data (or vocabulary size); "
            "resume with the same data, or start a fresh fit without resume"
        )
    params = ssl.get_params()
    diff = {k: (state["params"].get(k), v) for k, v in params.items() if state["params"].get(k) != v}
    if state["K"] != ssl.K or state["V"] != ssl.V:
        diff["K, V"] = ((state["K"], state["V"]), (ssl.K, ssl.V))
    if state["dtype"] != _dtype_name(ssl.dtype):
        diff["dtype"] = (state["dtype"], _dtype_name(ssl.dtype))
    if diff:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"{f}: hyperparameters differ from the checkpointed run ({detail})")
    try:
        ssl.model.load_state_dict(state["model"])
        ssl._em.load_state_dict(state["em"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise ValueError(f"{f}: checkpoint state does not fit the model ({e})") from e
    ssl.log_phi = ssl._em.log_phi
    ssl.history = list(state["history"])
    if state.get("vocab") is not None and ssl.vocab is None:
        from .data import Vocabulary

        ssl.vocab = Vocabulary.from_dict(json.loads(state["vocab"]))
    _set_rng_state(state["rng"], ssl.device)
    return int(state["start_epoch"])
