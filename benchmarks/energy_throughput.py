"""Energy + force evaluations per second: Lennard-Jones clusters and the OpenMM bridge.

* LJ-13 and LJ-55 (benchmark convention: pair_factor 2, oscillator_scale 1), float32,
  ``energy_and_force`` (autograd forces) at batch 1, 256 and 4096.
* Alanine dipeptide through :class:`molsample.energies.OpenMMEnergy` compared with a plain
  single-Context OpenMM loop (``setPositions`` + ``getState(getEnergy, getForces)``) on the
  same platform, same configurations. Two plain loops are timed: the public API with unit
  conversion (what one writes from the OpenMM docs) and OpenMM's low-level calls without
  unit wrapping (the fastest loop OpenMM's Python layer allows). The ratios are bridge/plain.

Every number is the best of ``--repeats`` timings. Run from the project root::

    python benchmarks/energy_throughput.py --threads 1 --json benchmarks/energy_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform as platform_module
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from molsample.energies import LennardJones  # noqa: E402
from molsample.energies.openmm_bridge import OpenMMEnergy, available_platforms  # noqa: E402


def best_rate(fn: Callable[[], object], n_items: int, repeats: int, min_time: float) -> float:
    """Items per second: best over ``repeats`` of (calls in ≥ min_time seconds)."""
    fn()  # warm-up
    best = 0.0
    for _ in range(repeats):
        calls, t0 = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        best = max(best, calls * n_items / dt)
    return best


def bench_lj(batches: list[int], repeats: int, min_time: float) -> list[dict]:
    rows = []
    g = torch.Generator().manual_seed(0)
    for n in (13, 55):
        lj = LennardJones(n, pair_factor=2.0, oscillator_scale=1.0)
        for b in batches:
            x = (torch.randn(b, n, 3, generator=g) * n ** (1 / 3)).float()
            rate = best_rate(lambda: lj.energy_and_force(x), b, repeats, min_time)
            rows.append({"system": f"lj{n}", "batch": b, "dtype": "float32", "evals_per_s": rate})
    return rows


def plain_public(context, x: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    from openmm import unit

    kj, kjnm = unit.kilojoule_per_mole, unit.kilojoule_per_mole / unit.nanometer
    for xi in x:
        context.setPositions(xi)
        state = context.getState(getEnergy=True, getForces=True)
        state.getPotentialEnergy().value_in_unit(kj)
        state.getForces(asNumpy=True).value_in_unit(kjnm)


def plain_lowlevel(context, x: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    import openmm
    from openmm import _openmm

    types, forces = openmm.State.Energy + openmm.State.Forces, openmm.State.Forces
    out = np.empty((x.shape[1], 3))
    for xi in x:
        _openmm.Context_setPositions(context, xi)
        state = _openmm.Context_getState(context, types, False, -1)
        _openmm.State_getPotentialEnergy(state)
        _openmm.State__getVectorAsNumpy(state, forces, out)


def bench_openmm(batch: int, platforms: list[str], repeats: int, min_time: float, workers: int) -> list[dict]:
    import openmm

    from molsample.systems.cards import load_system

    aldp = load_system("aldp").energy
    rng = np.random.default_rng(0)
    x = np.ascontiguousarray(aldp.positions[None] + 0.01 * rng.standard_normal((batch, aldp.n_particles, 3)))
    xt = torch.as_tensor(x)
    xt32 = xt.float()
    rows = []
    for name in platforms:
        context = openmm.Context(aldp.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(name))
        bridge = OpenMMEnergy(aldp.system, platform=name)
        public = best_rate(lambda: plain_public(context, x), batch, repeats, min_time)
        low = best_rate(lambda: plain_lowlevel(context, x), batch, repeats, min_time)
        ef = best_rate(lambda: bridge.energy_and_force(xt), batch, repeats, min_time)

        def autograd_step() -> None:
            xg = xt32.clone().requires_grad_(True)
            bridge.energy(xg).sum().backward()

        ag = best_rate(autograd_step, batch, repeats, min_time)
        row = {
            "system": "aldp", "platform": name, "batch": batch,
            "plain_public_per_s": public, "plain_lowlevel_per_s": low,
            "bridge_energy_and_force_per_s": ef, "bridge_autograd_float32_per_s": ag,
            "ratio_vs_public": ef / public, "ratio_vs_lowlevel": ef / low,
        }
        if workers > 1:
            pooled = OpenMMEnergy(aldp.system, platform=name, n_workers=workers)
            row[f"bridge_{workers}_workers_per_s"] = best_rate(
                lambda: pooled.energy_and_force(xt), batch, repeats, min_time)
        rows.append(row)
        del context
    return rows


def write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--min-time", type=float, default=0.2, help="seconds per timing")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 256, 4096])
    p.add_argument("--openmm-batch", type=int, default=256)
    p.add_argument("--platforms", nargs="+", default=None, help="OpenMM platforms (default: Reference and CPU)")
    p.add_argument("--workers", type=int, default=2, help="also time the bridge with this many contexts (1: skip)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", RuntimeWarning)
    platforms = args.platforms or [n for n in ("Reference", "CPU", "CUDA", "OpenCL") if n in available_platforms()]
    lj = bench_lj(args.batches, args.repeats, args.min_time)
    omm = bench_openmm(args.openmm_batch, platforms, args.repeats, args.min_time, args.workers)

    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, {platform_module.processor() or platform_module.machine()}, "
          f"{os.cpu_count()} CPUs")
    print("\nLennard-Jones energy+force (float32, autograd), evaluations/s")
    print(f"{'system':<8}{'batch':>8}{'evals/s':>14}")
    for r in lj:
        print(f"{r['system']:<8}{r['batch']:>8}{r['evals_per_s']:>14,.0f}")
    print(f"\nALDP through OpenMM, batch {args.openmm_batch}, evaluations/s (energy + forces)")
    hdr = f"{'platform':<10}{'plain public':>14}{'plain low-level':>17}{'bridge':>10}{'autograd f32':>14}{'/public':>9}{'/low-level':>12}"
    if args.workers > 1:
        hdr += f"{f'{args.workers} workers':>12}"
    print(hdr)
    for r in omm:
        line = (f"{r['platform']:<10}{r['plain_public_per_s']:>14,.0f}{r['plain_lowlevel_per_s']:>17,.0f}"
                f"{r['bridge_energy_and_force_per_s']:>10,.0f}{r['bridge_autograd_float32_per_s']:>14,.0f}"
                f"{r['ratio_vs_public']:>9.2f}{r['ratio_vs_lowlevel']:>12.2f}")
        if args.workers > 1:
            line += f"{r[f'bridge_{args.workers}_workers_per_s']:>12,.0f}"
        print(line)
    if args.json is not None:
        write_json_atomic(args.json, {
            "command": " ".join(["python", "benchmarks/energy_throughput.py", *(argv if argv is not None else sys.argv[1:])]),
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "lennard_jones": lj, "openmm": omm,
        })
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
