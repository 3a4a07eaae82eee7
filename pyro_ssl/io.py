"""Safe persistence of plain state: saved models and training checkpoints.

This module reads and writes dicts of tensors, JSON values and files; it knows nothing of the
estimator, which converts its state to and from these (:meth:`pyro_ssl.SSL.save`,
:meth:`~pyro_ssl.SSL.load`, checkpoints in :meth:`~pyro_ssl.SSL.fit`).

A **saved model** is a directory::

    model_dir/
        config.json           readable: the configuration (SSLConfig.to_dict()), K, V, dtype,
                              package and format versions, training history, file checksums
        vocab.json            the vocabulary (when the model has one)
        weights.safetensors   LSTM prior state dict (``model.*``) and ``log_phi``

Weights are stored with safetensors, a format that holds only tensors and cannot execute code
when loaded. ``config.json`` records the SHA-256 of the other files, so a corrupt, truncated or
modified file is refused with an error naming it.

A **checkpoint** (``checkpoint_dir/checkpoint.pt``, one format for one-process and
data-parallel fits) holds a plain dict: tensors, numbers, strings and containers. The dict is
serialised with ``torch.save`` into a payload whose SHA-256 is stored beside it, in an outer
``torch.save`` file written to a temporary file in the same directory, flushed and renamed over
the previous one (:func:`os.replace` is atomic). Both layers are read back with
``torch.load(..., weights_only=True)``, which only rebuilds tensors and plain containers and
never runs code from the file; a flipped bit anywhere in the payload fails the checksum. The
estimator then range-checks what it restores (paths, counts, Adam state, history). Temporary
files of a write that was killed are removed by the next save or load of that checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from dataclasses import dataclass
from typing import Any

import torch

from .version import __version__

__all__ = [
    "FORMAT_VERSION",
    "CONFIG_FILE",
    "VOCAB_FILE",
    "WEIGHTS_FILE",
    "CHECKPOINT_FILE",
    "SavedModel",
    "save_model",
    "load_model",
    "save_checkpoint",
    "load_checkpoint",
    "atomic_write",
    "remove_stale_temporaries",
    "jsonable",
]

FORMAT_VERSION = 2
"""Version of the saved-model directory layout (2: nested ``config``; 1: flat ``params``, still read)."""
CHECKPOINT_VERSION = 3
"""3: checksummed payload; 2 (no checksum, read with a warning); 1 predates keyed randomness."""
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


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return  # not possible on every platform (Windows); the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
        _fsync_dir(path.parent)  # the rename itself survives a power cut
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed :func:`atomic_write` calls for ``path`` left behind
    (``.NAME.*.tmp`` beside it). Only for files with one writer at a time (checkpoints)."""
    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for f in path.parent.glob(f".{path.name}.*.tmp"):
            try:
                f.unlink()
                removed.append(f)
            except FileNotFoundError:
                pass
    return removed


def _write_text(path: Path, text: str) -> Path:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write)


def _package_version() -> str:
    return __version__


def jsonable(x):
    """Plain, strictly valid JSON values: tensors and numpy scalars to Python numbers, NaN and
    infinities to ``None``, other objects (dtypes, devices) to their ``str``."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if torch.is_tensor(x):
        return jsonable(x.tolist())
    if hasattr(x, "item") and callable(x.item) and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if x is None or isinstance(x, (bool, int, str)):
        return x
    return str(x)


# ---------------------------------------------------------------------------- saved models
@dataclass
class SavedModel:
    """What a saved-model directory holds, as plain values.

    Attributes:
        config: the configuration dict (nested, or flat ``params`` from format 1).
        K, V: topics and vocabulary size; dtype: the weights' torch dtype.
        tensors: ``model.*`` LSTM-prior state and ``log_phi`` ``(K, V)``.
        vocab: the vocabulary's JSON dict, or ``None``.
        history: per-epoch training entries.
        path: the directory, for messages.
        best_epoch: the epoch early stopping restored (``None``: none, or saved before it was kept).
    """

    config: dict
    K: int
    V: int
    dtype: torch.dtype
    tensors: dict[str, torch.Tensor]
    vocab: dict | None
    history: list
    path: Path
    best_epoch: int | None = None


def save_model(path: str | os.PathLike, *, config: dict, K: int, V: int, dtype: torch.dtype,
               tensors: dict[str, torch.Tensor], vocab: dict | None, history: list,
               best_epoch: int | None = None) -> Path:
    """Write a saved-model directory (created if needed); returns it.

    Every file is written atomically; ``config.json`` is written last and records the other
    files' checksums, so a directory whose save was interrupted is refused by
    :func:`load_model` rather than loaded half-updated.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"cannot save a model to {path}: it is a file, not a directory")
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp, metadata={"format": _FORMAT_TAG}))
    files = {WEIGHTS_FILE: _sha256(path / WEIGHTS_FILE)}
    vocab_file = path / VOCAB_FILE
    if vocab is not None:
        _write_text(vocab_file, json.dumps(vocab, ensure_ascii=False))
        files[VOCAB_FILE] = _sha256(vocab_file)
    elif vocab_file.exists():
        vocab_file.unlink()  # a stale vocabulary from an earlier save into this directory
    doc = {
        "format": _FORMAT_TAG,
        "format_version": FORMAT_VERSION,
        "pyro_ssl_version": _package_version(),
        "config": config,
        "K": int(K),
        "V": int(V),
        "dtype": _dtype_name(dtype),
        "files": files,
        "history": jsonable(history),
        "best_epoch": None if best_epoch is None else int(best_epoch),
    }
    _write_text(path / CONFIG_FILE, json.dumps(doc, indent=2))
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
    key = "config" if version >= 2 else "params"
    missing = [k for k in (key, "K", "V", "dtype", "files") if k not in cfg]
    if missing:
        raise ValueError(f"{cfg_path}: missing keys {missing}")
    if not isinstance(cfg[key], dict) or not isinstance(cfg["files"], dict):
        raise ValueError(f"{cfg_path}: {key!r} and 'files' must be JSON objects")
    cfg["config"] = cfg[key]
    for k in ("K", "V"):
        if not isinstance(cfg[k], int) or cfg[k] < 1:
            raise ValueError(f"{cfg_path}: {k} must be a positive integer, got {cfg[k]!r}")
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


def load_model(path: str | os.PathLike) -> SavedModel:
    """Read a directory written by :func:`save_model`: checksums, finite weights, normalised ``log_phi``.

    Raises:
        FileNotFoundError: the directory or one of its files is missing.
        ValueError: a file is corrupt, modified, or inconsistent with the config (the message
            names the file).
    """
    path = Path(path)
    cfg = _read_config(path)
    cfg_path = path / CONFIG_FILE
    dtype = _dtype_from_name(cfg["dtype"], cfg_path)
    K, V = int(cfg["K"]), int(cfg["V"])
    weights_file = _check_file(path, WEIGHTS_FILE, cfg)
    tensors = _load_weights(weights_file)
    vocab = None
    if VOCAB_FILE in cfg["files"]:
        vocab_file = _check_file(path, VOCAB_FILE, cfg)
        try:
            vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{vocab_file}: not valid JSON ({e})") from e
    log_phi = tensors.get("log_phi")
    if log_phi is None or tuple(log_phi.shape) != (K, V) or log_phi.dtype != dtype:
        got = "missing" if log_phi is None else f"{tuple(log_phi.shape)} {log_phi.dtype}"
        raise ValueError(f"{weights_file}: log_phi is {got}, expected ({K}, {V}) {dtype}")
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ValueError(f"{weights_file}: NaN or infinite values in {bad}")
    norm = log_phi.double().logsumexp(-1)
    if not torch.allclose(norm, torch.zeros_like(norm), atol=1e-3):
        worst = float(norm.abs().max())
        raise ValueError(f"{weights_file}: log_phi rows do not normalise (max |logsumexp| {worst:.3g})")
    history = cfg.get("history", [])
    best = cfg.get("best_epoch")
    if best is not None and (isinstance(best, bool) or not isinstance(best, int) or best < 1):
        raise ValueError(f"{cfg_path}: best_epoch must be a positive integer or null, got {best!r}")
    return SavedModel(cfg["config"], K, V, dtype, tensors, vocab, list(history) if isinstance(history, list) else [], path,
                      best)


# ---------------------------------------------------------------------------- checkpoints
_CHECKPOINT_KEYS = ("config", "K", "V", "dtype", "data_fingerprint", "epoch", "start_epoch", "em", "history")


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write the plain ``state`` dict atomically to ``path``: a checksummed payload, tagged with
    format and version (temporary files of earlier, killed writes are removed first)."""
    path = Path(path)
    remove_stale_temporaries(path)
    buf = io.BytesIO()
    torch.save(dict(state), buf)
    payload = buf.getvalue()
    outer = {
        "format": _CHECKPOINT_TAG,
        "version": CHECKPOINT_VERSION,
        "pyro_ssl_version": _package_version(),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8),
    }
    return atomic_write(path, lambda tmp: torch.save(outer, tmp))


def load_checkpoint(path: str | os.PathLike) -> dict | None:
    """Read a checkpoint with ``weights_only=True``; ``None`` if there is none.

    Raises:
        ValueError: the file is corrupt, not a pyro-ssl checkpoint, or of another version.
    """
    f = Path(path)
    remove_stale_temporaries(f)
    if f.exists() and not f.is_file():
        raise ValueError(f"{f} is not a file; a checkpoint directory holds a file named {CHECKPOINT_FILE}")
    if not f.is_file():
        return None
    state = _torch_load(f, f)
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_TAG:
        raise ValueError(f"{f}: not a pyro-ssl checkpoint")
    if state.get("version") == CHECKPOINT_VERSION:
        payload = state.get("payload")
        if not torch.is_tensor(payload) or payload.dtype != torch.uint8 or payload.ndim != 1 \
                or not isinstance(state.get("sha256"), str):
            raise ValueError(f"{f}: checkpoint has no checksummed payload")
        data = payload.numpy().tobytes()
        if hashlib.sha256(data).hexdigest() != state["sha256"]:
            raise ValueError(f"{f}: checksum mismatch (the checkpoint is corrupt or was modified); "
                             "start a fresh fit in an empty checkpoint directory")
        inner = _torch_load(io.BytesIO(data), f)
        if not isinstance(inner, dict):
            raise ValueError(f"{f}: checkpoint payload is not a dict")
        state = dict(inner, format=state["format"], version=state["version"],
                     pyro_ssl_version=state.get("pyro_ssl_version"))
    elif state.get("version") == 2:
        warnings.warn(f"{f}: a version-2 checkpoint has no checksum; it is range-checked only", stacklevel=2)
    else:
        raise ValueError(
            f"{f}: checkpoint version {state.get('version')!r} was written by another pyro-ssl "
            f"(this one reads version {CHECKPOINT_VERSION}; version 1 predates keyed randomness and "
            "cannot continue the same chain); start a fresh fit in an empty checkpoint directory"
        )
    missing = [k for k in _CHECKPOINT_KEYS if k not in state]
    if missing:
        raise ValueError(f"{f}: checkpoint is missing {missing}")
    state["path"] = str(f)
    return state


def _torch_load(src, f: Path):
    try:
        return torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors of several kinds: one clear message
        raise ValueError(f"{f}: not a readable pyro-ssl checkpoint ({type(e).__name__}: {e})") from e
