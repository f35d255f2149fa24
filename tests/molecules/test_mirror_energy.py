"""Mirrored samples under force fields that are not reflection-invariant (CMAP on ALDP's φ/ψ)."""

from __future__ import annotations

import math

import numpy as np
import openmm
import pytest
import torch

from molsample.energies.openmm_bridge import OpenMMEnergy
from molsample.errors import ShapeError
from molsample.flows.reflection import reflect_and_reweight
from molsample.molecules.chirality import chiral_centers_for_system, chirality
from molsample.molecules.mirror_energy import energy_is_reflection_invariant, reflection_variant_terms

PHI, PSI = (4, 6, 8, 14), (6, 8, 14, 16)


@pytest.fixture(scope="module")
def aldp():
    from molsample.systems.cards import load_system

    return load_system("aldp")


def cmap_energy(aldp) -> OpenMMEnergy:
    """ALDP's amber System plus one CMAP term on (φ, ψ): a smooth map that is not even in (φ, ψ)."""
    system = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(aldp.energy.system))
    size = 24
    grid = 2 * math.pi * np.arange(size) / size - math.pi
    phi, psi = np.meshgrid(grid, grid, indexing="ij")
    values = 4.0 * np.sin(phi) + 2.0 * np.sin(psi + 0.5) + 1.0 * np.sin(phi + psi)  # kJ/mol
    cmap = openmm.CMAPTorsionForce()
    cmap.addMap(size, values.T.reshape(-1).tolist())   # OpenMM's order: phi index fastest
    cmap.addTorsion(0, *PHI, *PSI)
    system.addForce(cmap)
    return OpenMMEnergy(system, topology=aldp.topology, positions=aldp.energy.positions, platform="Reference")


def mirror(x: torch.Tensor) -> torch.Tensor:
    return 2 * x.mean(dim=1, keepdim=True) - x


def test_detection(aldp) -> None:
    assert energy_is_reflection_invariant(aldp)                       # amber99sb-ildn: phases 0/180 only
    assert energy_is_reflection_invariant(aldp.energy.system)
    energy = cmap_energy(aldp)
    terms = reflection_variant_terms(energy)
    assert not energy_is_reflection_invariant(energy) and terms == ["CMAPTorsionForce: 1 CMAP torsion(s)"]
    s = openmm.System()
    for _ in range(4):
        s.addParticle(1.0)
    t = openmm.PeriodicTorsionForce()
    t.addTorsion(0, 1, 2, 3, 2, 0.3, 1.0)
    t.addTorsion(0, 1, 2, 3, 3, math.pi, 1.0)
    s.addForce(t)
    assert reflection_variant_terms(s) == ["PeriodicTorsionForce: 1 torsion(s) with phases other than 0/180 degrees"]
    s.addForce(openmm.CustomTorsionForce("k*theta"))
    assert len(reflection_variant_terms(s)) == 2
    from molsample.energies.lennard_jones import LennardJones

    assert energy_is_reflection_invariant(LennardJones(13))


def test_cmap_energy_changes_under_reflection(aldp) -> None:
    energy = cmap_energy(aldp)
    x = torch.as_tensor(aldp.energy.positions, dtype=torch.float64)[None]
    e, em = float(energy.energy(x)), float(energy.energy(mirror(x)))
    assert abs(e - em) > 1.0                                   # the CMAP term is odd in (φ, ψ)
    assert (e, em) == (pytest.approx(-89.411, abs=1e-3), pytest.approx(-93.584, abs=1e-3))   # docs/chirality.md
    e_amber = float(aldp.energy.energy(x))
    assert float(aldp.energy.energy(mirror(x))) == pytest.approx(e_amber, abs=1e-6)


def _batch(aldp, n: int = 12) -> torch.Tensor:
    """Perturbed copies of the structure, every other one mirrored (D)."""
    g = torch.Generator().manual_seed(3)
    x = torch.as_tensor(aldp.energy.positions, dtype=torch.float64)[None].repeat(n, 1, 1)
    x = x + 0.005 * torch.randn(x.shape, generator=g, dtype=x.dtype)
    x[1::2] = mirror(x[1::2])
    return x


def test_reflect_and_reweight_recomputes_mirrored_energies(aldp) -> None:
    energy, kT = cmap_energy(aldp), aldp.kT
    centers = chiral_centers_for_system(aldp)
    x = _batch(aldp)
    logq = torch.linspace(-3.0, 3.0, x.shape[0], dtype=torch.float64)
    e0 = energy.energy(x)
    out = reflect_and_reweight(x, logq, energy.energy, kT, centers, energy=e0)
    assert out.n_reflected == 6 and out.mirrored.tolist() == [False, True] * 6
    assert (chirality(out.x, centers) == 1).all()
    # recomputed: equal to E of the mirrored positions, and different from the stored energies
    assert torch.allclose(out.energy, energy.energy(out.x), atol=1e-8)
    assert torch.allclose(out.energy[::2], e0[::2], atol=0)
    assert (out.energy[1::2] - e0[1::2]).abs().min() > 0.1
    assert torch.allclose(out.logw, -out.energy / kT - logq, atol=1e-12)
    assert not torch.allclose(out.logw[1::2], (-e0 / kT - logq)[1::2], atol=1e-2)
    # without the stored energies every sample is evaluated, with the same result
    again = reflect_and_reweight(x, logq, energy.energy, kT, centers)
    assert torch.allclose(again.energy, out.energy, atol=1e-8)


def test_reflect_and_reweight_keeps_invariant_energies(aldp) -> None:
    centers = chiral_centers_for_system(aldp)
    x = _batch(aldp)
    logq = torch.zeros(x.shape[0], dtype=torch.float64)
    e0 = aldp.energy.energy(x)
    out = reflect_and_reweight(x, logq, aldp.energy.energy, aldp.kT, centers, energy=e0)
    assert out.n_reflected == 6
    assert torch.allclose(out.energy, e0, atol=1e-6)
    assert torch.allclose(out.logw, -e0 / aldp.kT, atol=1e-6)


def test_shapes_are_checked(aldp) -> None:
    centers = chiral_centers_for_system(aldp)
    x = _batch(aldp, 4)
    with pytest.raises(ShapeError):
        reflect_and_reweight(x, torch.zeros(3), aldp.energy.energy, aldp.kT, centers)
    with pytest.raises(ShapeError):
        reflect_and_reweight(x, torch.zeros(4), aldp.energy.energy, aldp.kT, centers, energy=torch.zeros(2))


@pytest.mark.parametrize("with_cmap", [False, True])
def test_final_stage_fix_recomputes_weights_only_when_the_force_field_needs_it(aldp, with_cmap) -> None:
    """The run's chirality fix (an E(3) net's wrong-handed samples are mirrored): stored energies and
    weights stay for amber, and are those of the mirrored positions under a CMAP force field."""
    import dataclasses

    from molsample.flows.sampler import WeightedSamples
    from molsample.flows.weights import summarize
    from molsample.stages.final import fix_chirality

    system = dataclasses.replace(aldp, energy=cmap_energy(aldp)) if with_cmap else aldp
    x = _batch(aldp)
    logq = torch.linspace(-3.0, 3.0, x.shape[0], dtype=torch.float64)
    e = system.energy.energy(x)
    logw = -e / system.kT - logq
    ws = WeightedSamples(x=x.clone(), logq=logq, energy=e.clone(), logw=logw.clone(), summary=summarize(logw))
    e3_net = torch.nn.Linear(1, 1)
    e3_net.reflection_invariant = True  # a stand-in E(3) net: the declared capability decides (nets.capabilities)
    given = ws
    ws, attrs = fix_chirality(ws, system, e3_net, reflect=True, echo=lambda _: None)
    assert torch.equal(given.energy, e)  # the input is never edited in place
    assert attrs["chirality_reflected"] == 6
    assert torch.allclose(ws.energy, system.energy.energy(ws.x), atol=1e-6)  # energies match the stored positions
    assert torch.allclose(ws.logw, -ws.energy / system.kT - logq, atol=1e-9)
    assert ws.summary.ess == pytest.approx(summarize(ws.logw).ess)
    changed = (ws.energy - e).abs().max()
    assert (changed > 0.1) if with_cmap else (changed < 1e-6)
