"""Sequential Monte Carlo for the SSL: resampling schemes and the batched (conditional) sweep."""

from .categorical import sample_categorical
from .csmc import FULL_LAG, SweepResult, csmc_sweep, particle_filter
from .resampling import RESAMPLERS, Resampler, get_resampler

__all__ = [
    "FULL_LAG",
    "RESAMPLERS",
    "Resampler",
    "SweepResult",
    "csmc_sweep",
    "get_resampler",
    "particle_filter",
    "sample_categorical",
]
