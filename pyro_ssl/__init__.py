"""pyro-ssl: State Space LSTM topic models with fast particle-Gibbs inference on Pyro.

Layers (each usable alone):

* :mod:`pyro_ssl.model`: the generative model as Pyro code and the LSTM prior;
* :mod:`pyro_ssl.smc`: resampling schemes and the batched conditional-SMC sweep;
* :mod:`pyro_ssl.infer`: the particle-Gibbs MCMC kernel and stochastic-EM learning;
* :mod:`pyro_ssl.estimator`: the user API, ``pyro_ssl.fit(corpus, K=50)``.
"""

from .estimator import SSL, fit
from .model import LSTMPrior, TopicalSSL, TopicSequence

__version__ = "0.1.0"

__all__ = ["SSL", "fit", "LSTMPrior", "TopicalSSL", "TopicSequence", "__version__"]
