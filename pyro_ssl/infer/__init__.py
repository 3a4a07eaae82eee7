"""Inference: the particle-Gibbs kernel, the stochastic-EM learner and its pieces, SVI."""

from .em import StochasticEM, SweepStats
from .kernel import ParticleGibbs, to_inference_data
from .mstep import PriorMStep, dirichlet_log_phi, smoothed_log_phi, topic_word_counts
from .reduce import LOCAL, Reducer
from .stopping import EarlyStopping

__all__ = [
    "EarlyStopping",
    "LOCAL",
    "ParticleGibbs",
    "PriorMStep",
    "Reducer",
    "StochasticEM",
    "SweepStats",
    "dirichlet_log_phi",
    "smoothed_log_phi",
    "to_inference_data",
    "topic_word_counts",
]
