"""The OpenMM bridge against plain OpenMM, finite differences and autograd; the ALDP card."""

from __future__ import annotations

import copy
import pickle
import warnings
from pathlib import Path

import numpy as np
import openmm
import pytest
import torch
from openmm import app, unit

from molsample.energies.openmm_bridge import OpenMMEnergy, available_platforms
from molsample.energies.openmm_card import energy_from_card
from molsample.errors import ConfigError, EnergyError, MissingFileError, PlatformError
from molsample.runtime.resources import cards_dir, potentials_dir
from molsample.systems.cards import load_system
from molsample.testing import assert_forces_match_fd

ROOT = Path(__file__).resolve().parents[2]
PDB = cards_dir() / "aldp.pdb"
XML = potentials_dir() / "aldp_vacuum_amber99sbildn.xml"


@pytest.fixture(scope="module")
def aldp_system() -> openmm.System:
    return openmm.XmlSerializer.deserialize(XML.read_text())


@pytest.fixture(scope="module")
def x_ref() -> np.ndarray:
    return np.asarray(app.PDBFile(str(PDB)).getPositions(asNumpy=True).value_in_unit(unit.nanometer))


@pytest.fixture(scope="module")
def batch(x_ref: np.ndarray) -> torch.Tensor:
    """Six perturbed ALDP configurations, float64, seeded."""
    g = torch.Generator().manual_seed(1)
    x = torch.as_tensor(x_ref)[None] + 0.01 * torch.randn(6, 22, 3, generator=g, dtype=torch.float64)
    return x


def plain_openmm(system: openmm.System, x: np.ndarray, platform: str, props: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Energies (kJ/mol) and forces (kJ/mol/nm) from a plain OpenMM Context, public API."""
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform), props or {})
    es, fs = [], []
    for xi in x:
        ctx.setPositions(xi * unit.nanometer)
        st = ctx.getState(getEnergy=True, getForces=True)
        es.append(st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        fs.append(st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    return np.array(es), np.array(fs)


# Reference is double precision and deterministic: equal to round-off. CPU computes in mixed
# precision and its last float32 digits depend on the context's history: single-precision tolerance.
@pytest.mark.parametrize(
    "platform, props, e_tol, f_tol",
    [("Reference", {}, 1e-9, 1e-9), ("CPU", {"DeterministicForces": "true"}, 1e-4, 1e-2)],
)
def test_matches_plain_openmm(aldp_system, batch, platform, props, e_tol, f_tol):
    bridge = OpenMMEnergy(aldp_system, platform=platform, platform_properties=props)
    e_ref, f_ref = plain_openmm(aldp_system, batch.numpy(), platform, props)
    e, f = bridge.energy_and_force(batch)
    assert e.shape == (6,) and f.shape == (6, 22, 3) and e.dtype == torch.float64
    np.testing.assert_allclose(e.numpy(), e_ref, rtol=1e-12, atol=e_tol)
    np.testing.assert_allclose(f.numpy(), f_ref, rtol=1e-12, atol=f_tol)
    np.testing.assert_allclose(bridge.energy(batch).numpy(), e_ref, rtol=1e-12, atol=e_tol)
    # The configurations differ: a bridge that returned one value for all would fail here.
    assert np.ptp(e_ref) > 1.0


def test_batched_equals_one_by_one_and_workers(aldp_system, batch):
    bridge = OpenMMEnergy(aldp_system, platform="Reference")
    e, f = bridge.energy_and_force(batch)
    for i in range(len(batch)):
        ei, fi = bridge.energy_and_force(batch[i])
        assert ei.shape == (1,)
        assert ei.item() == e[i].item()
        assert torch.equal(fi[0], f[i])
    pooled = OpenMMEnergy(aldp_system, platform="Reference", n_workers=2)
    ep, fp = pooled.energy_and_force(batch)
    assert torch.equal(ep, e) and torch.equal(fp, f)


def test_forces_match_finite_differences(aldp_system, batch):
    bridge = OpenMMEnergy(aldp_system, platform="Reference")
    assert_forces_match_fd(bridge, batch[:3], eps=1e-5, rtol=1e-5, atol=1e-4, n_coords=10)


def test_autograd_backward_is_minus_force(aldp_system, batch):
    bridge = OpenMMEnergy(aldp_system, platform="Reference")
    x = batch.clone().requires_grad_(True)
    w = torch.linspace(0.5, 2.0, len(batch), dtype=torch.float64)
    (bridge.energy(x) * w).sum().backward()
    f = bridge.force(batch)
    torch.testing.assert_close(x.grad, -f * w[:, None, None], rtol=1e-12, atol=1e-12)
    # The base-class autograd path gives the same forces.
    torch.testing.assert_close(super(OpenMMEnergy, bridge).force(batch), f, rtol=1e-12, atol=1e-12)


def test_float32_inputs(aldp_system, batch):
    bridge = OpenMMEnergy(aldp_system, platform="Reference")
    x32 = batch.float().requires_grad_(True)
    e32 = bridge.energy(x32)
    e32.sum().backward()
    assert e32.dtype == torch.float32 and x32.grad.dtype == torch.float32
    e64 = bridge.energy(x32.detach().double())  # same positions, evaluated in float64
    torch.testing.assert_close(e32.double(), e64, rtol=1e-6, atol=1e-4)


def test_nonfinite_sample_is_flagged_not_fatal(aldp_system, batch):
    for platform in ("Reference", "CPU"):  # CPU raises on NaN coordinates, Reference returns NaN
        bridge = OpenMMEnergy(aldp_system, platform=platform)
        x = batch.clone()
        x[2, 5, 1] = float("nan")
        x[4, 0, 0] = float("inf")
        with pytest.warns(RuntimeWarning, match="non-finite"):
            e, f = bridge.energy_and_force(x)
        assert torch.isposinf(e[2]) and torch.isposinf(e[4])
        assert torch.all(f[2] == 0) and torch.all(f[4] == 0)
        good = [0, 1, 3, 5]
        e_ref, f_ref = plain_openmm(aldp_system, batch.numpy()[good], platform)
        np.testing.assert_allclose(e[good].numpy(), e_ref, rtol=1e-12, atol=1e-4)
        np.testing.assert_allclose(f[good].numpy(), f_ref, rtol=1e-12, atol=1e-2)
        assert bridge.n_nonfinite == 2
        assert bridge.last_nonfinite.tolist() == [False, False, True, False, True, False]
        # The context still works afterwards.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            np.testing.assert_allclose(bridge.energy(batch[good]).numpy(), e_ref, rtol=1e-12, atol=1e-4)


def test_float32_overflow_is_flagged(aldp_system, batch):
    """Atoms 1e-4 nm apart: finite in float64 (~1e37 kJ/mol, forces ~1e42), overflow in float32."""
    bridge = OpenMMEnergy(aldp_system, platform="Reference")
    x = batch[:2].clone()
    x[1, 21] = x[1, 0] + 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        e64 = bridge.energy(x)
    assert torch.isfinite(e64).all() and e64[1] > 1e30
    x32 = x.float().requires_grad_(True)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        e32 = bridge.energy(x32)
    e32.sum().backward()
    assert torch.isfinite(e32[0]) and torch.isposinf(e32[1])
    assert torch.isfinite(x32.grad).all() and torch.all(x32.grad[1] == 0)


def test_nonfinite_raise_policy(aldp_system, batch):
    bridge = OpenMMEnergy(aldp_system, platform="Reference", nonfinite="raise")
    x = batch.clone()
    x[1, 3, 2] = float("nan")
    with pytest.raises(EnergyError, match="sample 1"):
        bridge.energy(x)


def test_counts_evaluations(aldp_system, batch):
    bridge = OpenMMEnergy(aldp_system, platform="Reference")
    bridge.energy(batch)
    bridge.force(batch[:2])
    assert bridge.n_evaluations == 8
    bridge.reset_counters()
    assert bridge.n_evaluations == 0


def test_unknown_platform_lists_available(aldp_system):
    with pytest.raises(PlatformError) as info:
        OpenMMEnergy(aldp_system, platform="NoSuchPlatform")
    for name in available_platforms():
        assert name in str(info.value)


def test_platform_name_case_insensitive_and_auto(aldp_system, x_ref):
    assert OpenMMEnergy(aldp_system, platform="reference").platform == "Reference"
    auto = OpenMMEnergy(aldp_system, positions=x_ref, platform="auto")
    assert auto.platform in available_platforms()


def test_pickle_and_deepcopy_round_trip(aldp_system, batch):
    bridge = OpenMMEnergy(aldp_system, platform="Reference")
    e = bridge.energy(batch)
    for other in (pickle.loads(pickle.dumps(bridge)), copy.deepcopy(bridge)):
        assert torch.equal(other.energy(batch), e)


def test_topology_must_match(aldp_system):
    import mdtraj

    from molsample.molecules.topology import particle_topology

    with pytest.raises(ConfigError, match="22 particles"):
        OpenMMEnergy(aldp_system, topology=particle_topology(5))
    with pytest.raises(ConfigError):
        OpenMMEnergy(aldp_system, positions=np.zeros((5, 3)))
    assert isinstance(OpenMMEnergy(aldp_system, topology=app.PDBFile(str(PDB)).topology).topology, mdtraj.Topology)


# --------------------------------------------------------------------------- cards and the ALDP system


def test_load_aldp_system(x_ref):
    s = load_system("aldp")
    assert s.topology.n_atoms == 22 and s.n_particles == 22 and s.dim == 3
    assert s.energy_unit == "kJ/mol" and s.length_unit == "nm" and s.remove_com
    assert s.kT == pytest.approx(0.00831446261815324 * 300)
    assert [r.name for r in s.topology.residues] == ["ACE", "ALA", "NME"]
    np.testing.assert_allclose(s.energy.positions, x_ref)
    e = s.energy.energy(torch.as_tensor(x_ref)[None])
    assert -100.0 < e.item() < -80.0  # the minimum written by potentials/build_aldp.py: -90.94 kJ/mol


def test_aldp_structure_is_l_alanine_in_c7eq(x_ref):
    import mdtraj

    s = load_system("aldp")
    n, ca, c, cb = s.card["chiral_centers"][0]["indices"]
    names = [a.name for a in s.topology.atoms]
    assert [names[i] for i in (n, ca, c, cb)] == ["N", "CA", "C", "CB"]
    volume = np.dot(x_ref[n] - x_ref[ca], np.cross(x_ref[c] - x_ref[ca], x_ref[cb] - x_ref[ca]))
    assert volume > 0  # L (the sign of every residue in natural proteins)
    traj = mdtraj.Trajectory(x_ref[None], s.topology)
    phi, psi = np.degrees(mdtraj.compute_dihedrals(traj, [s.card["dihedrals"]["phi"], s.card["dihedrals"]["psi"]])[0])
    assert -110 < phi < -50 and 30 < psi < 100  # C7eq basin
    _, phi_md = mdtraj.compute_phi(traj)
    np.testing.assert_allclose(np.degrees(phi_md[0, 0]), phi, atol=1e-4)


def test_forcefield_card_reproduces_system_xml(tmp_path, x_ref):
    """A card with forcefield = [...] parametrizes the PDB to the same energies as the shipped XML."""
    card = tmp_path / "aldp_ff.toml"
    table = {"type": "openmm", "structure": str(PDB), "forcefield": ["amber99sbildn.xml"], "platform": "Reference"}
    from_ff = energy_from_card(table, card)
    from_xml = load_system("aldp").energy
    g = torch.Generator().manual_seed(3)
    x = torch.as_tensor(x_ref)[None] + 0.02 * torch.randn(4, 22, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(from_ff.energy(x), from_xml.energy(x), rtol=1e-10, atol=1e-8)
    assert from_ff.system.getNumConstraints() == 0


def test_card_paths_relative_to_card_folder_and_root(tmp_path):
    (tmp_path / "systems").mkdir()
    (tmp_path / "potentials").mkdir()
    (tmp_path / "systems" / "mol.pdb").write_text(PDB.read_text())
    (tmp_path / "potentials" / "mol.xml").write_text(XML.read_text())
    card = tmp_path / "systems" / "mol.toml"
    card.write_text(
        'temperature_K = 300\n[energy]\ntype = "openmm"\nstructure = "mol.pdb"\n'
        'system_xml = "potentials/mol.xml"\nplatform = "Reference"\n'
    )
    s = load_system(card)
    assert s.topology.n_atoms == 22 and s.energy.platform == "Reference"


def test_missing_structure_file(tmp_path):
    card = tmp_path / "card.toml"
    with pytest.raises(MissingFileError, match="structure") as info:
        energy_from_card({"type": "openmm", "structure": "nowhere.pdb", "system_xml": str(XML)}, card)
    assert "nowhere.pdb" in str(info.value) and "fix the path" in str(info.value)


@pytest.mark.parametrize(
    "table, match",
    [
        ({"type": "openmm", "structure": str(PDB), "system_xml": str(XML), "colour": "red"}, "unknown"),
        ({"type": "openmm", "structure": str(PDB)}, "exactly one"),
        ({"type": "openmm", "forcefield": ["amber99sbildn.xml"]}, "structure"),
        ({"type": "openmm", "structure": str(PDB), "forcefield": ["amber99sbildn.xml"], "constraints": "some"}, "constraints"),
        ({"type": "openmm", "structure": str(PDB), "forcefield": ["amber99sbildn.xml"], "nonbonded_method": "X"}, "nonbonded_method"),
    ],
)
def test_bad_card_keys(tmp_path, table, match):
    with pytest.raises(ConfigError, match=match):
        energy_from_card(table, tmp_path / "card.toml")


def test_missing_forcefield_file(tmp_path):
    with pytest.raises(MissingFileError, match="no_such_ff.xml"):
        energy_from_card({"type": "openmm", "structure": str(PDB), "forcefield": ["no_such_ff.xml"]}, tmp_path / "c.toml")


def test_cli_energy_prints_aldp_energy():
    from click.testing import CliRunner

    from molsample.cli import cli

    result = CliRunner().invoke(cli, ["energy", "--system", "aldp"])
    assert result.exit_code == 0, result.output
    value, unit_name = result.output.split("\t")[1].split()
    assert unit_name == "kJ/mol" and -100.0 < float(value) < -80.0


def test_build_script_regenerates_the_shipped_files():
    """potentials/build_aldp.py rebuilds the same System XML and (to PDB precision) the same structure."""
    import importlib.util
    import io

    spec = importlib.util.spec_from_file_location("build_aldp", ROOT / "potentials" / "build_aldp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pdb_text, xml_text, summary = module.build()
    assert xml_text == XML.read_text()
    fresh = app.PDBFile(io.StringIO(pdb_text))
    shipped = app.PDBFile(str(PDB))
    assert [a.name for a in fresh.topology.atoms()] == [a.name for a in shipped.topology.atoms()]
    np.testing.assert_allclose(
        fresh.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
        shipped.getPositions(asNumpy=True).value_in_unit(unit.nanometer), atol=2e-4,
    )
    assert summary["chirality"] > 0 and summary["energy_min"] < summary["energy_start"]
