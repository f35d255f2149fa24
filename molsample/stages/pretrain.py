"""The pretraining stage: flow matching on the a = 0 samples, cached as ``pretrained.pt``.

``molsample tilt`` and ``molsample pretrain`` both train through :func:`pretrain_field`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from molsample.flows.distributions import HarmonicPrior
from molsample.flows.transform import Transform
from molsample.io.cache import digest
from molsample.nets import build_net, default_net_spec, load_model, save_model
from molsample.runtime.distributed import World
from molsample.stages.context import Echo, RunContext
from molsample.training.flow_matching import FlowMatchingConfig, train_flow_matching

__all__ = ["net_spec", "pretrain_field", "pretrain_stage"]


def net_spec(cfg, system, transform: Transform | None = None) -> dict:
    """The network spec from the config (``net.name`` None picks the system's default); for a flow in
    internal coordinates (``transform`` not the identity) the :class:`~molsample.nets.internal_mlp.InternalMLP`."""
    if transform is not None and not transform.is_identity:
        return {"name": "internal-mlp", "dim": transform.event_shape[0],
                "periodic": [bool(p) for p in transform.periodic], "hidden": cfg.net.hidden,
                "n_layers": cfg.net.n_layers}
    return default_net_spec(system, cfg.net.name, hidden=cfg.net.hidden, n_layers=cfg.net.n_layers,
                            bond_edges=cfg.net.bond_edges, parametrisation=cfg.net.parametrisation)


def pretrain_field(spec: dict, data: torch.Tensor | Callable, base: Any, fm: FlowMatchingConfig, out: Path, *,
                   device: torch.device, dtype: torch.dtype, checkpoint: Path | None = None,
                   checkpoint_dir: Path | None = None, progress: bool, echo: Echo, resume: bool = True,
                   meta: dict | None = None, world: World | None = None) -> tuple[nn.Module, dict, float | None]:
    """Train the net of ``spec`` by flow matching on ``data`` and save it to ``out``.

    The file is reused when its key (spec, ``fm``, data fingerprint, a bond-graph base) matches; the training
    checkpoints every ``fm.checkpoint_every`` steps to ``checkpoint`` (or
    ``checkpoint_dir/pretrain-<key>.pt``) and resumes from it. With a distributed ``world`` the
    ranks share every minibatch and rank 0 writes the files.
    Returns ``(field, history, train_cpu_s)``: history empty when reused; ``train_cpu_s`` the CPU
    seconds (all ranks, every invocation of a resumed training) the training took, stored in the
    file (``None`` for files from before it was).
    """
    fingerprint = "exact sampler" if callable(data) else [len(data), float(data.sum())]
    keyed = {"spec": spec, "fm": fm.key_dict(), "data": fingerprint}
    if isinstance(base, HarmonicPrior):  # (the Gaussian bases were keyed by the spec's length scale alone)
        keyed["base"] = repr(base)
    key = digest(keyed)
    if out.is_file():
        field, stored = load_model(out, device)
        if stored.get("key") == key:
            echo(f"pretraining: reusing {out}")
            return field.to(dtype), {}, stored.get("train_cpu_s")
    if checkpoint is None and checkpoint_dir is not None:
        checkpoint = Path(checkpoint_dir) / f"pretrain-{key}.pt"
    torch.manual_seed(fm.seed)
    field = build_net(spec).to(device=device, dtype=dtype)
    source = data if callable(data) else data.to(device=device, dtype=dtype)
    cpu0 = time.process_time()
    hist = train_flow_matching(field, source, base, fm, checkpoint_path=checkpoint, progress=progress, resume=resume,
                               world=world)
    cpu = (world or World()).sum(time.process_time() - cpu0)  # all ranks, this invocation
    if checkpoint is not None and Path(checkpoint).is_file():  # a resumed training: every invocation's CPU
        cpu = max(cpu, float(torch.load(checkpoint, map_location="cpu", weights_only=False).get("cpu_s") or 0.0))
    if world is None or world.is_main:
        save_model(out, field, key=key, history=hist, a=0.0, config=dataclasses.asdict(fm), train_cpu_s=cpu,
                   base=repr(base), **(meta or {}))
    return field, hist, cpu


def pretrain_stage(ctx: RunContext) -> None:
    """``ctx.field``: the pretrained field (a = 0), from ``pretrained.pt`` or trained now."""
    fm = ctx.cfg.pretrain
    spec = net_spec(ctx.cfg, ctx.system, ctx.transform)
    data, meta = ctx.data, {"system": ctx.system.name}
    if ctx.transform is not None and not ctx.transform.is_identity:  # train on the data's internal coordinates
        frames = ctx.train_frames if ctx.train_frames is not None else ctx.data
        data = torch.cat([ctx.transform.inverse(chunk.to(torch.float64))[0] for chunk in frames.split(65536)])
        meta["transform"] = ctx.transform.state()
    field, hist, train_cpu_s = pretrain_field(spec, data, ctx.base, fm, ctx.run_dir / "pretrained.pt",
                                              device=ctx.device, dtype=ctx.dtype,
                                              checkpoint_dir=ctx.run_dir / "checkpoints", progress=ctx.progress,
                                              echo=ctx.echo, meta=meta, world=ctx.world)
    if hist:
        last = hist["loss"][-1] if hist.get("loss") else float("nan")
        ctx.echo(f"pretraining: {fm.steps} steps, final loss {last:.4g}")
    ctx.field = field
    ctx.pretrain_cost = {"steps": fm.steps, "cpu_time_s": train_cpu_s}  # a reused file keeps its number
