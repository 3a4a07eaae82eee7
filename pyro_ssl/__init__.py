"""pyro-ssl: State Space LSTM topic models with fast particle-Gibbs inference on Pyro.

Layers (each usable alone):

* :mod:`pyro_ssl.config`: every setting and default, defined once;
* :mod:`pyro_ssl.data`: tokenizer, vocabulary, corpora, loaders;
* :mod:`pyro_ssl.model`: the generative model as Pyro code and the LSTM prior;
* :mod:`pyro_ssl.smc`: sources of uniforms, resampling schemes and the batched conditional-SMC sweep;
* :mod:`pyro_ssl.infer`: the particle-Gibbs MCMC kernel and the one stochastic-EM loop;
* :mod:`pyro_ssl.estimator`: the user API, ``pyro_ssl.fit(corpus, K=50)``, and
  :mod:`pyro_ssl.ensemble`: predictions averaged over a run's snapshots;
* front-ends: :mod:`pyro_ssl.cli`, :mod:`pyro_ssl.plots`, :mod:`pyro_ssl.diagnostics`,
  :mod:`pyro_ssl.report`, :mod:`pyro_ssl.distributed`.
"""

from .api import fit
from .estimator import SSL
from .ensemble import SnapshotEnsemble
from .runtime import get_threads, set_threads
from . import report  # noqa: F401  (registers SSL.report; the report is a front-end above the estimator)
from .model import LSTMPrior, TopicalSSL, TopicSequence
from .version import __version__

__all__ = ["SSL", "SnapshotEnsemble", "fit", "set_threads", "get_threads", "LSTMPrior", "TopicalSSL", "TopicSequence", "__version__"]
