"""The whole ``molsample tilt`` job: base data → pretraining → tilt → weighted samples → run file.

Each stage is cached or checkpointed in the run folder, so an interrupted job resumes where it
stopped (``resume=True``) and a finished stage is never recomputed:

    runs/<run>/config.toml            resolved configuration
    runs/<run>/base_data.pt           samples of the a = 0 distribution (pretraining data)
    runs/<run>/pretrained.pt          the pretrained field (a = 0)
    runs/<run>/checkpoints/pretrain-<key>.pt   flow-matching checkpoints (key: net, settings, data)
    runs/<run>/checkpoints/tilt.pt    the annealing loop's state after every level
    runs/<run>/model.pt               the tilted field (a = 1)
    runs/<run>/samples.h5             samples with log-weights, energies, history, config
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from molsample.config import RunConfig
from molsample.distributions import base_distribution
from molsample.errors import PlatformError
from molsample.io.atomic import save_torch_atomic, write_text_atomic
from molsample.io.toml_writer import dumps_toml
from molsample.nets import build_net, default_net_spec, load_model, save_model
from molsample.rewards import TiltReward, make_reward
from molsample.sampling.ode import sample as ode_sample
from molsample.sampling.weights import WeightSummary, log_weights, resample, summarize
from molsample.systems import System, load_system
from molsample.training.flow_matching import FlowMatchingConfig, train_flow_matching
from molsample.training.tilt import TiltMatching

Echo = Callable[[str], None]


def resolve_device(name: str) -> torch.device:
    """A torch device from a name; CUDA requested but absent is a :class:`PlatformError`."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PlatformError(f"--device {name} requested but CUDA is not available on this machine; use --device cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise PlatformError(f"unknown device {name!r}; use cpu or cuda") from exc
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise PlatformError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                            "use cuda:0 or cpu")
    return device


def resolve_mode(cfg: RunConfig, system: System) -> str:
    """The reward mode: the configured one, else ``reward`` for cards with [reward], else ``temperature``."""
    if cfg.mode is not None:
        return cfg.mode
    return "reward" if isinstance(system.card.get("reward"), dict) else "temperature"


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- stages


def base_data(cfg: RunConfig, system: System, mode: str, base, run_dir: Path, *, progress: bool,
              echo: Echo) -> torch.Tensor | Callable[[int, torch.Generator], torch.Tensor]:
    """Samples of the a = 0 distribution, ``(cfg.data.n, n_particles, dim)``, cached in the run folder.

    When the a = 0 distribution has an exact sampler (reward mode on the 2-D toys), the sampler
    itself is returned, so that pretraining draws fresh samples at every step.
    """
    if mode == "reward" and system.exact_sampler() is not None:
        echo("base data: the system's exact sampler (fresh samples at every pretraining step)")
        return system.exact_sampler()
    cache = run_dir / "base_data.pt"
    key = _digest({"system": str(system.card_path), "mode": mode, "data": dataclasses.asdict(cfg.data),
                   "factor": cfg.temperature_factor, "seed": cfg.seed})
    if cache.is_file():
        blob = torch.load(cache, weights_only=False)
        if blob.get("key") == key:
            echo(f"base data: reusing {len(blob['x'])} cached samples ({cache})")
            return blob["x"]
    g = torch.Generator().manual_seed(cfg.seed)
    n = cfg.data.n
    if mode == "prior":
        x = base.sample(n, generator=g, dtype=torch.float64)
        info = "base Gaussian"
    else:
        kT0 = cfg.temperature_factor * system.kT if mode == "temperature" else system.kT
        ref = reference_samples(system, cfg.data, kT0, seed=cfg.seed, progress=progress)
        x = torch.as_tensor(ref.samples, dtype=torch.float64)
        info = f"{ref.method} at kT0 = {kT0:g} {system.energy_unit}"
    save_torch_atomic({"key": key, "x": x}, cache)
    echo(f"base data: {len(x)} samples ({info})")
    return x


def reference_samples(system: System, dcfg, kT: float, *, seed: int, progress: bool):
    """Samples at ``kT`` from the reference sampler (cached in runs/cache/reference/ by settings)."""
    from molsample.sampling.reference import load_or_generate_reference, resolve_method

    settings = {k: v for k, v in (("n_steps", dcfg.steps), ("burn_in", dcfg.burn_in)) if v}
    if resolve_method(system, dcfg.method, kT) == "exact":
        settings = {}  # step counts of a preset mean nothing to an exact sampler
    return load_or_generate_reference(system, dcfg.n, kT=kT, method=dcfg.method, seed=seed,
                                      progress=progress, **settings)


def target_reference(cfg: RunConfig, system: System, reward: TiltReward, *,
                     progress: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Ground-truth samples of the a = 1 target for the report: reference samples at kT, and in
    reward mode those samples resampled (systematically) with weights e^{β f(x)}."""
    ref = reference_samples(system, cfg.reference, system.kT, seed=cfg.seed + 3, progress=progress)
    x, e = torch.as_tensor(ref.samples), torch.as_tensor(ref.energies)
    info = f"{ref.method} samples at kT = {system.kT:g} {system.energy_unit}"
    if reward.mode == "reward":
        logw = reward.beta * reward.fn(x)
        idx = resample(logw, len(x), generator=torch.Generator().manual_seed(cfg.seed + 4))
        x, e = x[idx], e[idx]
        info += f", resampled with weights exp(β·reward), β = {reward.beta:g}"
    return x, e, info


def pretrain(cfg: RunConfig, system: System, data: torch.Tensor | Callable, base, run_dir: Path, device: torch.device,
             dtype: torch.dtype, *, progress: bool, echo: Echo) -> nn.Module:
    """Flow-matching pretraining on ``data``, cached as ``pretrained.pt`` (resumable checkpoint)."""
    spec = net_spec(cfg, system)
    fm = FlowMatchingConfig(steps=cfg.pretrain.steps, batch_size=cfg.pretrain.batch_size, lr=cfg.pretrain.lr,
                            ema_decay=cfg.pretrain.ema_decay, path=cfg.tilt.path, seed=cfg.seed,
                            lr_schedule=cfg.pretrain.lr_schedule)
    fingerprint = "exact sampler" if callable(data) else [len(data), float(data.sum())]
    key = _digest({"spec": spec, "fm": dataclasses.asdict(fm), "data": fingerprint})
    out = run_dir / "pretrained.pt"
    if out.is_file():
        field, meta = load_model(out, device)
        if meta.get("key") == key:
            echo(f"pretraining: reusing {out}")
            return field.to(dtype)
    torch.manual_seed(cfg.seed)
    field = build_net(spec).to(device=device, dtype=dtype)
    source = data if callable(data) else data.to(device=device, dtype=dtype)
    hist = train_flow_matching(field, source, base, fm,
                               checkpoint_path=run_dir / "checkpoints" / f"pretrain-{key}.pt", progress=progress)
    save_model(out, field, key=key, system=system.name, history=hist, a=0.0)
    last = hist["loss"][-1] if hist.get("loss") else float("nan")
    echo(f"pretraining: {cfg.pretrain.steps} steps, final loss {last:.4g}")
    return field


def energy_cap(cfg: RunConfig, system: System, mode: str, data: torch.Tensor | Callable) -> float | None:
    """The soft energy cap of the reward: the configured number, or for ``"auto"`` in the
    temperature mode the highest energy of the a = 0 training data (None otherwise)."""
    if isinstance(cfg.energy_cap, (int, float)):
        return float(cfg.energy_cap)
    if cfg.energy_cap == "none" or mode != "temperature" or callable(data):
        return None
    with torch.no_grad():
        e = system.energy.energy(data.to(torch.float64))
    e = e[torch.isfinite(e)]
    return float(e.max()) if len(e) else None


def net_spec(cfg: RunConfig, system: System) -> dict:
    """The network spec from the config (``net.name`` None picks the system's default)."""
    return default_net_spec(system, cfg.net.name, hidden=cfg.net.hidden, n_layers=cfg.net.n_layers)


@dataclasses.dataclass
class WeightedSamples:
    """Flow samples with everything needed to reweight them to the target.

    Attributes:
        x: ``(n, n_particles, dim)`` samples; logq: ``(n,)`` model log-density;
        energy: ``(n,)`` in the system's unit; logw: ``(n,)`` log importance weights
        (−inf for non-finite energies); summary: ESS, log Z ± se, counts.
    """

    x: torch.Tensor
    logq: torch.Tensor
    energy: torch.Tensor
    logw: torch.Tensor
    summary: WeightSummary


def _field_fingerprint(field: nn.Module) -> list[float]:
    """Cheap identity of a field's weights (sums of |θ| and θ over all parameters)."""
    with torch.no_grad():
        params = [p.detach().double() for p in field.parameters()]
        return [float(sum(p.abs().sum() for p in params)), float(sum(p.sum() for p in params))]


@torch.no_grad()
def draw_weighted_samples(
    field: nn.Module, base, reward: TiltReward, n: int, *, method: str, steps: int, divergence: str = "exact",
    batch_size: int = 1000, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu", progress: bool = False, checkpoint: Path | None = None,
) -> WeightedSamples:
    """Sample the field with exact log-likelihoods and weight against the a = 1 target.

    logw = log π(x) − log q(x) with log π the unnormalized target (−E/kT, times e^{βr} in reward
    mode). Batches of ``batch_size`` bound memory. With ``checkpoint``, the batches done so far
    (and the generator state) are saved there atomically after each batch, and a later call with
    the same field and settings continues from them: the result equals an uninterrupted call.
    The file is removed at the end.
    """
    from tqdm.auto import tqdm

    xs, logqs, es = [], [], []
    key = _digest({"n": n, "method": method, "steps": steps, "divergence": divergence, "batch_size": batch_size,
                   "dtype": str(dtype), "field": _field_fingerprint(field), "spec": getattr(field, "spec", None),
                   "generator": None if generator is None else generator.initial_seed()})
    if checkpoint is not None and Path(checkpoint).is_file():
        blob = torch.load(checkpoint, weights_only=False)
        if blob.get("key") == key:
            xs, logqs, es = blob["x"], blob["logq"], blob["energy"]
            if generator is not None:
                generator.set_state(blob["generator"])
    done = sum(len(b) for b in xs)
    reward.n_energy_evals += done  # the energies of those batches were evaluated by the interrupted call
    for start in tqdm(range(done, n, batch_size), desc="final samples", disable=not progress,
                      initial=done // batch_size, total=-(-n // batch_size)):
        m = min(batch_size, n - start)
        res = ode_sample(field, base, m, generator=generator, dtype=dtype, device=device, method=method,
                         steps=steps, with_logq=True, divergence=divergence)
        xs.append(res.x1.detach())
        logqs.append(res.logq.detach())
        es.append(reward.energy(res.x1).detach())
        if checkpoint is not None and start + m < n:
            save_torch_atomic({"key": key, "x": xs, "logq": logqs, "energy": es,
                               "generator": None if generator is None else generator.get_state()}, checkpoint)
    if checkpoint is not None:
        Path(checkpoint).unlink(missing_ok=True)
    x, logq, e = torch.cat(xs), torch.cat(logqs).double(), torch.cat(es).double()
    logw = log_weights(-reward.log_final_target(x.double(), e), logq)
    return WeightedSamples(x=x, logq=logq, energy=e, logw=logw, summary=summarize(logw))


@dataclasses.dataclass
class RunSummary:
    """What ``molsample tilt`` prints at the end."""

    run_dir: Path
    system: str
    method: str
    mode: str
    n_samples: int
    ess: float
    log_z: float
    log_z_se: float
    mean_energy: float
    energy_unit: str
    n_nonfinite: int
    levels: int
    energy_evals: int
    wall_time_s: float
    n_dropped: int = 0

    def lines(self) -> list[str]:
        return [
            f"run           {self.run_dir}",
            f"system        {self.system} ({self.mode} tilt, {self.method}, {self.levels} levels)",
            f"samples       {self.n_samples} ({self.n_nonfinite} with non-finite energy or log q, weight 0"
            + (f"; {self.n_dropped} mirror images, weight 0)" if self.n_dropped else ")"),
            f"ESS           {self.ess:.4f} ({self.ess * self.n_samples:.0f} effective samples)",
            f"log Z         {self.log_z:.4f} ± {self.log_z_se:.4f}",
            f"mean energy   {self.mean_energy:.4f} {self.energy_unit} (reweighted)",
            f"energy evals  {self.energy_evals}",
            f"wall time     {self.wall_time_s:.1f} s",
        ]


def run_tilt(cfg: RunConfig, run_dir: Path, *, resume: bool = False, progress: bool = True,
             echo: Echo = print) -> RunSummary:
    """Run the whole job of ``cfg`` in ``run_dir`` (see the module docstring)."""
    from molsample.io.hdf5 import RunFile

    t0 = time.time()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    system = load_system(cfg.system)
    device = resolve_device(cfg.device)
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    mode = resolve_mode(cfg, system)
    write_text_atomic(run_dir / "config.toml", dumps_toml(cfg.to_dict()))
    base = base_distribution(system)

    data = base_data(cfg, system, mode, base, run_dir, progress=progress, echo=echo)
    field = pretrain(cfg, system, data, base, run_dir, device, dtype, progress=progress, echo=echo)

    cap = energy_cap(cfg, system, mode, data)
    if cap is not None:
        echo(f"reward: soft energy cap at {cap:.4g} {system.energy_unit}")
    reward = make_reward(system, mode, kT0=cfg.temperature_factor * system.kT, beta=cfg.beta,
                         base_log_prob=base.log_prob, energy_cap=cap)
    trainer = TiltMatching(field, base, reward, cfg.tilt, seed=cfg.seed, device=device)
    history = trainer.run(checkpoint_path=run_dir / "checkpoints" / "tilt.pt", resume=resume, progress=progress)
    save_model(run_dir / "model.pt", field, system=system.name, a=trainer.a, mode=mode, config=cfg.to_dict())
    echo(f"tilt: {trainer.level} levels, a = {trainer.a:.4f}, {reward.n_energy_evals} energy evaluations")

    g = torch.Generator().manual_seed(cfg.seed + 1)
    fin = cfg.final
    ws = draw_weighted_samples(field, base, reward, fin.n_samples, method=fin.ode_method, steps=fin.ode_steps,
                               divergence=fin.divergence, batch_size=fin.batch_size, generator=g, dtype=dtype,
                               device=device, progress=progress, checkpoint=run_dir / "checkpoints" / "final.pt")
    if fin.divergence == "hutchinson":
        echo("warning: log-weights use the Hutchinson divergence estimator; ESS and log Z are biased")
    n_nonfinite = ws.summary.n_nonfinite  # before the chirality fix gives mirror images weight 0
    chiral_attrs = fix_chirality(ws, system, field, reflect=fin.reflect_chirality, echo=echo)

    with RunFile(run_dir / "samples.h5", "w") as rf:
        write_samples(rf, system, ws)
        rf.write_history({k: np.asarray(v, dtype=np.float64) for k, v in history.items()})
        rf.write_config(cfg.to_dict())
        rf.set_attrs(kind="tilt", system=system.name, method=cfg.tilt.method, mode=mode, seed=cfg.seed,
                     kT=system.kT, energy_unit=system.energy_unit, divergence=fin.divergence,
                     energy_evals=reward.n_energy_evals, wall_time_s=time.time() - t0,
                     ess=ws.summary.ess, log_z=ws.summary.log_z, log_z_se=ws.summary.log_z_se, **chiral_attrs)
        if fin.mcmc_steps > 0:
            mcmc_correct(rf, system, ws.x, fin.mcmc_steps, seed=cfg.seed, progress=progress, echo=echo)
        if cfg.reference.n > 0:
            x_ref, e_ref, info = target_reference(cfg, system, reward, progress=progress)
            rf.write_samples(x_ref, energy=e_ref, energy_unit=system.energy_unit, length_unit=system.length_unit,
                             topology=system.topology, kT=system.kT, name="reference")
            echo(f"reference: {len(x_ref)} {info}")
    if cfg.report:
        from molsample.reporting.report import make_report

        rep = make_report(run_dir)
        echo(f"report: {rep.html}")

    w = torch.softmax(ws.logw, 0)
    finite = torch.isfinite(ws.energy)
    mean_e = float((w[finite] * ws.energy[finite]).sum()) if finite.any() else math.nan
    return RunSummary(
        run_dir=run_dir, system=system.name, method=cfg.tilt.method, mode=mode, n_samples=len(ws.logw),
        ess=ws.summary.ess, log_z=ws.summary.log_z, log_z_se=ws.summary.log_z_se, mean_energy=mean_e,
        energy_unit=system.energy_unit, n_nonfinite=n_nonfinite,
        n_dropped=int(chiral_attrs.get("chirality_dropped", 0)),
        levels=trainer.level,
        energy_evals=reward.n_energy_evals, wall_time_s=time.time() - t0,
    )


def fix_chirality(ws: WeightedSamples, system: System, field: nn.Module, *, reflect: bool,
                  echo: Echo) -> dict[str, float]:
    """Chirality of the samples of a system with stereocentres (else nothing).

    With ``reflect``, the samples are weighted against the target folded onto the reference
    stereoisomer (docs/chirality.md). For a reflection-invariant net (every net but the chiral
    e3nn) wrong-handed samples are mirrored in place; E and the model density are
    reflection-invariant, so logq, the energies and logw stay valid. For a chiral net the
    mirror-image samples get weight 0 and the others log 2 more
    (:func:`~molsample.chirality.drop_wrong_handed_log_weights`); the ESS counts the dropped ones
    as wasted. Returns run-file attributes with the fractions before the fix.
    """
    from molsample.chirality import (chiral_centers_for_system, chirality_fractions, drop_wrong_handed_log_weights,
                                     reflect_wrong_handed)

    centers = chiral_centers_for_system(system)
    if not centers:
        return {}
    frac = chirality_fractions(ws.x.cpu(), centers)
    attrs = {"chirality_reference_fraction": float(frac["reference"]),
             "chirality_mirror_fraction": float(frac["mirror"])}
    echo(f"chirality: {frac['reference']:.3f} of the samples have the reference handedness, "
         f"{frac['mirror']:.3f} the mirror image")
    if not reflect:
        return attrs
    spec = getattr(field, "spec", {})
    if spec.get("name") == "e3nn" and spec.get("chiral", True):
        ws.logw = drop_wrong_handed_log_weights(ws.logw, ws.x.cpu(), centers)
        ws.summary = summarize(ws.logw)
        n_dropped = round(frac["mirror"] * frac["n"])
        attrs["chirality_dropped"] = int(n_dropped)
        echo(f"chirality: gave the {n_dropped} mirror-image samples of the chiral net weight 0")
    else:
        x, n_reflected = reflect_wrong_handed(ws.x.cpu(), centers)
        ws.x = x.to(ws.x.device)
        attrs["chirality_reflected"] = int(n_reflected)
        echo(f"chirality: mirrored {n_reflected} wrong-handed samples (weights unchanged)")
    return attrs


def write_samples(rf, system: System, ws: WeightedSamples, *, append: bool = False) -> None:
    """Write :class:`WeightedSamples` as the run file's main sample set."""
    rf.write_samples(ws.x.double().cpu(), logw=ws.logw.cpu(), logq=ws.logq.cpu(), energy=ws.energy.cpu(),
                     energy_unit=system.energy_unit, length_unit=system.length_unit,
                     topology=system.topology, kT=system.kT, append=append)


def mcmc_correct(rf, system: System, x: torch.Tensor, n_steps: int, *, seed: int, progress: bool, echo: Echo) -> None:
    """Apply ``n_steps`` MALA steps targeting exp(−E/kT) to ``x`` and store the set ``mcmc_corrected``."""
    from molsample.sampling.mcmc import mala_correct

    g = torch.Generator().manual_seed(seed + 2)
    res = mala_correct(system.energy, system.kT, x.double().cpu(), n_steps=n_steps, remove_com=system.remove_com,
                       generator=g, progress=progress)
    rf.write_samples(res.samples, energy=res.energies, energy_unit=system.energy_unit,
                     length_unit=system.length_unit, topology=system.topology, kT=system.kT,
                     name="mcmc_corrected")
    rf.set_attrs(mcmc_steps=n_steps, mcmc_acceptance=res.acceptance, mcmc_energy_evals=res.n_energy_evals)
    echo(f"MCMC correction: {n_steps} MALA steps, acceptance {res.acceptance:.3f}")


def sample_more(run: Path, n: int, *, seed: int | None = None, batch_size: int | None = None,
                device: str = "cpu", progress: bool = True) -> list[str]:
    """Draw ``n`` more weighted samples from a finished run and append them to its run file.

    The ESS and log Z in the file's attributes are recomputed over all samples.
    Returns the summary lines.
    """
    from molsample.config import config_from_dict
    from molsample.io.hdf5 import RunFile, resolve_run_path

    path = resolve_run_path(run)
    run_dir = path.parent
    with RunFile(path, "r") as rf:
        cfg = config_from_dict(rf.read_config())
        n_old = len(rf.read_samples()["x"])
    field, meta = load_model(run_dir / "model.pt", resolve_device(device))
    system = load_system(cfg.system)
    mode = meta.get("mode") or resolve_mode(cfg, system)
    base = base_distribution(system)
    reward = make_reward(system, mode, kT0=cfg.temperature_factor * system.kT, beta=cfg.beta,
                         base_log_prob=base.log_prob)
    dtype = next(field.parameters()).dtype
    g = torch.Generator().manual_seed(seed if seed is not None else cfg.seed + 1000 + n_old)
    ws = draw_weighted_samples(field, base, reward, n, method=cfg.final.ode_method, steps=cfg.final.ode_steps,
                               divergence=cfg.final.divergence, batch_size=batch_size or cfg.final.batch_size,
                               generator=g, dtype=dtype, device=device, progress=progress)
    fix_chirality(ws, system, field, reflect=cfg.final.reflect_chirality, echo=lambda _: None)
    with RunFile(path, "a") as rf:
        write_samples(rf, system, ws, append=True)
        total = summarize(torch.as_tensor(rf.read_samples()["logw"]))
        rf.set_attrs(ess=total.ess, log_z=total.log_z, log_z_se=total.log_z_se)
    return [
        f"appended      {n} samples to {path} ({n_old + n} in total)",
        f"new samples   ESS {ws.summary.ess:.4f}, {ws.summary.n_nonfinite} non-finite",
        f"all samples   ESS {total.ess:.4f}, log Z {total.log_z:.4f} ± {total.log_z_se:.4f}",
    ]
