"""Builders of small synthetic run files for the run-file, export and report tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from molsample.io.hdf5 import RunFile
from molsample.runtime.resources import cards_dir

DATA = Path(__file__).resolve().parent / "data"


def aldp_topology():
    """Alanine dipeptide (ACE-ALA-NME, 22 atoms) topology and positions (nm) from the shipped aldp.pdb."""
    import mdtraj

    t = mdtraj.load(str(cards_dir() / "aldp.pdb"))
    return t.topology, t.xyz[0].astype(np.float64)


def lj13_like(n: int, rng: np.random.Generator, noise: float = 0.05) -> np.ndarray:
    """``(n, 13, 3)`` configurations near the LJ-13 minimum, centred."""
    x0 = np.loadtxt(DATA / "lj13_minimum.txt")
    x = x0[None] + noise * rng.standard_normal((n, 13, 3))
    return x - x.mean(axis=1, keepdims=True)


def lj_energy(x: np.ndarray) -> np.ndarray:
    """Benchmark-convention LJ energies (the lj13 card's energy), ``(n,)``."""
    import torch

    from molsample.systems.cards import load_system

    return load_system("lj13").energy.double().energy(torch.as_tensor(x, dtype=torch.float64)).numpy()


def history(levels: int = 8) -> dict[str, np.ndarray]:
    a = np.linspace(1.0 / levels, 1.0, levels)
    ess = np.full(levels, np.nan)
    ess[::3] = np.linspace(0.4, 0.8, len(ess[::3]))
    return {
        "a": a, "h": np.full(levels, 1.0 / levels), "ess_incremental": np.linspace(0.95, 0.9, levels),
        "ess": ess, "loss": np.exp(-np.arange(levels) / 3.0) + 0.05,
        "mean_energy": np.linspace(-60.0, -70.0, levels), "mean_reward": np.linspace(0.0, 1.0, levels),
    }


def write_lj_run(path: Path, n: int = 400, seed: int = 0, with_reference: bool = True) -> dict:
    """A tilt-like LJ-13 run file: samples with logw/logq/energy, reference set, history, config, attrs."""
    rng = np.random.default_rng(seed)
    x = lj13_like(n, rng, 0.05)
    e = lj_energy(x)
    logq = rng.standard_normal(n)
    logw = -0.3 * (e - np.median(e)) + 0.3 * rng.standard_normal(n)
    out = {"x": x, "energy": e, "logq": logq, "logw": logw}
    with RunFile(path, "w") as rf:
        rf.write_samples(x, logw=logw, logq=logq, energy=e, energy_unit="reduced", length_unit="reduced", kT=1.0)
        if with_reference:
            xr = lj13_like(n, rng, 0.035)
            out["x_ref"], out["e_ref"] = xr, lj_energy(xr)
            rf.write_samples(xr, energy=out["e_ref"], energy_unit="reduced", length_unit="reduced", kT=1.0,
                             name="reference")
        rf.write_history(history())
        rf.write_config({"system": "lj13", "seed": seed, "tilt": {"levels": 8, "method": "itm"}})
        rf.set_attrs(system="lj13", kind="tilt", method="itm", seed=seed, wall_time_s=12.5)
    return out


def write_aldp_run(path: Path, n: int = 200, seed: int = 0, noise: float = 0.01) -> dict:
    """A run file of perturbed alanine-dipeptide structures (nm, kJ/mol) with weights."""
    rng = np.random.default_rng(seed)
    top, x0 = aldp_topology()
    x = x0[None] + noise * rng.standard_normal((n, 22, 3))
    e = ((x - x0[None]) ** 2).sum(axis=(1, 2)) * 1e3 - 50.0  # a harmonic stand-in energy in kJ/mol
    logw = -0.1 * (e - e.mean())
    with RunFile(path, "w") as rf:
        rf.write_samples(x, logw=logw, energy=e, energy_unit="kJ/mol", length_unit="nm", topology=top, kT=2.494)
        rf.set_attrs(system="aldp", kind="tilt", method="itm", seed=seed)
    return {"x": x, "energy": e, "logw": logw, "topology": top}


def write_toy_run(path: Path, n: int = 1000, seed: int = 0) -> dict:
    """A 2-D ring-like run: (n, 1, 2) samples with weights and a reference set."""
    rng = np.random.default_rng(seed)
    ang = rng.integers(0, 8, n) * (2 * np.pi / 8)
    x = np.stack([4 * np.cos(ang), 4 * np.sin(ang)], axis=1)[:, None, :] + 0.3 * rng.standard_normal((n, 1, 2))
    xr = np.stack([4 * np.cos(ang), 4 * np.sin(ang)], axis=1)[:, None, :] + 0.15 * rng.standard_normal((n, 1, 2))
    e = 0.5 * (np.linalg.norm(x[:, 0], axis=1) - 4.0) ** 2 / 0.15**2
    logw = -e + 0.5 * (np.linalg.norm(x[:, 0], axis=1) - 4.0) ** 2 / 0.3**2
    with RunFile(path, "w") as rf:
        rf.write_samples(x, logw=logw, energy=e, energy_unit="reduced", length_unit="reduced", kT=1.0)
        rf.write_samples(xr, energy_unit="reduced", length_unit="reduced", kT=1.0, name="reference")
        rf.write_history(history(5))
        rf.set_attrs(system="ring2d", kind="tilt", method="itm", seed=seed)
    return {"x": x, "x_ref": xr, "logw": logw}


def molsample(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m molsample --threads 1 ARGS`` in ``cwd``, output captured (10-minute limit)."""
    return subprocess.run([sys.executable, "-m", "molsample", "--threads", "1", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def interrupt_after(monkeypatch, owner, name: str, calls: int, *, right_after: bool = False):
    """Replace ``owner.name`` so that its first ``calls`` calls run and the next raises
    KeyboardInterrupt (a Ctrl-C at that point); with ``right_after`` the Ctrl-C comes as soon as the
    ``calls``-th call has returned (e.g. just after a checkpoint is written). Returns the original function."""
    real, seen = getattr(owner, name), {"n": 0}

    def stop(*args, **kwargs):
        seen["n"] += 1
        if seen["n"] > calls:
            raise KeyboardInterrupt
        out = real(*args, **kwargs)
        if right_after and seen["n"] == calls:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(owner, name, stop)
    return real
