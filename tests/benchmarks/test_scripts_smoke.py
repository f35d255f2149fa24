"""Every script in benchmarks/ runs end to end at a toy size: exit code 0 and a line it must print.

Each script runs as a subprocess (one torch thread) in a scratch folder shared by this module, so
that nothing is written into the checkout and the reference caches (``runs/cache/reference``) made
by one script serve the next. Inputs that a script reads (models, base data, reference files, run
folders) are made by the fixtures below: small synthetic files, or one toy tilt run for the scripts
that rerun a tilt job. Scripts that cost 10–35 CPU-seconds at any size are marked slow: the default
MCMC burn-in (lj13_cost_vs_mcmc, lj_pt_reference, reference_lj13), 2,000 frames of 300 K MD
(aldp_internal), several tilt jobs or child processes (distributed_speedup, lj_table, thread_default).
A new script needs an entry in ``SMOKE``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from _run_helpers import aldp_topology, history, lj13_like, lj_energy
from molsample.io.hdf5 import RunFile

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@dataclasses.dataclass(frozen=True)
class Smoke:
    """Toy-size arguments of a script (``{name}`` is the path a fixture of that name makes) and a
    text its output must contain."""

    args: tuple[str, ...]
    expect: str
    slow: bool = False


SMOKE: dict[str, list[Smoke]] = {
    "aldp_internal.py": [Smoke(("--data-frames", "20", "--steps", "3", "--batch-size", "8", "--hidden", "16",
                                "--layers", "1", "--samples", "8", "--ode-steps", "2"), '"L_fraction"', slow=True)],
    "aldp_nets.py": [Smoke(("{aldp_run}",), "| run | net | params |")],
    "aldp_pretrain.py": [Smoke(("--data-frames", "20", "--thermal-frames", "20", "--steps", "2", "--batch-size", "8",
                                "--samples", "4"), "bond RMSD")],
    "aldp_remd.py": [Smoke(("--frames", "2", "--replicas", "2"), '"swap_rates"')],
    "aldp_smc_table.py": [Smoke(("--model", "{aldp_internal_model}", "--smoke", "--frames", "20",
                                 "--train-frames", "10", "--train-cpu-s", "0", "--samples", "8", "--groups", "2",
                                 "--steps", "1", "--final-steps", "2", "--kernel", "mala,hmc", "--leapfrog-steps", "2",
                                 "--remd-prefix", "5"), "| flow + SMC (HMC)")],
    "aldp_table.py": [Smoke(("{aldp_model}", "--samples", "4", "--batch", "4", "--ref-frames", "2"),
                            '"bond RMSD / thermal"')],
    "distributed_speedup.py": [Smoke(("--smoke", "--steps", "2", "--out", "distributed"), "ESS: 1 proc", slow=True)],
    "e3nn_vs_egnn.py": [Smoke(("--pairs", "small", "--batch", "2", "--lik-batch", "1", "--steps", "1",
                               "--repeats", "1", "--lik-repeats", "1"), "train step s")],
    "energy_throughput.py": [Smoke(("--repeats", "1", "--min-time", "0.001", "--batches", "1", "--openmm-batch", "2",
                                    "--platforms", "Reference", "--workers", "1"), "ALDP through OpenMM")],
    "flow_throughput.py": [Smoke(("--quick", "--hidden", "16", "--layers", "1"), "lj55 likelihood pass")],
    "lj13_cost_vs_mcmc.py": [Smoke(("--run", "{lj13_tilt_run}", "--n", "1024"), "| sampler |", slow=True)],
    "lj13_coupling.py": [
        Smoke(("train", "--coupling", "aligned", "--steps", "2", "--batch", "8", "--hidden", "8", "--layers", "1",
               "--data", "{lj13_data}", "--out", "coupling"), '"cpu_s_per_step"'),
        Smoke(("cost", "--batch", "4", "--repeats", "1", "--data", "{lj13_data}"), "cpu/batch"),
    ],
    "lj13_coupling_figure.py": [Smoke(("--model", "demo={demo_model}", "--data", "{lj13_data}", "--n", "8",
                                       "--steps", "2", "--out", "coupling.png"), "wrote coupling.png")],
    "lj13_flow_quality.py": [Smoke(("--model", "demo={demo_model}", "--ref", "{lj13_reference}", "--n", "8",
                                    "--steps", "2", "--gap", "2", "--gap-steps", "2"), "log q gap")],
    "lj13_smc.py": [Smoke(("--n-samples", "8", "--steps", "1", "--final-steps", "1", "--groups", "2", "--seeds", "1",
                           "--ref", "{lj13_reference}", "--cache", "smc"), '"unique_ancestors"')],
    "lj13_smc_table.py": [Smoke(("--pretrained", "{demo_model}", "--n-samples", "8", "--steps", "1", "--final-steps",
                                 "1", "--groups", "2", "--seeds", "1", "--mala-chains", "4",
                                 "--ref", "{lj13_reference}", "--cache", "smc"), "| tilted + SMC |")],
    "lj55_cost.py": [Smoke(("--systems", "lj13", "--batch", "8", "--repeats", "1", "--hidden", "8", "--layers", "1"),
                           "fm_step_cpu_s")],
    "lj_pt_reference.py": [Smoke(("--n", "32"), '"tau_int"', slow=True)],
    "lj_structure.py": [Smoke(("{lj13_run}",), "effective of 1,024")],
    "lj_table.py": [Smoke(("--source", "{lj13_tilt_run}", "--out", "table", "--methods", "itm", "--h", "adaptive",
                           "--n-samples", "16", "--final-ode-steps", "2", "--n-resampled", "8", "--n-boot", "4"),
                          "| ITM | adaptive", slow=True)],
    "log_z_solvers.py": [Smoke(("--solvers", "midpoint:2", "--seeds", "0", "--n", "4", "--batch-size", "4"),
                               '"se_batch"')],
    "reference_lj13.py": [Smoke(("--quick", "--json", "reference_lj13.json"), "PT / MALA", slow=True)],
    "ring2d_table.py": [Smoke(("--pretrain-steps", "5", "--betas", "5", "--methods", "itm", "--levels", "1",
                               "--tilt-seeds", "1"), "| method (beta 5) |")],
    "smc_kernels.py": [
        Smoke(("--system", "lj13", "--leapfrog", "2", "--seeds", "1", "--n-samples", "8", "--steps", "2",
               "--final-steps", "2", "--groups", "2", "--ref", "{lj13_reference}", "--cache", "smc"),
              '"kernel": "hmc"'),
        Smoke(("--system", "aldp", "--n", "4", "--evals", "4", "--report-at", "0,4", "--leapfrog", "2"),
              '"md_frames"'),
    ],
    "solver_gap.py": [Smoke(("--solvers", "euler:2", "midpoint:2", "--n", "2", "--fine-steps", "2"),
                            '"discrete_gap"')],
    "thread_default.py": [Smoke(("--steps", "1", "--no-competitor"), '"train_wall_s_per_step"', slow=True)],
}

#: the smallest tilt job of LJ-13 that has every file of a finished run (the source of lj_table.py)
TOY_TILT = """
temperature_factor = 1.25
[net]
hidden = 8
n_layers = 1
[data]
n = 64
burn_in = 20
steps = 20
[reference]
n = 64
burn_in = 20
steps = 20
[pretrain]
steps = 5
batch_size = 16
[tilt]
n_endpoints = 16
endpoints_per_step = 8
draws_per_endpoint = 2
steps_per_level = 1
h = 0.5
max_levels = 2
ode_method = "euler"
ode_steps = 2
[final]
n_samples = 32
ode_method = "euler"
ode_steps = 2
batch_size = 32
"""


def _cases() -> list:
    return [pytest.param(script, smoke, id=f"{script[:-3]}-{i}" if len(entries) > 1 else script[:-3],
                         marks=[pytest.mark.slow] if smoke.slow else [])
            for script, entries in SMOKE.items() for i, smoke in enumerate(entries)]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The scratch folder every script runs in (and its caches live in)."""
    return tmp_path_factory.mktemp("benchmarks")


@pytest.fixture(scope="module")
def demo_model() -> Path:
    from molsample.runtime.resources import package_file

    return package_file("package:lj13-demo.pt")


@pytest.fixture(scope="module")
def lj13_data(workdir: Path) -> Path:
    """A ``base_data.pt`` of 64 LJ-13 configurations near the minimum."""
    path = workdir / "lj13-base_data.pt"
    torch.save({"x": torch.as_tensor(lj13_like(64, np.random.default_rng(0)))}, path)
    return path


@pytest.fixture(scope="module")
def lj13_reference(workdir: Path) -> Path:
    """A reference file (``write_reference``) of 64 LJ-13 configurations and their energies."""
    from molsample.mcmc.reference import ReferenceResult, write_reference
    from molsample.systems.cards import load_system

    x = lj13_like(64, np.random.default_rng(1), 0.035)
    result = ReferenceResult(samples=torch.as_tensor(x), energies=torch.as_tensor(lj_energy(x)), kT=1.0,
                             method="mala", system="lj13")
    return write_reference(result, workdir / "lj13-reference.h5", load_system("lj13"))


@pytest.fixture(scope="module")
def lj13_run(workdir: Path) -> Path:
    """A run folder with flow samples, a reference set and the config of a tilt job; its base data are in
    the reference cache (MALA, 8 samples per chain), its reference set is not."""
    from molsample.mcmc.reference import DEFAULT_CACHE_DIR, load_or_generate_reference
    from molsample.systems.cards import load_system

    system = load_system("lj13")
    data = {"n": 1024, "burn_in": 20, "steps": 40}
    load_or_generate_reference(system, data["n"], kT=1.25 * system.kT, method="mala", seed=0, progress=False,
                               cache_dir=workdir / DEFAULT_CACHE_DIR, n_steps=data["steps"], burn_in=data["burn_in"])
    run = workdir / "lj13-run"
    run.mkdir()
    rng = np.random.default_rng(2)
    x, xr = lj13_like(48, rng), lj13_like(48, rng, 0.035)
    with RunFile(run / "samples.h5", "w") as rf:
        rf.write_samples(x, logw=rng.standard_normal(48), energy=lj_energy(x), energy_unit="reduced",
                         length_unit="reduced", kT=1.0)
        rf.write_samples(xr, energy=lj_energy(xr), energy_unit="reduced", length_unit="reduced", kT=1.0,
                         name="reference")
        rf.write_config({"system": "lj13", "seed": 0, "temperature_factor": 1.25, "data": data,
                         "reference": {"n": 48}})
        rf.set_attrs(system="lj13", kind="tilt", method="itm", seed=0)
    return run


@pytest.fixture(scope="module")
def lj13_tilt_run(workdir: Path) -> Path:
    """A finished toy tilt run of LJ-13 (``molsample tilt``), report included."""
    config = workdir / "toy-tilt.toml"
    config.write_text(TOY_TILT)
    _run([sys.executable, "-m", "molsample", "--threads", "1", "tilt", "--system", "lj13", "--config", str(config),
          "--out", "lj13-tilt", "--no-progress"], workdir)
    return workdir / "lj13-tilt"


@pytest.fixture(scope="module")
def aldp_model(workdir: Path) -> Path:
    """A tiny EGNN for alanine dipeptide (``save_model``)."""
    from molsample.nets import build_net, default_net_spec, save_model
    from molsample.systems.cards import load_system

    torch.manual_seed(0)
    net = build_net(default_net_spec(load_system("aldp"), hidden=8, n_layers=1))
    return save_model(workdir / "aldp-model.pt", net, system="aldp", history={"loss": [1.0, 0.5]})


@pytest.fixture(scope="module")
def aldp_internal_model(workdir: Path) -> Path:
    """A tiny untrained internal-coordinate flow for alanine dipeptide (``save_flow``), fitted on noisy copies
    of the shipped structure."""
    from molsample.flows.flow import save_flow
    from molsample.flows.internal import InternalCoordinates
    from molsample.molecules.zmatrix import zmatrix_for_system
    from molsample.nets import build_net
    from molsample.systems.cards import load_system

    system = load_system("aldp")
    _, x0 = aldp_topology()
    frames = torch.as_tensor(x0[None] + 0.003 * np.random.default_rng(4).standard_normal((40, 22, 3)))
    transform = InternalCoordinates.fit(zmatrix_for_system(system), frames)
    torch.manual_seed(0)
    net = build_net({"name": "internal-mlp", "dim": transform.event_shape[0],
                     "periodic": [bool(p) for p in transform.periodic], "hidden": 8, "n_layers": 1})
    return save_flow(workdir / "aldp-internal.pt", net, transform, system="aldp", a=0.0, mode="temperature",
                     kT0=system.kT)


@pytest.fixture(scope="module")
def aldp_run(workdir: Path, aldp_model: Path) -> Path:
    """A run folder of alanine dipeptide: flow samples, an MD-like reference set, history, pretrained.pt."""
    run = workdir / "aldp-run"
    run.mkdir()
    top, x0 = aldp_topology()
    rng = np.random.default_rng(3)
    x, xr = x0 + 0.01 * rng.standard_normal((40, 22, 3)), x0 + 0.004 * rng.standard_normal((40, 22, 3))
    with RunFile(run / "samples.h5", "w") as rf:
        rf.write_samples(x, logw=rng.standard_normal(40), energy=rng.normal(-20.0, 5.0, 40), energy_unit="kJ/mol",
                         length_unit="nm", topology=top, kT=2.494)
        rf.write_samples(xr, energy=rng.normal(-30.0, 5.0, 40), energy_unit="kJ/mol", length_unit="nm",
                         topology=top, kT=2.494, name="reference")
        rf.write_history(history(3))
        rf.set_attrs(system="aldp", kind="tilt", method="itm", ess=0.2, chirality_reference_fraction=0.5,
                     wall_time_s=60.0)
    (run / "pretrained.pt").write_bytes(aldp_model.read_bytes())
    return run


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes of this process."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return out


@pytest.mark.parametrize("script, smoke", _cases())
def test_script_runs_at_toy_size(script: str, smoke: Smoke, workdir: Path, request) -> None:
    names = {m for a in smoke.args for m in re.findall(r"\{(\w+)\}", a)}
    paths = {name: str(request.getfixturevalue(name)) for name in names}
    t0, c0 = time.perf_counter(), _children_cpu()
    out = _run([sys.executable, str(BENCHMARKS / script), *(a.format(**paths) for a in smoke.args)], workdir)
    print(f"{script}: {time.perf_counter() - t0:.1f} s wall, {_children_cpu() - c0:.1f} CPU-s")
    assert smoke.expect in out.stdout, f"{script} did not print {smoke.expect!r}:\n{out.stdout[-3000:]}"


def test_every_script_has_smoke_arguments() -> None:
    scripts = sorted(p.name for p in BENCHMARKS.glob("*.py"))
    missing = [s for s in scripts if s not in SMOKE]
    assert not missing, f"benchmark scripts without toy-size arguments: {missing}; add them to SMOKE in {__file__}"
    gone = sorted(set(SMOKE) - set(scripts))
    assert not gone, f"SMOKE lists scripts that are not in benchmarks/: {gone}"
