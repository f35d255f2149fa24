"""`molsample tilt --coordinates internal` end to end on alanine dipeptide (smoke budgets), then
`sample` and `export` on its run; internal coordinates refused for clusters and bad Z-matrices."""

from __future__ import annotations

import mdtraj
import numpy as np
import pytest
import torch

from molsample.flows.flow import load_flow
from molsample.io.hdf5 import RunFile
from molsample.systems.cards import load_system
from _run_helpers import molsample


@pytest.fixture(scope="module")
def internal_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    proc = molsample("tilt", "--system", "aldp", "--coordinates", "internal", "--preset", "smoke", "--out",
                     "runs/int", "--quiet", cwd=work)
    assert proc.returncode == 0, proc.stderr
    return work, work / "runs" / "int", proc.stdout


def test_run_file_holds_positions_internal_coordinates_and_exact_weights(internal_run):
    work, run, out = internal_run
    assert "internal coordinates: 60" in out
    aldp = load_system("aldp")
    with RunFile(run / "samples.h5") as rf:
        s = rf.read_samples()
        z = np.asarray(rf._node("internal_coordinates")[:])
    x = torch.as_tensor(s["x"], dtype=torch.float64)
    assert z.shape == (len(x), 60)
    flow, meta = load_flow(run / "model.pt", aldp)
    assert flow.transform.name == "internal" and meta["mode"] == "temperature"
    # the stored positions are T(z) (float32 in the file) and the weights −E/kT + log|det J| − log q(z)
    x_again, logdet = flow.transform.forward(torch.as_tensor(z).unsqueeze(-1))
    assert torch.allclose(x_again, x, atol=2e-6)
    e = aldp.energy.energy(x_again)
    assert torch.allclose(torch.as_tensor(s["energy"]), e, rtol=1e-5, atol=1e-3)
    logq_z = torch.as_tensor(s["logq"]) + logdet  # the file's logq is the density of x
    ok = torch.isfinite(torch.as_tensor(s["logw"]))
    # + log 2: the target is folded onto L-alanine (docs/chirality.md), every sample here is L
    expected = -e / aldp.kT + logdet - logq_z + np.log(2.0)
    assert torch.allclose(torch.as_tensor(s["logw"])[ok], expected[ok], atol=1e-6)
    traj = mdtraj.load(str(run / "samples.h5"))  # mdtraj opens it as a molecule
    assert traj.n_atoms == 22 and traj.n_frames == len(x)


def test_samples_are_l_alanine(internal_run):
    from molsample.molecules.chirality import chiral_centers_for_system, chirality_fractions

    _, run, out = internal_run
    with RunFile(run / "samples.h5") as rf:
        x = torch.as_tensor(rf.read_samples()["x"])
    frac = chirality_fractions(x, chiral_centers_for_system(load_system("aldp")))
    assert frac["reference"] == 1.0


def test_sample_appends_with_the_stored_transform(internal_run):
    work, run, _ = internal_run
    with RunFile(run / "samples.h5") as rf:
        n0 = len(rf.read_samples()["x"])
    proc = molsample("sample", str(run), "--n", "40", "--quiet", cwd=work)
    assert proc.returncode == 0, proc.stderr
    with RunFile(run / "samples.h5") as rf:
        assert len(rf.read_samples()["x"]) == n0 + 40
        assert rf._node("internal_coordinates").shape == (n0 + 40, 60)
    proc = molsample("export", str(run), "--format", "pdb", "--out", "int.pdb", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert mdtraj.load(str(work / "int.pdb")).n_atoms == 22


@pytest.mark.parametrize("args, needle", [
    (("--system", "lj13", "--coordinates", "internal"), "internal coordinates need a molecule with bonds"),
    (("--system", "aldp", "--coordinates", "internal", "--net", "egnn"), "cannot be combined with net.name"),
])
def test_refused_by_name_and_nothing_written(tmp_path, args, needle):
    proc = molsample("tilt", *args, "--preset", "smoke", "--out", "runs/bad", cwd=tmp_path)
    assert proc.returncode == 2
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs" / "bad").exists()
