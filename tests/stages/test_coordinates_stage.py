"""The coordinates stage on a RunContext: for an internal-coordinate flow of alanine dipeptide it fits
the transform to the base data (T(T⁻¹(x)) = x up to a rigid motion, the data standardised), honours
[flow] circular_threshold and sets the matching base; a Cartesian run skips it and keeps the identity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from molsample.flows.internal import InternalCoordinates, internal_from_cartesian
from molsample.flows.internal_base import InternalBase
from molsample.flows.transform import CartesianTransform
from molsample.molecules.zmatrix import zmatrix_for_system
from molsample.stages.config import resolve_config
from molsample.stages.context import RunContext
from molsample.stages.coordinates import coordinates_stage, uses_internal_coordinates
from molsample.stages.run import TILT_STAGES

F64 = torch.float64
N_BONDS_AND_ANGLES = 21 + 20  # 22 atoms: 21 bonds, 20 angles, then 19 torsions


def aldp_context(tmp_path, flow: dict, said: list[str] | None = None) -> RunContext:
    cfg = resolve_config("aldp", preset="smoke", overrides={"flow": flow})
    return RunContext.create(cfg, tmp_path / "run", progress=False, echo=(said if said is not None else []).append)


def base_frames(ctx: RunContext, n: int = 40, noise: float = 0.004) -> torch.Tensor:
    """``(n, 22, 3)`` float32 frames (nm) around the card's structure, as base data are stored."""
    x0 = torch.as_tensor(np.asarray(ctx.system.energy.positions), dtype=F64)
    g = torch.Generator().manual_seed(0)
    return (x0 + noise * torch.randn(n, 22, 3, generator=g, dtype=F64)).float()


def pair_distances(x: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x, x)


def coordinates_skip(ctx: RunContext) -> bool:
    return next(s for s in TILT_STAGES if s.name == "coordinates").skip(ctx)


def test_internal_coordinates_are_fitted_to_the_base_data(tmp_path):
    said: list[str] = []
    ctx = aldp_context(tmp_path, {"coordinates": "internal"}, said)
    assert uses_internal_coordinates(ctx) and not coordinates_skip(ctx)
    ctx.data = base_frames(ctx)
    coordinates_stage(ctx)
    t = ctx.transform
    assert isinstance(t, InternalCoordinates) and t.event_shape == (60, 1)
    x = ctx.data.double()
    z, _ = t.inverse(x)
    y, _ = t.forward(z)
    # T(T⁻¹(x)) = x up to a rigid motion (forward places the molecule in its own frame)
    torch.testing.assert_close(pair_distances(y), pair_distances(x), rtol=0, atol=1e-10)
    torch.testing.assert_close(t.inverse(y)[0], z, rtol=0, atol=1e-10)
    # fitted on exactly these frames: bonds and angles standardised to mean 0 and std 1
    lin = z[:, :N_BONDS_AND_ANGLES, 0]
    assert lin.mean(0).abs().max() < 1e-9
    torch.testing.assert_close(lin.std(0, correction=0), torch.ones(N_BONDS_AND_ANGLES, dtype=F64), rtol=0, atol=1e-9)
    # frames this close together have no torsion wide enough for the circle
    assert not t.periodic.any()
    same = InternalCoordinates.fit(zmatrix_for_system(ctx.system), x, circular_threshold=0.5)
    assert torch.equal(t.mean, same.mean) and torch.equal(t.std, same.std)
    # the base follows the coordinates
    assert isinstance(ctx.base, InternalBase) and tuple(ctx.base.event_shape) == (60, 1)
    assert said == ["internal coordinates: 60 (Z-matrix from atom "
                    f"{zmatrix_for_system(ctx.system).rows[0][0]}; 0 torsions on the circle)"]


def torsion_spreads(x: torch.Tensor, ctx: RunContext) -> torch.Tensor:
    """``(19,)`` circular std √(−2 log R) of each Z-matrix torsion over the frames ``x``."""
    _, _, torsions = internal_from_cartesian(x.double(), zmatrix_for_system(ctx.system))
    resultant = torch.sqrt(torch.sin(torsions).mean(0) ** 2 + torch.cos(torsions).mean(0) ** 2)
    return torch.sqrt(-2.0 * torch.log(resultant.clamp(max=1.0)))


@pytest.mark.parametrize("where", ["tiny", "median", "huge"])
def test_the_circular_threshold_of_the_config_decides_which_torsions_are_circular(tmp_path, where):
    """A torsion goes on the circle when its spread in the base data reaches [flow] circular_threshold:
    all of them for a tiny threshold, about half at the median spread, none for a huge one."""
    probe = aldp_context(tmp_path, {"coordinates": "internal"})
    frames = base_frames(probe, noise=0.02)
    spread = torsion_spreads(frames, probe)
    threshold = {"tiny": 1e-9, "median": float(spread.median()), "huge": 10.0}[where]
    ctx = aldp_context(tmp_path, {"coordinates": "internal", "circular_threshold": threshold})
    ctx.data = frames
    coordinates_stage(ctx)
    periodic = ctx.transform.periodic
    assert not periodic[:N_BONDS_AND_ANGLES].any()
    assert torch.equal(periodic[N_BONDS_AND_ANGLES:], spread >= threshold)
    assert int(periodic.sum()) == {"tiny": 19, "median": 10, "huge": 0}[where]
    assert torch.equal(ctx.base.periodic, periodic)


def test_a_cartesian_run_skips_the_stage_and_keeps_the_identity(tmp_path):
    ctx = aldp_context(tmp_path, {"coordinates": "cartesian"})
    assert not uses_internal_coordinates(ctx) and coordinates_skip(ctx)
    assert isinstance(ctx.transform, CartesianTransform) and ctx.transform.is_identity
    x = base_frames(ctx).double()
    y, logdet = ctx.transform.forward(x)
    assert torch.equal(y, x) and torch.equal(logdet, torch.zeros(len(x), dtype=F64))
    assert ctx.transform.event_shape == (22, 3)


def test_rotor_augmentation_fits_and_trains_on_every_relabelling(tmp_path):
    said: list[str] = []
    ctx = aldp_context(tmp_path, {"coordinates": "internal", "rotor_augment": True}, said)
    ctx.data = base_frames(ctx, n=8)
    coordinates_stage(ctx)
    assert ctx.train_frames.shape == (27 * 8, 22, 3)
    torch.testing.assert_close(ctx.train_frames[:8], ctx.data.double(), rtol=0, atol=0)
    # the transform is fitted on the relabelled frames: the three C-H bonds of a methyl share one mean
    zm = zmatrix_for_system(ctx.system)
    same = InternalCoordinates.fit(zm, ctx.train_frames, circular_threshold=0.5)
    assert torch.equal(ctx.transform.mean, same.mean)
    bond_of = {row[0]: k for k, row in enumerate(zm.rows[1:])}  # bond k places atom rows[k + 1][0]
    for methyl in [(0, 2, 3), (11, 12, 13), (19, 20, 21)]:
        means = ctx.transform.mean.flatten()[[bond_of[a] for a in methyl]]
        torch.testing.assert_close(means, means[:1].expand(3), rtol=0, atol=1e-12)
    plain = InternalCoordinates.fit(zm, ctx.data.double(), circular_threshold=0.5).mean.flatten()
    assert plain[[bond_of[a] for a in (0, 2, 3)]].std() > 1e-4  # without the relabellings they differ
    assert said[0] == "rotor augmentation: 3 groups of equivalent atoms, 27 relabellings of each of 8 frames"


def test_rotor_augmentation_is_refused_for_cartesian_flows():
    from molsample.errors import ConfigError

    with pytest.raises(ConfigError, match="rotor_augment = true needs coordinates"):
        resolve_config("aldp", preset="smoke", overrides={"flow": {"rotor_augment": True}})
