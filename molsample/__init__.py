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
    "System": "molsample.systems.cards",
    "load_system": "molsample.systems.cards",
    "available_systems": "molsample.systems.cards",
    "Energy": "molsample.energies",
    "LennardJones": "molsample.energies",
    "MultiDoubleWell": "molsample.energies",
    "RingMixture": "molsample.energies",
    "GaussianEnergy": "molsample.energies",
    "OpenMMEnergy": "molsample.energies.openmm_bridge",
    "kT": "molsample.systems.units",
    # base distributions, paths, networks
    "StandardGaussian": "molsample.flows.distributions",
    "CoMFreeGaussian": "molsample.flows.distributions",
    "base_distribution": "molsample.flows.distributions",
    "LinearPath": "molsample.flows.paths",
    "TrigPath": "molsample.flows.paths",
    "PathSample": "molsample.flows.paths",
    "get_path": "molsample.flows.paths",
    "EGNN": "molsample.nets",
    "MLPVelocity": "molsample.nets",
    "E3NNVelocity": "molsample.nets.e3nn_net",
    "build_net": "molsample.nets",
    "save_model": "molsample.nets",
    "load_model": "molsample.nets",
    # flow sampling, weights, training
    "ODEResult": "molsample.flows.ode",
    "integrate": "molsample.flows.ode",
    "sample_ode": "molsample.flows.ode:sample",
    "log_likelihood": "molsample.flows.ode",
    "log_weights": "molsample.flows.weights",
    "ess": "molsample.flows.weights",
    "log_partition": "molsample.flows.weights",
    "summarize": "molsample.flows.weights",
    "resample": "molsample.flows.weights",
    "WeightSummary": "molsample.flows.weights",
    "FlowMatchingConfig": "molsample.training.flow_matching",
    "train_flow_matching": "molsample.training.flow_matching",
    "TiltConfig": "molsample.training.tilt",
    "TiltMatching": "molsample.training.tilt",
    "TiltReward": "molsample.training.rewards",
    "make_reward": "molsample.training.rewards",
    "RunConfig": "molsample.stages.config",
    "resolve_config": "molsample.stages.config",
    "run_tilt": "molsample.stages.run",
    "sample_more": "molsample.stages.run",
    "FlowSampler": "molsample.flows.sampler",
    "WeightedSamples": "molsample.flows.sampler",
    # reference samplers and metrics
    "mala": "molsample.mcmc.mala",
    "parallel_tempering": "molsample.mcmc.parallel_tempering",
    "mala_correct": "molsample.mcmc.mala",
    "integrated_autocorrelation_time": "molsample.analysis.autocorrelation",
    "run_md": "molsample.mcmc.md",
    "generate_reference": "molsample.mcmc.reference",
    "load_or_generate_reference": "molsample.mcmc.reference",
    "energy_w1": "molsample.analysis.metrics",
    "energy_w2": "molsample.analysis.metrics",
    "distance_w1": "molsample.analysis.metrics",
    "distance_tv": "molsample.analysis.metrics",
    "sliced_wasserstein": "molsample.analysis.metrics",
    "equivariant_w2": "molsample.analysis.metrics",
    # files, reports, chirality
    "RunFile": "molsample.io.hdf5",
    "open_run": "molsample.io.hdf5",
    "export_run": "molsample.reporting.export",
    "make_report": "molsample.reporting.report",
    "chirality": "molsample.molecules.chirality",
    "chirality_fractions": "molsample.molecules.chirality",
    "reflect_wrong_handed": "molsample.molecules.chirality",
    "chiral_centers_for_system": "molsample.molecules.chirality",
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
