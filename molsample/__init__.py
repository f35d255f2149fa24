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
    # errors
    "MolsampleError": "molsample.errors",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'molsample' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
