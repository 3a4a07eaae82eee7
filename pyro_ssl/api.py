"""``pyro_ssl.fit(corpus, K=50)``: the one-call entry, in this process or in ``workers`` processes."""

from __future__ import annotations

from .config import settings
from .distributed import fit_workers
from .estimator import SSL
from .infer.svi import SVIConfig

__all__ = ["fit"]

_FIT_KEYS = {"vocab_size", "eval_data", "eval_every", "eval_particles", "callback", "progress", "checkpoint_dir", "resume"}
_ONE_PROCESS_KEYS = {"callback"}


def fit(data, K: int = 50, epochs: int | None = None, method: str = "pg", workers: int = 1, **kwargs) -> SSL:
    """Fit a Topical SSL: ``pyro_ssl.fit(corpus, K=50)``.

    Keyword arguments are settings of :class:`SSL` (the fields of :mod:`pyro_ssl.config`,
    ``seed``, ``preset``, ``device``, ``dtype``) or arguments of :meth:`SSL.fit`
    (``vocab_size``, ``eval_data``, ``eval_every``, ``eval_particles``, ``callback``,
    ``progress``, ``checkpoint_dir``, ``resume``). ``method="svi"`` learns the same model by
    SVI with an amortised guide instead of particle Gibbs (``docs/svi.md``); then the
    :class:`~pyro_ssl.infer.svi.SVIConfig` fields are accepted too.

    ``workers=N`` (particle Gibbs only) fits on ``N`` processes of this machine through the
    data-parallel engine (:func:`pyro_ssl.distributed.fit_workers`) and returns the model one
    process gives; each process uses one core (:mod:`pyro_ssl.runtime`). A validation set and
    early stopping work there too (each process scores a share); ``callback`` needs ``workers=1``.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if method == "svi":
        if workers != 1:
            raise ValueError("workers > 1 runs particle Gibbs; method='svi' runs in one process (workers=1)")
        svi_keys = set(SVIConfig.__dataclass_fields__)
        svi = {k: kwargs.pop(k) for k in list(kwargs) if k in svi_keys}
        pg_only = {s.name for s in settings() if s.group != "model"} - {"epochs", "eval_particles"} - svi_keys
        wrong = sorted(set(kwargs) & pg_only)
        if wrong:
            raise TypeError(f"{wrong} are particle-Gibbs settings; method='svi' takes the model settings and "
                            f"{sorted(svi_keys)}")
        fit_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _FIT_KEYS}
        return SSL(K=K, **kwargs).fit(data, epochs=epochs, method="svi", **fit_kwargs, **svi)
    if workers > 1:
        if method != "pg":
            raise ValueError(f"method must be 'pg' or 'svi', got {method!r}")
        one = sorted(set(kwargs) & _ONE_PROCESS_KEYS)
        if one:
            raise TypeError(f"{one} need the model in this process; use workers=1, or evaluate the returned model")
        return fit_workers(data, workers, K=K, epochs=epochs, **kwargs)
    fit_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _FIT_KEYS}
    return SSL(K=K, **kwargs).fit(data, epochs=epochs, method=method, **fit_kwargs)
