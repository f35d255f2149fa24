r"""Base distributions of the flows (t = 0).

* :class:`StandardGaussian` — N(0, σ²I) on all n·d coordinates (2-D toys, systems without CoM removal).
* :class:`CoMFreeGaussian` — the Gaussian N(0, σ²I) restricted to the zero-centre-of-mass subspace
  {x : Σ_i x_i = 0} of (n, d) configurations, which has (n − 1)·d dimensions.

σ (``std``, default 1) is the system's ``length_scale`` (see :func:`base_distribution`); the
formulas below are for σ = 1, and a general σ adds −‖·‖²/(2σ²) scaling and −dof·log σ.

CoM-free log-density. Let P = (I_n − 1 1ᵀ/n) ⊗ I_d be the orthogonal projection onto the subspace
and U an orthonormal basis of it (Uᵀ U = I_{(n−1)d}). A sample is x = P z with z ~ N(0, I_{nd}),
so its coordinates y = Uᵀ x are N(0, I_{(n−1)d}) and, with ‖Uᵀx‖ = ‖P x‖ = ‖x − x̄‖,

    log q(x) = −½ ‖x − x̄‖² − ½ (n − 1) d · log 2π,      x̄ = (1/n) Σ_i x_i.

This is the density with respect to the (n − 1)·d-dimensional Lebesgue measure on the subspace;
inputs with a non-zero centre of mass are projected first (the density is translation invariant).

* :class:`HarmonicPrior` — a CoM-free Gaussian whose precision comes from a bond graph, so that
  bonded atoms start close together (a "harmonic prior"). With L the graph Laplacian of the bonds
  (L_ii = degree, L_ij = −1 per bond) the precision over particles is

      A = L/σ_b² + I/σ²,

  the same for each of the d Cartesian components, and q(x) ∝ exp(−½ Σ_c x_cᵀ A x_c) on the CoM-free
  subspace (x_c: the n values of component c). L 1 = 0, so A maps 1⊥ (zero-mean vectors) to itself;
  with Q an orthonormal basis of 1⊥ (n × (n − 1)) and A⊥ = Qᵀ A Q,

      log q(x) = −½ Σ_c (x_c − x̄_c)ᵀ A (x_c − x̄_c) + (d/2) log det A⊥ − ½ (n − 1) d · log 2π,

  exact on the (n − 1)·d-dimensional subspace (the same measure as :class:`CoMFreeGaussian`, so the
  two log-densities are directly comparable). With no bonds it is ``CoMFreeGaussian(std=σ)``. The
  density depends on x only through x_cᵀ A x_c summed over components, so it is invariant under
  rotations, reflections and translations.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from molsample.errors import ConfigError, ShapeError

__all__ = ["StandardGaussian", "CoMFreeGaussian", "HarmonicPrior", "bond_laplacian", "base_distribution"]

_LOG_2PI = math.log(2.0 * math.pi)


def _randn(n: int, shape: tuple[int, ...], generator: torch.Generator | None, dtype: torch.dtype,
           device: torch.device | str | None) -> Tensor:
    """Normal draws of shape (n, *shape), using ``generator`` on its own device then moving."""
    if generator is not None:
        z = torch.randn(n, *shape, generator=generator, dtype=dtype, device=generator.device)
        return z.to(device) if device is not None else z
    return torch.randn(n, *shape, dtype=dtype, device=device)


class StandardGaussian:
    """N(0, I) on ``event_shape = (n_particles, dim)``.

    Args:
        event_shape: ``(n_particles, dim)`` of one configuration.
        std: standard deviation σ of every coordinate, in the system's length unit.
    """

    def __init__(self, event_shape: tuple[int, int], std: float = 1.0) -> None:
        if len(event_shape) != 2 or min(event_shape) < 1:
            raise ShapeError(f"event_shape must be (n_particles, dim) with positive entries, got {event_shape}")
        if not (isinstance(std, (int, float)) and math.isfinite(std) and std > 0):
            raise ConfigError(f"the base distribution's std must be a positive number, got {std!r}")
        self.event_shape: tuple[int, int] = (int(event_shape[0]), int(event_shape[1]))
        self.std = float(std)

    def _log_norm(self) -> float:
        """½·dof·log 2π + dof·log σ."""
        return self.dof * (0.5 * _LOG_2PI + math.log(self.std))

    @property
    def dof(self) -> int:
        """Number of degrees of freedom (dimension of the support)."""
        return self.event_shape[0] * self.event_shape[1]

    def _check(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or tuple(x.shape[1:]) != self.event_shape:
            n, d = self.event_shape
            raise ShapeError(f"{type(self).__name__} expects (batch, {n}, {d}), got {tuple(x.shape)}")
        return x

    def sample(self, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> Tensor:
        """``n`` samples, ``(n, n_particles, dim)``."""
        z = _randn(int(n), self.event_shape, generator, dtype, device)
        return z if self.std == 1.0 else z * self.std

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density −‖x‖²/(2σ²) − ½·dof·log 2π − dof·log σ, ``(batch,)``."""
        x = self._check(x)
        return -0.5 * (x * x).sum(dim=(1, 2)) / self.std**2 - self._log_norm()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(event_shape={self.event_shape}, std={self.std:g})"


class CoMFreeGaussian(StandardGaussian):
    """Standard Gaussian on the zero-centre-of-mass subspace ((n − 1)·dim degrees of freedom).

    See the module docstring for the exact log-density.
    """

    def __init__(self, n_particles: int, dim: int, std: float = 1.0) -> None:
        if n_particles < 2:
            raise ShapeError(f"CoMFreeGaussian needs n_particles >= 2, got {n_particles}; use StandardGaussian")
        super().__init__((n_particles, dim), std)

    @property
    def dof(self) -> int:
        return (self.event_shape[0] - 1) * self.event_shape[1]

    def sample(self, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> Tensor:
        """``n`` samples with zero centre of mass, ``(n, n_particles, dim)``."""
        z = super().sample(n, generator=generator, dtype=dtype, device=device)
        return z - z.mean(dim=1, keepdim=True)

    def log_prob(self, x: Tensor) -> Tensor:
        """−‖x − x̄‖²/(2σ²) − ½(n − 1)·dim·log 2π − (n − 1)·dim·log σ, ``(batch,)``."""
        x = self._check(x)
        xc = x - x.mean(dim=1, keepdim=True)
        return -0.5 * (xc * xc).sum(dim=(1, 2)) / self.std**2 - self._log_norm()

    def __repr__(self) -> str:
        n, d = self.event_shape
        return f"{type(self).__name__}(n_particles={n}, dim={d}, std={self.std:g})"


def bond_laplacian(n_particles: int, bonds: Any) -> Tensor:
    """Graph Laplacian ``(n, n)`` float64 of ``bonds`` (pairs of 0-based indices; repeats count once)."""
    lap = torch.zeros(n_particles, n_particles, dtype=torch.float64)
    seen: set[tuple[int, int]] = set()
    for b in bonds:
        i, j = int(b[0]), int(b[1])
        if i == j or not (0 <= i < n_particles and 0 <= j < n_particles):
            raise ConfigError(f"bond ({i}, {j}) is not a pair of distinct particle indices in [0, {n_particles})")
        key = (min(i, j), max(i, j))
        if key in seen:
            continue
        seen.add(key)
        lap[i, i] += 1
        lap[j, j] += 1
        lap[i, j] -= 1
        lap[j, i] -= 1
    return lap


class HarmonicPrior(CoMFreeGaussian):
    """CoM-free Gaussian with precision L/σ_b² + I/σ² over particles (module docstring).

    Args:
        n_particles: number of particles n.
        dim: spatial dimension d.
        bonds: ``(n_bonds, 2)`` 0-based index pairs (a list of pairs, an array, or an mdtraj topology's bonds).
        bond_std: σ_b, in the system's length unit. For a tree-shaped bond graph (ALDP: 22 atoms,
            21 bonds) and σ → ∞, each component of a bond vector has std σ_b; the isotropic term
            shrinks it a little.
        std: σ of the isotropic term: the largest per-coordinate std any atom can have.
    """

    #: bonded atoms get their own covariance: permuting particles changes the density
    permutation_invariant = False

    def __init__(self, n_particles: int, dim: int, bonds: Any, bond_std: float = 0.15, std: float = 1.0) -> None:
        super().__init__(n_particles, dim, std)
        if not (isinstance(bond_std, (int, float)) and math.isfinite(bond_std) and bond_std > 0):
            raise ConfigError(f"the harmonic prior's bond_std must be a positive number, got {bond_std!r}")
        self.bond_std = float(bond_std)
        self.bonds = [(int(b[0]), int(b[1])) for b in bonds]
        n = self.event_shape[0]
        self.precision = bond_laplacian(n, self.bonds) / self.bond_std**2 + torch.eye(n, dtype=torch.float64) / self.std**2
        # orthonormal basis Q of the zero-mean vectors: the last n − 1 columns of a Householder-type QR of [1, I]
        full, _ = torch.linalg.qr(torch.cat([torch.ones(n, 1, dtype=torch.float64), torch.eye(n, dtype=torch.float64)],
                                            dim=1))
        q = full[:, 1:n]
        evals, evecs = torch.linalg.eigh(q.T @ self.precision @ q)
        self.logdet_perp = float(torch.log(evals).sum())  # log det of the precision on 1⊥
        #: x_c = sample_map @ z_c with z_c ~ N(0, I_{n−1}) has covariance Q A⊥⁻¹ Qᵀ
        self.sample_map = q @ evecs @ torch.diag(evals.rsqrt())
        #: covariance over particles of one component, Q A⊥⁻¹ Qᵀ, (n, n)
        self.covariance = self.sample_map @ self.sample_map.T

    def sample(self, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> Tensor:
        """``n`` samples with zero centre of mass, ``(n, n_particles, dim)``."""
        p, d = self.event_shape
        z = _randn(int(n), (p - 1, d), generator, torch.float64, device)
        return torch.einsum("ij,bjc->bic", self.sample_map.to(z.device), z).to(dtype)

    def log_prob(self, x: Tensor) -> Tensor:
        """−½ Σ_c x_cᵀ A x_c + (d/2) log det A⊥ − ½ (n − 1) d log 2π on centred x, ``(batch,)``."""
        x = self._check(x)
        xc = x - x.mean(dim=1, keepdim=True)
        a = self.precision.to(device=x.device, dtype=x.dtype)
        quad = torch.einsum("bic,ij,bjc->b", xc, a, xc)
        d = self.event_shape[1]
        return -0.5 * quad + 0.5 * d * self.logdet_perp - 0.5 * self.dof * _LOG_2PI

    def __repr__(self) -> str:
        n, d = self.event_shape
        return (f"{type(self).__name__}(n_particles={n}, dim={d}, bonds={len(self.bonds)}, "
                f"bond_std={self.bond_std:g}, std={self.std:g})")


#: base kinds selectable with the card's ``[base] kind``
BASE_KINDS = ("gaussian", "harmonic")


def base_distribution(system: Any, override: dict | None = None) -> StandardGaussian | CoMFreeGaussian:
    """The base distribution of a :class:`~molsample.systems.cards.System`.

    :class:`CoMFreeGaussian` when ``system.remove_com`` (particle systems), else :class:`StandardGaussian`,
    with std = ``system.length_scale`` (the card's ``length_scale``, default 1). A card table
    ``[base] kind = "harmonic"`` (with ``bond_std``, default 0.15 in length units) selects
    :class:`HarmonicPrior` over the topology's bonds, with the isotropic std ``length_scale``.
    ``override`` (keys ``kind``, ``bond_std``; a run config's ``[base]``) replaces the card's keys.
    """
    n, d = system.event_shape
    std = float(getattr(system, "length_scale", 1.0))
    card = getattr(system, "card", None) or {}
    table = card.get("base", {}) if isinstance(card, dict) else {}
    if not isinstance(table, dict):
        raise ConfigError(f"card key base must be a table like {{ kind = \"harmonic\", bond_std = 0.15 }}, got {table!r}")
    table = {**table, **(override or {})}
    kind = table.get("kind", "gaussian")
    if kind not in BASE_KINDS:
        raise ConfigError(f"unknown base kind {kind!r}; use one of {', '.join(BASE_KINDS)}")
    if kind == "harmonic":
        topology = getattr(system, "topology", None)
        bonds = [(b[0].index, b[1].index) for b in topology.bonds] if topology is not None else []
        if not bonds or not getattr(system, "remove_com", False):
            raise ConfigError(f"base kind 'harmonic' needs a system with bonds and remove_com = true; "
                              f"system {getattr(system, 'name', '?')!r} has {len(bonds)} bonds; use kind = 'gaussian'")
        return HarmonicPrior(n, d, bonds, bond_std=float(table.get("bond_std", 0.15)), std=std)
    if getattr(system, "remove_com", False) and n > 1:
        return CoMFreeGaussian(n, d, std)
    return StandardGaussian((n, d), std)
