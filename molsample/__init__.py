"""molsample: Boltzmann-generator molecular sampling with equivariant flows and Tilt Matching.

The public API is listed in ``__all__``; names are imported lazily so that ``import molsample``
and the CLI start fast (OpenMM, mdtraj and e3nn are loaded only when used).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name → defining module
_API: dict[str, str] = {
    # systems and energies
    "System": "molsample.systems",
    "load_system": "molsample.systems",
    "available_systems": "molsample.systems",
    "Energy": "molsample.energies",
    "LennardJones": "molsample.energies",
    "MultiDoubleWell": "molsample.energies",
    "RingMixture": "molsample.energies",
    "GaussianEnergy": "molsample.energies",
    "OpenMMEnergy": "molsample.energies.openmm_bridge",
    "kT": "molsample.units",
    # base distributions, paths, networks
    "StandardGaussian": "molsample.distributions",
    "CoMFreeGaussian": "molsample.distributions",
    "base_distribution": "molsample.distributions",
    "LinearPath": "molsample.paths",
    "TrigPath": "molsample.paths",
    "PathSample": "molsample.paths",
    "get_path": "molsample.paths",
    "EGNN": "molsample.nets",
    "MLPVelocity": "molsample.nets",
    "E3NNVelocity": "molsample.nets.e3nn_net",
    "build_net": "molsample.nets",
    "save_model": "molsample.nets",
    "load_model": "molsample.nets",
    # sampling, weights, training
    "ODEResult": "molsample.sampling.ode",
    "integrate": "molsample.sampling.ode",
    "sample_ode": "molsample.sampling.ode:sample",
    "log_likelihood": "molsample.sampling.ode",
    "log_weights": "molsample.sampling.weights",
    "ess": "molsample.sampling.weights",
    "log_partition": "molsample.sampling.weights",
    "summarize": "molsample.sampling.weights",
    "resample": "molsample.sampling.weights",
    "WeightSummary": "molsample.sampling.weights",
    "FlowMatchingConfig": "molsample.training.flow_matching",
    "train_flow_matching": "molsample.training.flow_matching",
    "TiltConfig": "molsample.training.tilt",
    "TiltMatching": "molsample.training.tilt",
    "TiltReward": "molsample.rewards",
    "make_reward": "molsample.rewards",
    "RunConfig": "molsample.config",
    "resolve_config": "molsample.config",
    "run_tilt": "molsample.stages.run",
    "sample_more": "molsample.stages.run",
    "FlowSampler": "molsample.sampling.flow_sampler",
    "WeightedSamples": "molsample.sampling.flow_sampler",
    # reference samplers and metrics
    "mala": "molsample.sampling.mcmc",
    "parallel_tempering": "molsample.sampling.mcmc",
    "mala_correct": "molsample.sampling.mcmc",
    "integrated_autocorrelation_time": "molsample.sampling.mcmc",
    "run_md": "molsample.sampling.md",
    "generate_reference": "molsample.sampling.reference",
    "load_or_generate_reference": "molsample.sampling.reference",
    "energy_w1": "molsample.metrics",
    "energy_w2": "molsample.metrics",
    "distance_w1": "molsample.metrics",
    "distance_tv": "molsample.metrics",
    "sliced_wasserstein": "molsample.metrics",
    "equivariant_w2": "molsample.metrics",
    # files, reports, chirality
    "RunFile": "molsample.io.hdf5",
    "open_run": "molsample.io.hdf5",
    "export_run": "molsample.io.export",
    "make_report": "molsample.reporting.report",
    "chirality": "molsample.chirality",
    "chirality_fractions": "molsample.chirality",
    "reflect_wrong_handed": "molsample.chirality",
    "chiral_centers_for_system": "molsample.chirality",
    # errors
    "MolsampleError": "molsample.errors",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'molsample' has no attribute '{name}'")
    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
