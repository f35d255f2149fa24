"""Physical constants and unit helpers.

Inside the library energies are in the unit of the system (kJ/mol for OpenMM systems,
reduced units ε for Lennard-Jones and the toys); ``kT`` is always in that same unit.
Files and reports carry the unit name explicitly.
"""

from __future__ import annotations

#: Molar gas constant in kJ/(mol K) (CODATA 2018, exact k_B·N_A).
KB_KJ_PER_MOL_K: float = 0.00831446261815324

#: Unit label used for dimensionless (reduced) energies and lengths.
REDUCED = "reduced"


def kT(temperature_kelvin: float) -> float:
    """Thermal energy k_B·T in kJ/mol for a temperature in kelvin."""
    if temperature_kelvin <= 0:
        from molsample.errors import ConfigError

        raise ConfigError(
            f"temperature must be positive kelvin, got {temperature_kelvin}; pass e.g. 300"
        )
    return KB_KJ_PER_MOL_K * temperature_kelvin


def beta(temperature_kelvin: float) -> float:
    """Inverse thermal energy 1/(k_B·T) in mol/kJ."""
    return 1.0 / kT(temperature_kelvin)
