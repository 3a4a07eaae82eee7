"""Sequential Monte Carlo for the SSL: sources of uniforms, resampling schemes, the batched (conditional) sweep."""

from .csmc import FULL_LAG, SweepResult, csmc_sweep, particle_filter
from .resampling import RESAMPLERS, Resampler, get_resampler, inverse_cdf
from .uniforms import GeneratorUniforms, KeyedUniforms, UniformSource

__all__ = [
    "FULL_LAG",
    "RESAMPLERS",
    "GeneratorUniforms",
    "KeyedUniforms",
    "Resampler",
    "SweepResult",
    "UniformSource",
    "csmc_sweep",
    "get_resampler",
    "inverse_cdf",
    "particle_filter",
]
