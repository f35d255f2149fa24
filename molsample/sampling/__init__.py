"""Sampling: ODE integration with log-densities, importance weights and ESS.

``ode`` (integrate, sample, log_likelihood) and ``weights`` (log_weights, ess, log_partition,
summarize, resample) are imported here; MCMC and MD correction steps live in their own modules.
"""

from molsample.sampling.ode import SOLVERS, ODEResult, field_divergence, integrate, log_likelihood, sample
from molsample.sampling.weights import WeightSummary, ess, log_partition, log_weights, resample, summarize

__all__ = [
    "SOLVERS", "ODEResult", "field_divergence", "integrate", "log_likelihood", "sample",
    "WeightSummary", "ess", "log_partition", "log_weights", "resample", "summarize",
]
