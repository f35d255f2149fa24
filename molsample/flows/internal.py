r"""Internal coordinates: bond lengths, bond angles and torsions of a Z-matrix as a flow's coordinates.

Flow coordinates ``z: (batch, D, 1)``, D = 3n − 6, in the order [n − 1 bond lengths (Z-matrix rows
1..), n − 2 angles (rows 2..), n − 3 torsions (rows 3..)], standardised with statistics fitted on MD
frames (:meth:`InternalCoordinates.fit`):

* bonds b = μ + σ z (nm), angles θ = μ + σ z (rad);
* *circular* torsions (a wide spread: rotors) z = φ wrapped to (−π, π], unscaled (μ = 0, σ = 1) and
  marked in :attr:`InternalCoordinates.periodic`;
* *narrow* torsions (circular std below ``circular_threshold``) z = wrap(φ − μ)/σ, φ = μ + σ z.

:meth:`~InternalCoordinates.forward` places the atoms row by row (NeRF: natural extension reference
frame) in a canonical frame — the first atom at the origin, the second on +x, the third in the
xy-plane — and subtracts the centre of mass (the unweighted mean), so x is centre-free.

log|det J|. The measure on x is the Lebesgue measure of the (3n − 3)-dimensional centre-free
subspace V = {x : Σ_i x_i = 0} (that of :class:`~molsample.flows.distributions.CoMFreeGaussian`), with the
three rotational degrees of freedom integrated out:

1. The relative positions r_i = x_i − x_0 (i = 1..n − 1) are linear coordinates on V. Their inverse,
   x_i = r_i − (1/n) Σ_j r_j (r_0 = 0), has per Cartesian component the Gram matrix
   AᵀA = I_{n−1} − 11ᵀ/n, of determinant 1/n, so dx = n^{−3/2} dr.
2. r = R r°(q): R ∈ SO(3) times the canonical placement r°(q). Spherical coordinates atom by atom
   give dr = dR · ∏_{rows ≥ 1} b² · ∏_{rows ≥ 2} sin θ · dq, where dR is the Haar measure of total
   mass 8π² (sin β dα dβ dγ in Z-Y-Z Euler angles): the direction of the first bond (area 4π; its
   radial factor is the b² of row 1) and the azimuth of the third atom about it (2π).
3. With R uniform (Haar) and q from the flow, the density of x on V is p_q(q)/(8π² n^{−3/2} ∏ b² ∏ sin θ);
   for a rotation-invariant target this is exact, so the importance weights
   log w = −E(x)/kT + log|det J| − log q(z) estimate the same Z = ∫_V e^{−E/kT} dx as a Cartesian run:

       log|det J| = Σ_D log σ + Σ_{rows ≥ 1} 2 log b + Σ_{rows ≥ 2} log sin θ + log(8π²) − (3/2) log n.

:meth:`~InternalCoordinates.inverse` returns minus it. Gaussian tails can give b < 0 or θ outside
(0, π); the NeRF formulas still place the atom (a copy of a configuration inside the domain), and the
log-det uses |b| and |sin θ| — the local volume factor there — so nothing becomes NaN. Such samples
count a configuration twice: :meth:`~InternalCoordinates.in_domain` flags them (give them zero weight).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from molsample.errors import ConfigError, ShapeError
from molsample.flows.paths import wrap_angle
from molsample.flows.transform import Transform
from molsample.molecules.zmatrix import ZMatrix

__all__ = ["InternalCoordinates", "dihedral", "bond_angle", "internal_from_cartesian",
           "cartesian_from_internal"]

_LOG_8PI2 = math.log(8.0 * math.pi**2)
#: floor of the fitted σ, in nm (bonds) or rad (angles, torsions)
MIN_STD = 1e-4
#: sin of a reference angle below which a torsion's reference atoms count as collinear
DEGENERATE_SIN = 1e-6


def _dihedral_vec(a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> Tensor:
    """Dihedral a–b–c–d (rad, IUPAC sign) of positions ``(..., 3)`` -> ``(...)``."""
    b1, b2, b3 = b - a, c - b, d - c
    n1, n2 = torch.linalg.cross(b1, b2), torch.linalg.cross(b2, b3)
    y = b2.norm(dim=-1) * (b1 * n2).sum(-1)
    return torch.atan2(y, (n1 * n2).sum(-1))


def _angle_vec(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """Angle a–b–c at b (rad, in [0, π]) of positions ``(..., 3)`` -> ``(...)``."""
    u, v = a - b, c - b
    return torch.atan2(torch.linalg.cross(u, v).norm(dim=-1), (u * v).sum(-1))


def dihedral(x: Tensor, i: Any, j: Any, k: Any, l: Any) -> Tensor:
    """Dihedral i–j–k–l of ``x: (batch, n_atoms, 3)`` in radians, (−π, π], the IUPAC sign convention
    of ``mdtraj.compute_dihedrals``: ``(batch,)`` for int indices, ``(batch, m)`` for index tensors ``(m,)``."""
    return _dihedral_vec(x[:, i], x[:, j], x[:, k], x[:, l])


def bond_angle(x: Tensor, i: Any, j: Any, k: Any) -> Tensor:
    """Angle i–j–k at atom j of ``x: (batch, n_atoms, 3)`` in radians, [0, π]: ``(batch,)`` or ``(batch, m)``."""
    return _angle_vec(x[:, i], x[:, j], x[:, k])


def _as_f64(v: Any, dtype: Any = np.float64) -> Tensor:
    """A CPU tensor of ``v`` (a tensor on any device, an array or a list)."""
    if isinstance(v, Tensor):
        v = v.detach().cpu().numpy()
    return torch.as_tensor(np.asarray(v, dtype=dtype))


def _unit(v: Tensor) -> Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)


def _check_degenerate(x: Tensor, rows: Tensor, zmatrix: ZMatrix) -> None:
    """ConfigError when a torsion's references (bond_ref, angle_ref, torsion_ref) are collinear."""
    r = rows[3:]
    u, v = x[:, r[:, 1]] - x[:, r[:, 2]], x[:, r[:, 3]] - x[:, r[:, 2]]
    sin = torch.linalg.cross(u, v).norm(dim=-1) / (u.norm(dim=-1) * v.norm(dim=-1))
    bad = ~(sin >= DEGENERATE_SIN)
    if bool(bad.any()):
        sample, k = (int(t) for t in bad.nonzero()[0])
        atom, b, a, t = zmatrix.rows[k + 3]
        raise ConfigError(f"degenerate geometry in sample {sample}: Z-matrix row {k + 3} (atom {atom}) has collinear "
                          f"reference atoms {b}, {a}, {t} (sin of their angle {float(sin[sample, k]):.2g} < "
                          f"{DEGENERATE_SIN:g}), so its torsion is undefined; check the positions or choose other "
                          f"references in [internal] zmatrix")


def internal_from_cartesian(x: Tensor, zmatrix: ZMatrix) -> tuple[Tensor, Tensor, Tensor]:
    """``x: (batch, n_atoms, 3)`` -> bonds ``(batch, n−1)`` (x's unit), angles ``(batch, n−2)`` and torsions
    ``(batch, n−3)`` (rad, (−π, π]) of the Z-matrix rows; ConfigError on collinear torsion references."""
    n = zmatrix.n_atoms
    if x.dim() != 3 or tuple(x.shape[1:]) != (n, 3):
        raise ShapeError(f"internal coordinates of {n} atoms expect x of shape (batch, {n}, 3), got {tuple(x.shape)}")
    rows = torch.tensor(zmatrix.rows, dtype=torch.long, device=x.device)
    _check_degenerate(x, rows, zmatrix)
    bonds = (x[:, rows[1:, 0]] - x[:, rows[1:, 1]]).norm(dim=-1)
    angles = bond_angle(x, rows[2:, 0], rows[2:, 1], rows[2:, 2])
    torsions = dihedral(x, rows[3:, 0], rows[3:, 1], rows[3:, 2], rows[3:, 3])
    return bonds, angles, torsions


def cartesian_from_internal(bonds: Tensor, angles: Tensor, torsions: Tensor, zmatrix: ZMatrix) -> Tensor:
    """Place the atoms (NeRF) in the canonical frame: row 0 at the origin, row 1 on +x, row 2 in the
    xy-plane (y > 0 for angles in (0, π)). ``bonds (batch, n−1)``, ``angles (batch, n−2)``,
    ``torsions (batch, n−3)`` -> ``x: (batch, n_atoms, 3)``, not centred. Any real values are placed."""
    n, batch = zmatrix.n_atoms, bonds.shape[0]
    zero = bonds.new_zeros(batch)
    pos: dict[int, Tensor] = {zmatrix.rows[0][0]: bonds.new_zeros(batch, 3)}
    a1, b1 = zmatrix.rows[1][:2]
    pos[a1] = pos[b1] + torch.stack([bonds[:, 0], zero, zero], dim=-1)
    a2, b2, c2 = zmatrix.rows[2][:3]
    u = _unit(pos[b2] - pos[c2])
    e_y = torch.stack([zero, zero + 1, zero], dim=-1)
    th, bl = angles[:, 0:1], bonds[:, 1:2]
    pos[a2] = pos[b2] + bl * (-torch.cos(th) * u + torch.sin(th) * e_y)
    for k in range(3, n):
        atom, c, b, a = zmatrix.rows[k]
        bc = _unit(pos[c] - pos[b])
        nrm = _unit(torch.linalg.cross(pos[b] - pos[a], bc))
        m = torch.linalg.cross(nrm, bc)
        bl, th, ph = bonds[:, k - 1:k], angles[:, k - 2:k - 1], torsions[:, k - 3:k - 2]
        s = torch.sin(th)
        pos[atom] = pos[c] + bl * (-torch.cos(th) * bc + s * torch.cos(ph) * m + s * torch.sin(ph) * nrm)
    return torch.stack([pos[i] for i in range(n)], dim=1)


def _log_volume(bonds: Tensor, angles: Tensor) -> Tensor:
    """Σ 2 log|b| + Σ log|sin θ|, ``(batch,)``."""
    return 2.0 * bonds.abs().log().sum(-1) + torch.sin(angles).abs().log().sum(-1)


class InternalCoordinates(Transform):
    """Standardised internal coordinates of a Z-matrix (module docstring).

    Args:
        zmatrix: the placement order and references (n atoms).
        mean, std: ``(D,)`` μ and σ of the coordinates (nm for bonds, rad otherwise); ignored (0, 1) where circular.
        circular: ``(D,)`` bool, True for the torsions used unscaled on the circle (only torsion slots).
    """

    name = "internal"

    def __init__(self, zmatrix: ZMatrix, mean: Any, std: Any, circular: Any) -> None:
        n = zmatrix.validate(zmatrix.n_atoms).n_atoms
        d = 3 * n - 6
        mean, std = _as_f64(mean).reshape(-1), _as_f64(std).reshape(-1)
        circular = _as_f64(circular, bool).reshape(-1)
        for what, t in (("mean", mean), ("std", std), ("circular", circular)):
            if t.shape != (d,):
                raise ShapeError(f"{what} of internal coordinates of {n} atoms must have shape ({d},), "
                                 f"got {tuple(t.shape)}")
        if bool(circular[: 2 * n - 3].any()):
            raise ConfigError("only torsions can be circular: circular must be False on the first "
                              f"{2 * n - 3} (bond and angle) entries")
        if not bool((torch.isfinite(std) & (std > 0)).all()) or not bool(torch.isfinite(mean).all()):
            raise ConfigError(f"internal-coordinate statistics must be finite with std > 0; got std min "
                              f"{float(std.min()):g}: refit with InternalCoordinates.fit")
        self.zmatrix = zmatrix
        self.n_atoms = n
        self.event_shape = (d, 1)
        self.circular = circular.clone()
        self.mean = torch.where(circular, torch.zeros_like(mean), mean)
        self.std = torch.where(circular, torch.ones_like(std), std)
        self._log_const = float(self.std.log().sum()) + _LOG_8PI2 - 1.5 * math.log(n)

    @classmethod
    def fit(cls, zmatrix: ZMatrix, x_frames: Any, *, circular_threshold: float = 0.5) -> InternalCoordinates:
        """Fit μ, σ and the circular/narrow split on Cartesian frames ``x: (frames, n_atoms, 3)`` nm.

        A torsion is narrow when its circular std sqrt(−2 log R) (R: mean resultant length) is below
        ``circular_threshold`` rad; then μ is its circular mean and σ the std of wrap(φ − μ). σ ≥ 1e-4.
        """
        x = _as_f64(x_frames)
        if x.dim() != 3 or x.shape[0] < 1:
            raise ShapeError(f"fit needs frames of shape (frames, {zmatrix.n_atoms}, 3), got {tuple(x.shape)}")
        if not float(circular_threshold) >= 0:
            raise ConfigError(f"circular_threshold must be >= 0 rad, got {circular_threshold!r}")
        bonds, angles, torsions = internal_from_cartesian(x, zmatrix)
        lin = torch.cat([bonds, angles], dim=1)
        mean_lin, std_lin = lin.mean(0), lin.std(0, correction=0)
        s, c = torch.sin(torsions).mean(0), torch.cos(torsions).mean(0)
        mu_t = torch.atan2(s, c)
        resultant = torch.sqrt(s * s + c * c).clamp(max=1.0)
        circ_std = torch.sqrt(-2.0 * torch.log(resultant))  # inf when R = 0
        narrow = circ_std < float(circular_threshold)
        std_t = wrap_angle(torsions - mu_t).std(0, correction=0)
        mean = torch.cat([mean_lin, torch.where(narrow, mu_t, torch.zeros_like(mu_t))])
        std = torch.cat([std_lin, torch.where(narrow, std_t, torch.ones_like(std_t))]).clamp_min(MIN_STD)
        circular = torch.cat([torch.zeros_like(mean_lin, dtype=torch.bool), ~narrow])
        return cls(zmatrix, mean, std, circular)

    @property
    def periodic(self) -> Tensor:
        """``(D,)`` bool: the circular torsions (period 2π)."""
        return self.circular.clone()

    def _split(self, q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n = self.n_atoms
        return q[:, : n - 1], q[:, n - 1: 2 * n - 3], q[:, 2 * n - 3:]

    def _check_z(self, z: Tensor) -> Tensor:
        if z.dim() != 3 or tuple(z.shape[1:]) != self.event_shape:
            raise ShapeError(f"internal coordinates expect z of shape (batch, {self.event_shape[0]}, 1), "
                             f"got {tuple(z.shape)}")
        return z[..., 0]

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z: (batch, D, 1)`` -> ``(x (batch, n_atoms, 3) nm, centre-free; log|det J| (batch,))``."""
        v = self._check_z(z)
        q = self.mean.to(v) + self.std.to(v) * v
        bonds, angles, torsions = self._split(q)
        x = cartesian_from_internal(bonds, angles, torsions, self.zmatrix)
        return x - x.mean(dim=1, keepdim=True), _log_volume(bonds, angles) + self._log_const

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x: (batch, n_atoms, 3)`` nm -> ``(z (batch, D, 1), −log|det J| (batch,))``; ConfigError on
        collinear torsion references."""
        bonds, angles, torsions = internal_from_cartesian(x, self.zmatrix)
        mean, std = self.mean.to(x), self.std.to(x)
        raw = torch.cat([bonds, angles, torsions], dim=1) - mean
        k = 2 * self.n_atoms - 3
        raw = torch.cat([raw[:, :k], wrap_angle(raw[:, k:])], dim=1)
        return (raw / std).unsqueeze(-1), -(_log_volume(bonds, angles) + self._log_const)

    def in_domain(self, z: Tensor) -> Tensor:
        """``(batch,)`` bool: all bonds > 0, all angles in (0, π) and every narrow torsion within
        (−π, π] of its mean (elsewhere forward places a duplicate of a configuration inside)."""
        v = self._check_z(z)
        bonds, angles, _ = self._split(self.mean.to(v) + self.std.to(v) * v)
        k = 2 * self.n_atoms - 3
        dev = (self.std.to(v) * v)[:, k:]
        narrow = ~self.circular[k:].to(v.device)
        torsions_ok = (~narrow | ((dev > -math.pi) & (dev <= math.pi))).all(-1)
        return (bonds > 0).all(-1) & ((angles > 0) & (angles < math.pi)).all(-1) & torsions_ok

    def state(self) -> dict:
        """Plain lists: ``name``, ``zmatrix`` rows, ``mean``, ``std``, ``circular``."""
        return {"name": self.name, "zmatrix": self.zmatrix.as_lists(), "mean": self.mean.tolist(),
                "std": self.std.tolist(), "circular": self.circular.tolist()}

    @classmethod
    def from_state(cls, state: dict) -> InternalCoordinates:
        """Rebuild from :meth:`state` (lists or tensors)."""
        if state.get("name", cls.name) != cls.name:
            raise ConfigError(f"state of transform {state.get('name')!r} is not one of {cls.name!r}")
        try:
            return cls(ZMatrix.from_lists(state["zmatrix"]), state["mean"], state["std"], state["circular"])
        except KeyError as e:
            raise ConfigError(f"internal-coordinate state lacks key {e}; "
                              f"save it with InternalCoordinates.state()") from None

    def describe(self) -> str:
        """One line: atoms, dimensions, and how many torsions are circular."""
        n, n_circ = self.n_atoms, int(self.circular.sum())
        return (f"internal coordinates: {n} atoms, {self.event_shape[0]} dims ({n - 1} bonds, {n - 2} angles, "
                f"{n - 3} torsions: {n_circ} circular, {n - 3 - n_circ} narrow)")

    def __repr__(self) -> str:
        return (f"InternalCoordinates(n_atoms={self.n_atoms}, dims={self.event_shape[0]}, "
                f"circular={int(self.circular.sum())})")
