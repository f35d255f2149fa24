"""Why a Lennard-Jones run's weights collapse: energies, closest pairs and cluster size of its flow
samples against its reference set, and what its base data and reference cost (their cache entries).

    python benchmarks/lj_structure.py runs/lj55-cpu

Prints the flow's energy quantiles and the reference's mean ± std; per sample the closest pair
distance (median for flow and reference, the reference's 1 % quantile, and the share of flow
samples closer than it); the rms distance of the particles from the centre; and for the base
data (kT0) and the reference (kT) the cached sampler diagnostics: energy evaluations, τ_int in
kept samples and effective samples. Reading the cache never samples anything new.
"""

from __future__ import annotations

import argparse
import tomllib

import numpy as np
import torch

from molsample.mcmc.reference import (load_or_generate_reference, reference_cache_path, resolve_method,
                                      resolve_settings)
from molsample.reporting.run_data import load_run_data
from molsample.systems.cards import load_system


def closest_pair(x: np.ndarray) -> np.ndarray:
    """``(n,)`` smallest interparticle distance of each configuration ``x (n, N, d)``."""
    t = torch.as_tensor(x, dtype=torch.float64)
    d = torch.cdist(t, t) + torch.eye(t.shape[1], dtype=t.dtype) * 1e9
    return d.flatten(1).min(1).values.numpy()


def cached(system, section: dict, kT: float, seed: int) -> dict | None:
    """The diagnostics of the cache entry a run's data section made at ``kT`` (``None`` if absent)."""
    settings = {k: v for k, v in (("n_steps", section.get("steps")), ("burn_in", section.get("burn_in"))) if v}
    method = resolve_method(system, section.get("method", "auto"), kT)
    cfg = resolve_settings(system, method, section["n"], settings)
    if not reference_cache_path(system, kT, method, section["n"], {**cfg, "seed": int(seed)}).is_file():
        return None
    return load_or_generate_reference(system, section["n"], kT=kT, method=method, seed=seed, progress=False,
                                      **settings).diagnostics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a tilt run folder with a reference set")
    args = ap.parse_args()
    d = load_run_data(args.run)
    if d.ref is None:
        raise SystemExit(f"{args.run}: the run has no reference set")
    ef, er = d.flow.energy, d.ref.energy
    q = np.quantile(ef[np.isfinite(ef)], [0.05, 0.5, 0.95])
    print(f"flow energies: median {q[1]:.4g}, 5-95 % {q[0]:.4g} .. {q[2]:.4g}")
    print(f"reference energies: {er.mean():.4g} ± {er.std():.4g}")
    cf, cr = closest_pair(d.flow.x), closest_pair(d.ref.x)
    floor = np.quantile(cr, 0.01)
    print(f"closest pair: flow median {np.median(cf):.3g}, reference median {np.median(cr):.3g} "
          f"(1 % quantile {floor:.3g}); flow samples below that quantile: {100 * (cf < floor).mean():.1f} %")
    rms = [float(np.sqrt((x ** 2).sum(-1).mean())) for x in (d.flow.x, d.ref.x)]
    print(f"rms distance from the centre: flow {rms[0]:.3g}, reference {rms[1]:.3g}")
    cfg = tomllib.loads(d.config_text)
    system = load_system(cfg["system"])
    kT0 = system.kT * cfg.get("temperature_factor", 1.0)
    for label, section, kT, seed in (("base data", cfg["data"], kT0, cfg.get("seed", 0)),
                                     ("reference", cfg["reference"], system.kT, cfg.get("seed", 0) + 3)):
        diag = cached(system, section, kT, seed)
        if diag is None:
            print(f"{label} (kT = {kT:g}): not in the reference cache")
            continue
        print(f"{label} (kT = {kT:g}, {diag.get('method')}): {int(diag['n_energy_evals']):,} energy evaluations, "
              + (f"tau_int {diag['tau_int']:.3g} kept samples, {diag['n_effective']:.0f} effective of {section['n']:,}"
                 if diag.get("tau_int") is not None else
                 f"no autocorrelation time (fewer than 8 samples per chain) for {section['n']:,} samples"))


if __name__ == "__main__":
    main()
