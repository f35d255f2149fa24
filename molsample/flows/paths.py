"""Interpolants I_t = α_t x0 + β_t x1 between the base (t = 0) and the target (t = 1).

>>> path = get_path("linear")
>>> ps = path.sample(x0, x1, t)      # x0, x1: (batch, n, d); t: (batch,)
>>> ps.xt.shape, ps.dxt.shape        # I_t and İ_t = α̇_t x0 + β̇_t x1, both (batch, n, d)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from molsample.errors import ConfigError, ShapeError

__all__ = ["PathSample", "LinearPath", "TrigPath", "PeriodicPath", "PATHS", "get_path", "path_for_base", "wrap_angle"]


@dataclass(frozen=True)
class PathSample:
    """One draw of the interpolant.

    Attributes:
        t: ``(batch,)`` times in [0, 1].
        xt: ``(batch, n, d)`` interpolant I_t = α_t x0 + β_t x1.
        dxt: ``(batch, n, d)`` its time derivative İ_t = α̇_t x0 + β̇_t x1 (the flow-matching target).
    """

    t: Tensor
    xt: Tensor
    dxt: Tensor


class _Path:
    """Shared sampling code; subclasses define α, β and their derivatives."""

    name: str = ""

    def alpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def beta(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def d_alpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def d_beta(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, x0: Tensor, x1: Tensor, t: Tensor) -> PathSample:
        """Interpolate base points ``x0`` and target points ``x1`` at times ``t``.

        Args:
            x0: ``(batch, n, d)`` base samples (t = 0).
            x1: ``(batch, n, d)`` target samples (t = 1).
            t: ``(batch,)`` times (a float or 0-d tensor is broadcast to the batch).
        """
        if x0.shape != x1.shape:
            raise ShapeError(f"x0 {tuple(x0.shape)} and x1 {tuple(x1.shape)} must have the same shape")
        t = torch.as_tensor(t, dtype=x0.dtype, device=x0.device)
        if t.dim() == 0:
            t = t.expand(x0.shape[0])
        if t.shape != (x0.shape[0],):
            raise ShapeError(f"t must be a scalar or (batch,) = ({x0.shape[0]},), got {tuple(t.shape)}")
        tb = t.reshape(-1, *([1] * (x0.dim() - 1)))
        xt = self.alpha(tb) * x0 + self.beta(tb) * x1
        dxt = self.d_alpha(tb) * x0 + self.d_beta(tb) * x1
        return PathSample(t=t, xt=xt, dxt=dxt)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LinearPath(_Path):
    """α_t = 1 − t, β_t = t (the straight-line interpolant of flow matching / rectified flow)."""

    name = "linear"

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - t

    def beta(self, t: Tensor) -> Tensor:
        return t

    def d_alpha(self, t: Tensor) -> Tensor:
        return torch.full_like(t, -1.0)

    def d_beta(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)


class TrigPath(_Path):
    """α_t = cos(πt/2), β_t = sin(πt/2) (variance preserving for independent unit-variance x0, x1)."""

    name = "trig"

    def alpha(self, t: Tensor) -> Tensor:
        return torch.cos(0.5 * math.pi * t)

    def beta(self, t: Tensor) -> Tensor:
        return torch.sin(0.5 * math.pi * t)

    def d_alpha(self, t: Tensor) -> Tensor:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)

    def d_beta(self, t: Tensor) -> Tensor:
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * t)


#: path name → class
PATHS: dict[str, type[_Path]] = {"linear": LinearPath, "trig": TrigPath}


def get_path(name: str) -> LinearPath | TrigPath:
    """The interpolant called ``name`` (``"linear"`` or ``"trig"``).

    Raises:
        ConfigError: an unknown name (the message lists the known ones).
    """
    cls = PATHS.get(str(name).lower())
    if cls is None:
        raise ConfigError(f"unknown path '{name}'; choose one of {', '.join(PATHS)}")
    return cls()


def wrap_angle(x: Tensor) -> Tensor:
    """``x`` wrapped to (−π, π] (elementwise)."""
    return x - 2.0 * math.pi * torch.ceil((x - math.pi) / (2.0 * math.pi))


class PeriodicPath:
    """The linear path with its periodic coordinates on the circle (period 2π): shortest arcs.

    For a periodic coordinate the endpoint x1 is replaced by x0 + wrap(x1 − x0), the image of x1 nearest
    to x0, so I_t runs along the shorter arc and İ_t = wrap(x1 − x0); I_t is wrapped to (−π, π]. The
    other coordinates follow the straight line. A velocity net that sees periodic coordinates through
    sin/cos is then trained on the circle (flows on tori).

    Args:
        path: the linear path (the trig path is no geodesic on the circle and is refused).
        periodic: ``(n·d,)`` bool mask over the flattened coordinates of one configuration.
    """

    name = "linear"

    def __init__(self, path: "LinearPath", periodic: Tensor) -> None:
        if not isinstance(path, LinearPath):
            raise ConfigError(f"flows with periodic coordinates (torsions) need the linear path, not "
                              f"'{getattr(path, 'name', path)}'; set path = \"linear\"")
        self.path = path
        self.periodic = torch.as_tensor(periodic, dtype=torch.bool).reshape(-1)

    def _mask(self, x: Tensor) -> Tensor:
        return self.periodic.to(x.device).reshape(x.shape[1:])

    def sample(self, x0: Tensor, x1: Tensor, t: Tensor) -> PathSample:
        """As :meth:`LinearPath.sample`, along shortest arcs on the periodic coordinates."""
        if x0.shape != x1.shape:
            raise ShapeError(f"x0 {tuple(x0.shape)} and x1 {tuple(x1.shape)} must have the same shape")
        mask = self._mask(x0)
        x1 = torch.where(mask, x0 + wrap_angle(x1 - x0), x1)
        ps = self.path.sample(x0, x1, t)
        return PathSample(t=ps.t, xt=torch.where(mask, wrap_angle(ps.xt), ps.xt), dxt=ps.dxt)

    def __repr__(self) -> str:
        return f"PeriodicPath({int(self.periodic.sum())} periodic of {len(self.periodic)})"


def path_for_base(name: str, base: object) -> "LinearPath | TrigPath | PeriodicPath":
    """The interpolant ``name`` for flows from ``base``: a :class:`PeriodicPath` when the base has
    periodic coordinates (attribute ``periodic``, a bool mask with any True), else :func:`get_path`."""
    path = get_path(name)
    periodic = getattr(base, "periodic", None)
    if periodic is not None and bool(torch.as_tensor(periodic).any()):
        return PeriodicPath(path, periodic)
    return path
