"""Alanine dipeptide: flow + SMC against REMD from scratch at equal CPU (docs/benchmarks/aldp.md).

Rows, each compared with 300 K REMD frames that the flow did not train on where there are such (the "truth"):

* **flow, reweighted**: ``--samples`` samples of an internal-coordinate flow (``--model``, the ``--save``
  output of benchmarks/aldp_internal.py trained on the first ``--train-frames`` REMD frames; midpoint x 20)
  with exact log q, weighted at 300 K; error bars from the weights (delta method).
* **flow + SMC** (one row per ``--kernel``): :func:`~molsample.flows.smc.smc_refine` of those samples
  (auto start kT, ``--steps`` per level, ``--final-steps`` at kT, ``--groups`` groups; HMC takes
  ``--leapfrog-steps`` L and steps/L, final-steps/L moves, so that both kernels spend the same energy
  evaluations). The refined set's basin populations are the flow's weighted ones moved locally, so their
  error bar is a jackknife over the independent groups, and they count as usable only when the flow's
  weights carry at least 50 effective samples.
* **REMD from scratch, equal CPU**: the first K frames of the same REMD run, K = the flow job's CPU
  seconds (its training frames' REMD + training + sampling + MALA SMC) / the REMD's CPU seconds per frame
  (capped at the frames there are); error bars from the autocorrelation time. ``--remd-prefix`` adds rows
  for other prefixes (e.g. the cost of the flow's training data alone).
* **REMD truth**: frames after both the training frames and the K frames when at least
  ``--min-truth-frames`` remain, else after the training frames, else all of them (printed).

Columns: φ > 0 population, ΔF(β/C7eq − αR) in kT, bond RMSD ÷ thermal (against the truth's mean bonds),
median energy, energy evaluations, CPU seconds, effective samples (the flow's ESS x n; for REMD frames
n/τ_int of the φ > 0 indicator and of ΔF's). Training CPU comes from
``--train-cpu-s`` or from the JSON that aldp_internal.py printed into ``--train-log``. The REMD run must be
in the reference cache (``--frames`` frames; made by aldp_internal.py ``--data-method remd``, about
2,000 CPU-s); ``--smoke`` uses ``--frames`` frames of 300 K MD instead. One thread, float64 SMC:

    OMP_NUM_THREADS=1 python benchmarks/aldp_smc_table.py --model runs/bench/aldp-remd300-40000-40000.pt \\
        --train-frames 40000 --train-steps 40000 --samples 5000 --steps 10 --final-steps 200 --kernel mala,hmc \\
        --remd-prefix 10000,20000 --json table.json
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

from molsample.flows.flow import load_flow
from molsample.flows.smc import SMCResult, smc_refine
from molsample.flows.weights import normalized_weights, summarize, unusable_note
from molsample.molecules.basins import BasinStats, basin_populations, phi_psi
from molsample.molecules.bonds import bond_index, compare_bonds
from molsample.systems.cards import load_system

HEADER = ("| | φ > 0 | ΔF(β/C7eq − αR) [kT] | bond RMSD ÷ thermal | median E [kJ/mol] | energy evals | CPU s "
          "| effective samples |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="internal-coordinate flow (aldp_internal.py --save)")
    ap.add_argument("--train-frames", type=int, required=True, help="the model trained on the first N REMD frames")
    ap.add_argument("--train-steps", type=int, default=20000, help="its flow-matching steps (finds it in --train-log)")
    ap.add_argument("--train-cpu-s", type=float, default=None, help="its training CPU-s (default: from --train-log)")
    ap.add_argument("--train-log", default="runs/bench/chainA.log", help="aldp_internal.py's JSON output")
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--steps", type=int, default=10, help="SMC kernel steps per level (MALA)")
    ap.add_argument("--final-steps", type=int, default=200, help="SMC kernel steps at kT at the end (MALA)")
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--kernel", default="mala", help="comma-separated SMC kernels: mala, hmc")
    ap.add_argument("--leapfrog-steps", type=int, default=5)
    ap.add_argument("--frames", type=int, default=40000, help="REMD frames of the cached run")
    ap.add_argument("--min-truth-frames", type=int, default=10000)
    ap.add_argument("--remd-prefix", default="", help="comma-separated frame counts: more REMD-from-scratch rows")
    ap.add_argument("--seed", type=int, default=1, help="flow sampling seed (SMC: seed + 1000)")
    ap.add_argument("--smoke", action="store_true", help="300 K MD frames instead of the cached REMD run")
    ap.add_argument("--json", default=None, help="write the rows and the budget to this file")
    args = ap.parse_args(argv)
    kernels = args.kernel.split(",")
    if any(k not in ("mala", "hmc") for k in kernels):
        ap.error(f"--kernel {args.kernel}: choose from mala, hmc (comma-separated, e.g. mala,hmc)")
    if not 0 < args.train_frames <= args.frames:
        ap.error(f"--train-frames {args.train_frames} must lie in 1..--frames ({args.frames})")
    args.kernels = kernels
    try:
        args.prefixes = [int(k) for k in args.remd_prefix.split(",") if k]
    except ValueError:
        ap.error(f"--remd-prefix {args.remd_prefix!r}: give frame counts, e.g. 10000,20000")
    if any(not 0 < k <= args.frames for k in args.prefixes):
        ap.error(f"--remd-prefix {args.remd_prefix}: each count must lie in 1..--frames ({args.frames})")
    return args


def load_frames(system, frames: int, smoke: bool):
    """The 300 K reference run (:class:`~molsample.mcmc.reference.ReferenceResult`): a cached REMD run of
    ``frames`` frames (seed 0, the settings of :func:`~molsample.mcmc.reference.resolve_settings`) read from
    runs/cache/reference, or ``frames`` fresh 300 K MD frames with ``smoke``."""
    from molsample.mcmc.reference import DEFAULT_CACHE_DIR, read_reference, resolve_settings

    if smoke:
        from molsample.stages.config import DataConfig
        from molsample.stages.data import reference_samples

        return reference_samples(system, DataConfig(n=frames, method="md"), system.kT, seed=0, progress=False)
    # read, not regenerated: the cache key covers the card's text, so a file written before a card moved is
    # a miss for reference_samples, which would start a new 2,000 CPU-s run
    want = {k: v for k, v in resolve_settings(system, "remd", frames, {}).items() if k != "platform"}
    for path in sorted(Path(DEFAULT_CACHE_DIR).glob(f"{system.name}-remd-n{frames}-*.h5")):
        ref = read_reference(path)
        d = ref.diagnostics
        same = {k: v for k, v in (d.get("settings") or {}).items() if k in want} == want and d.get("seed") == 0
        if same and ref.n == frames and abs(ref.kT - system.kT) < 1e-9 and d.get("cpu_time_s"):
            check = system.energy.to(torch.float64).energy(ref.samples[:8].double())
            if torch.allclose(check, ref.energies[:8].double(), atol=1e-2):  # the same force field
                d.update(cache="read", path=str(path))
                return ref
    sys.exit(f"no cached 300 K REMD run of {frames} frames (seed 0, {want}) in {DEFAULT_CACHE_DIR}; make it with "
             f"benchmarks/aldp_internal.py --data-method remd --data-temperature-factor 1.0 --data-frames {frames} "
             "(about 2,000 CPU-s), or use --smoke")


def train_cpu(args: argparse.Namespace) -> float:
    """Training CPU-s of the model: ``--train-cpu-s``, or the last JSON object in ``--train-log`` with
    ``frames == --train-frames`` and ``steps == --train-steps``."""
    if args.train_cpu_s is not None:
        return args.train_cpu_s
    text = Path(args.train_log).read_text() if Path(args.train_log).is_file() else ""
    dec, found = json.JSONDecoder(), None
    for m in re.finditer(r"^\{", text, flags=re.M):
        try:
            obj = dec.raw_decode(text, m.start())[0]
        except json.JSONDecodeError:
            continue
        if obj.get("frames") == args.train_frames and obj.get("steps") == args.train_steps:
            found = obj
    if found is None:
        sys.exit(f"no run with frames {args.train_frames} and steps {args.train_steps} in {args.train_log}; "
                 "pass --train-cpu-s")
    return float(found["cpu_train_s"])


def flow_samples(system, model: str, n: int, seed: int) -> dict:
    """``{x, logq, energy, logw, cpu_s}`` of ``n`` flow samples (midpoint x 20; float64, log w at kT)."""
    from molsample.training.rewards import make_reward

    flow, _ = load_flow(model, system, method="midpoint", steps=20)
    target = make_reward(system, "temperature", kT0=(1.0 + 1e-6) * system.kT)  # the weights use −E/kT only
    t = time.process_time()
    ws = flow.sampler(target).sample(n, batch_size=500, generator=torch.Generator().manual_seed(seed))
    cpu = time.process_time() - t
    x, logq, e = ws.x.double(), ws.logq.double(), ws.energy.double()
    return {"x": x, "logq": logq, "energy": e, "logw": -e / system.kT - logq, "cpu_s": cpu}


def refine(system, flow: dict, kernel: str, args: argparse.Namespace) -> SMCResult:
    """SMC of the flow samples with ``kernel``; HMC gets 1/L of MALA's steps (equal energy evaluations)."""
    lf = args.leapfrog_steps if kernel == "hmc" else 1
    return smc_refine(flow["x"], flow["logq"], system.energy.to(torch.float64), system.kT, kT_start="auto",
                      mcmc_steps=max(1, args.steps // lf), final_steps=max(1, args.final_steps // lf),
                      groups=args.groups, kernel=kernel,
                      kernel_options={"leapfrog_steps": lf} if kernel == "hmc" else None,
                      generator=torch.Generator().manual_seed(args.seed + 1000), remove_com=system.remove_com)


def group_jackknife(angles: np.ndarray, logw: torch.Tensor, groups: int) -> tuple[float, float]:
    """Jackknife standard errors of the φ > 0 population and of ΔF (kT) over ``groups`` contiguous groups of
    ``angles: (n, 2)`` degrees with pooled ``logw: (n,)``; NaN when leaving one group out empties a basin (the
    estimate then rests on that one group)."""
    lw = logw.detach().double().reshape(groups, -1)
    a = angles.reshape(groups, -1, 2)
    phis, dfs = [], []
    for g in range(groups):
        keep = [k for k in range(groups) if k != g]
        st = basin_populations(a[keep].reshape(-1, 2), lw[keep].reshape(-1))
        phis.append(st.populations["phi_positive"])
        dfs.append(st.delta_f_kT)

    def se(v: list[float]) -> float:
        v = np.asarray(v)
        if not np.isfinite(v).all():
            return math.nan
        return float(math.sqrt((groups - 1) / groups * ((v - v.mean()) ** 2).sum()))

    return se(phis), se(dfs)


def row(name: str, st: BasinStats, bonds: float, median_e: float, evals: float, cpu: float, n_eff: float,
        note: str = "", **extra) -> dict:
    """One table row as a dict (basin numbers, bonds, energies, cost; ``note``: an unusable mark)."""
    return {"row": name, "phi_pos": st.populations["phi_positive"], "phi_pos_se": st.se["phi_positive"],
            "delta_f_kT": st.delta_f_kT, "delta_f_se_kT": st.delta_f_se_kT, "bond_ratio": bonds,
            "median_energy": median_e, "energy_evals": int(evals), "cpu_s": cpu, "effective_samples": n_eff,
            "note": note, **extra}


def flow_row(system, flow: dict, truth: np.ndarray, bonds: np.ndarray, cpu_before: float) -> dict:
    """The flow's samples weighted at kT."""
    x = flow["x"].numpy()
    s = summarize(flow["logw"])
    w = normalized_weights(flow["logw"]).numpy()
    st = basin_populations(phi_psi(x, system), flow["logw"].numpy())
    bc = compare_bonds(x, truth, bonds, weights=w)
    return row("flow, reweighted", st, bc.reweighted / bc.thermal, float(flow["energy"].median()), len(x),
               cpu_before + flow["cpu_s"], s.ess * len(x), unusable_note(s.ess, len(x)), ess=s.ess,
               log_z=s.log_z, log_z_se=s.log_z_se, bond_ratio_raw=bc.ratio, sample_cpu_s=flow["cpu_s"])


def smc_row(system, kernel: str, res: SMCResult, flow: dict, truth: np.ndarray, bonds: np.ndarray,
            cpu_before: float) -> dict:
    """The refined set: pooled weights, error bars from the group jackknife, usable as the flow's weights."""
    x = res.x.detach().double().numpy()
    angles = phi_psi(x, system)
    st = basin_populations(angles, res.logw.numpy())
    st.se["phi_positive"], st.delta_f_se_kT = group_jackknife(angles, res.logw, res.groups)
    bc = compare_bonds(x, truth, bonds, weights=normalized_weights(res.logw).numpy())
    s = summarize(flow["logw"])
    n = len(flow["logw"])
    return row(f"flow + SMC ({kernel.upper()})", st, bc.reweighted / bc.thermal, float(res.energies.median()),
               n + res.n_energy_evals, cpu_before + flow["cpu_s"] + res.cpu_s, s.ess * n, unusable_note(s.ess, n),
               smc_cpu_s=res.cpu_s, unique_ancestors=res.unique_ancestors, levels=res.n_levels,
               kT_start=res.kT_start, log_z=res.log_z, log_z_se=res.log_z_se,
               final_acceptance=res.history["acceptance"][-1], warnings=res.warnings)


def remd_row(name: str, system, x: np.ndarray, e: np.ndarray, truth: np.ndarray, bonds: np.ndarray, evals: float,
             cpu: float, **extra) -> dict:
    """Consecutive REMD frames at 300 K: error bars from the autocorrelation time."""
    st = basin_populations(phi_psi(x, system), time_series=True)
    bc = compare_bonds(x, truth, bonds)
    n_phi = len(x) / st.extra["tau_phi_positive"]  # the φ > 0 indicator decorrelates slower than ΔF's
    n_eff = min(n_phi, st.n_eff)
    return row(name, st, bc.ratio, float(np.median(e)), evals, cpu, st.n_eff, unusable_note(n_eff / len(x), len(x)),
               effective_phi=n_phi, frames=len(x), **extra)


def truth_start(n: int, train: int, k: int, min_truth: int) -> int:
    """First frame of the truth: after the training and the equal-CPU frames when ``min_truth`` remain, else
    after the training frames, else 0."""
    if n - max(train, k) >= min_truth:
        return max(train, k)
    return train if train < n else 0


def fmt(r: dict) -> str:
    """One Markdown line of a row."""
    def pm(v: float, se: float, digits: int) -> str:
        if not math.isfinite(v):
            return f"{v}"
        return f"{v:.{digits}f}" + (f" ± {se:.{digits}f}" if math.isfinite(se) else " (no error bar)")

    note = r["note"].strip()
    eff = f"{r['effective_samples']:,.0f}"
    if "effective_phi" in r:
        eff = f"{r['effective_phi']:,.0f} (φ > 0) / {eff} (ΔF)"
    return (f"| {r['row']}{' ' + note if note else ''} | {pm(r['phi_pos'], r['phi_pos_se'], 4)} "
            f"| {pm(r['delta_f_kT'], r['delta_f_se_kT'], 2)} | {r['bond_ratio']:.3f} | {r['median_energy']:.1f} "
            f"| {r['energy_evals']:,} | {r['cpu_s']:,.0f} | {eff} |")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    system = load_system("aldp")
    ref = load_frames(system, args.frames, args.smoke)
    xr, er = ref.samples.double().numpy(), ref.energies.double().numpy()
    n_frames = len(xr)
    cpu_frame = float(ref.diagnostics["cpu_time_s"]) / n_frames
    evals_frame = float(ref.diagnostics.get("n_energy_evals") or math.nan) / n_frames
    print(f"reference: {n_frames} {ref.method} frames at 300 K ({ref.diagnostics.get('cache')}: "
          f"{ref.diagnostics.get('path')}), {cpu_frame:.4f} CPU-s per frame", flush=True)
    cpu_train = train_cpu(args)
    cpu_data = args.train_frames * cpu_frame
    flow = flow_samples(system, args.model, args.samples, args.seed)
    runs = {k: refine(system, flow, k, args) for k in args.kernels}
    budget = cpu_data + cpu_train + flow["cpu_s"] + runs[args.kernels[0]].cpu_s
    k_equal = min(n_frames, int(budget / cpu_frame))
    start = truth_start(n_frames, args.train_frames, k_equal, args.min_truth_frames)
    truth = xr[start:]
    bonds = bond_index(system.topology)
    rows = [flow_row(system, flow, truth, bonds, cpu_data + cpu_train)]
    rows += [smc_row(system, k, r, flow, truth, bonds, cpu_data + cpu_train) for k, r in runs.items()]
    short = k_equal == n_frames and budget > n_frames * cpu_frame
    capped = " (all frames: less CPU than the flow job)" if short else ""
    label = ref.method.upper()
    rows += [remd_row(f"{label} from scratch: frames 0–{k}", system, xr[:k], er[:k], truth, bonds, k * evals_frame,
                      k * cpu_frame) for k in args.prefixes]
    rows.append(remd_row(f"{label} from scratch, equal CPU: frames 0–{k_equal}{capped}", system, xr[:k_equal],
                         er[:k_equal], truth, bonds, k_equal * evals_frame, k_equal * cpu_frame))
    rows.append(remd_row(f"{label} truth: frames {start}–{n_frames}", system, truth, er[start:], truth, bonds,
                         (n_frames - start) * evals_frame, (n_frames - start) * cpu_frame))
    info = {"budget": {"cpu_data_s": cpu_data, "cpu_train_s": cpu_train, "cpu_sample_s": flow["cpu_s"],
                       "cpu_smc_s": {k: r.cpu_s for k, r in runs.items()}, "flow_job_cpu_s": budget,
                       "remd_cpu_s_per_frame": cpu_frame, "remd_equal_cpu_frames": k_equal, "truth_from": start},
            "model": args.model, "train_frames": args.train_frames, "samples": args.samples}
    for r in rows:
        print(json.dumps(r), flush=True)
    print(json.dumps(info), flush=True)
    print("\n".join([HEADER, "|---|---|---|---|---|---|---|---|", *map(fmt, rows)]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({**info, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
