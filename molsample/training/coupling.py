r"""Minibatch couplings of base and data samples for flow matching.

Flow matching regresses b̂_t(I_t) on İ_t for pairs (x0, x1). Independent pairs give crossing,
curved paths; pairing the minibatch by optimal transport (OT) shortens and straightens them
(Tong et al. 2023), and for identical particles the pairing can also use the symmetry group
(Klein, Krämer, Noé 2023): every x0 is replaced by the rotated, permuted copy of itself closest to
its partner x1. The base is invariant under rotations and permutations, so this changes which x0
goes with which x1, not the distribution of the x0 — as long as the data law is invariant too
(then the aligned x0 have an invariant law with the base's law of shapes, which is the base).

Couplings (:data:`COUPLINGS`, each a function registered with :func:`register_coupling` together
with what it does to the particles and whether it keeps the tilt's fixed point):

* ``"independent"``: the pairs as drawn.
* ``"ot"``: the batch assignment minimizing Σ |x0_σ(j) − x1_j|² (plain Euclidean cost).
* ``"equivariant-ot"``: the batch assignment on a rotation- and permutation-invariant cost,
  then each chosen x0 aligned to its x1 (linear assignment of particles alternated with Kabsch,
  proper rotations only, from the principal-axis starts). The batch cost is
  ``"radial"`` (default): the 1-D OT distance between the sorted distances of the particles from
  the centroid, a lower bound of the aligned cost that costs O(B² n) in torch; or ``"aligned"``:
  the aligned cost itself for all B² pairs (one start, one assignment + Kabsch each; B² small
  assignment problems on the CPU, about 3.6 training steps of LJ-13 at B = 256, see
  docs/benchmarks/lj13-quality.md).
* ``"aligned"``: independent pairs, each x0 aligned to its x1 (no batch assignment). Tilting
  this coupling by a reward of x1 gives the same coupling of the tilted law, so unlike the batch
  OT couplings it keeps the Tilt Matching fixed point (docs/couplings.md).

All couplings assume centred configurations ``(B, n, d)`` (zero centre of mass) for the
symmetry-aware ones; the data must be invariant in law under rotations about the centroid and,
with ``permute=True``, permutations of the particles (identical particles: LJ, DW-4).

For a molecule the atoms are not interchangeable and the symmetry group is the rotations alone
(``permute=False``, :func:`permutes_particles`): ``"aligned"`` then rotates each x0 onto its x1 by
Kabsch (the exact optimum, no assignment), and ``"equivariant-ot"`` assigns the batch on the
Kabsch-aligned squared distances of all B² pairs (its ``batch_cost`` is not used: the radial
bound ignores which atom is which) — the equivariant OT flow matching of Klein, Krämer, Noé for
alanine dipeptide. A bond-graph (harmonic) base is rotation-invariant, so both stay valid on it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from molsample.analysis.geometry import assign_particles, kabsch, principal_frames
from molsample.errors import ConfigError, ShapeError

__all__ = ["COUPLINGS", "BATCH_COSTS", "Coupling", "PAIRWISE_COUPLINGS", "PERMUTING_COUPLINGS", "TILT_COUPLINGS",
           "align_pairs", "couple", "ot_assignment", "permutes_particles", "radial_cost", "register_coupling",
           "transport_cost"]

#: ``pair(x0, x1, batch_cost=, permute=) -> (x0', x1)``, both ``(B, n, d)``
PairFn = Callable[..., "tuple[Tensor, Tensor]"]


@dataclasses.dataclass(frozen=True)
class Coupling:
    """A registered coupling.

    Attributes:
        name: the value of ``--coupling`` and ``FlowMatchingConfig.coupling``.
        pair: ``pair(x0, x1, batch_cost=, permute=) -> (x0', x1)`` (called without gradients).
        centred: needs configurations with zero centre of mass (it rotates about the centroid).
        permutes: permutes the particles of x0 when they are interchangeable (:func:`permutes_particles`);
            for molecules it rotates only.
        pairwise: acts pair by pair (the others assign partners over the whole minibatch), so that a
            shard of a minibatch can be coupled on its own.
        keeps_tilt: tilting the coupling by a reward of x1 gives the same coupling of the tilted law,
            so the tilt may pair its (x0, x1) so (the Tilt Matching fixed point, docs/couplings.md).
    """

    name: str
    pair: PairFn
    centred: bool = False
    permutes: bool = False
    pairwise: bool = False
    keeps_tilt: bool = False


#: Couplings by name, in registration order (see :func:`register_coupling`).
COUPLINGS: dict[str, Coupling] = {}


def register_coupling(name: str, *, centred: bool = False, permutes: bool = False, pairwise: bool = False,
                      keeps_tilt: bool = False) -> Callable[[PairFn], PairFn]:
    """Decorator: register ``pair(x0, x1, *, batch_cost, permute) -> (x0', x1)`` as coupling ``name``
    with its capabilities (:class:`Coupling`); ``--coupling`` and the config checks read them."""
    def deco(pair: PairFn) -> PairFn:
        if name in COUPLINGS:
            raise ValueError(f"coupling {name!r} is registered twice")
        COUPLINGS[name] = Coupling(name, pair, centred, permutes, pairwise, keeps_tilt)
        return pair
    return deco


def permutes_particles(spec: dict, base: object) -> bool:
    """Whether the symmetry-aware couplings may permute particles: the net treats them as
    identical (no ``atom_types`` in its ``spec``) and the ``base`` is permutation-invariant (not a
    bond-graph prior). Molecules get ``False``: their couplings rotate only."""
    return spec.get("atom_types") is None and bool(getattr(base, "permutation_invariant", True))


def _check(x0: Tensor, x1: Tensor) -> None:
    if x0.dim() != 3 or x0.shape != x1.shape:
        raise ShapeError(f"x0 and x1 must both have shape (batch, n, d); got {tuple(x0.shape)} and {tuple(x1.shape)}")


def ot_assignment(cost: Tensor) -> Tensor:
    """Indices σ ``(B,)`` minimizing Σ_j cost[σ(j), j] for a ``(B, B)`` cost (rows: x0, columns: x1)."""
    from scipy.optimize import linear_sum_assignment

    c = cost.detach().to("cpu", torch.float64).numpy()
    rows, cols = linear_sum_assignment(c.T)  # row j of cᵀ is x1_j
    sigma = np.empty(c.shape[0], dtype=np.int64)
    sigma[rows] = cols
    return torch.from_numpy(sigma).to(cost.device)


def radial_cost(x0: Tensor, x1: Tensor) -> Tensor:
    """``(B, B)`` lower bound of the aligned squared distance between every x0_i and x1_j.

    Σ_k (r0_(k) − r1_(k))² over the sorted distances r from the centroid: for any rotation R and
    permutation π, |x1_k − R x0_π(k)| ≥ | |x1_k| − |x0_π(k)| |, and sorting solves the 1-D
    assignment. Invariant under rotations and permutations of either configuration.
    """
    r0 = torch.sort((x0 - x0.mean(1, keepdim=True)).norm(dim=2), dim=1).values
    r1 = torch.sort((x1 - x1.mean(1, keepdim=True)).norm(dim=2), dim=1).values
    return torch.cdist(r0, r1).pow(2)


def _proper_flips(d: int, dtype: torch.dtype) -> list[Tensor]:
    """The diagonal sign flips with determinant +1 (4 in 3-D, 2 in 2-D)."""
    out = []
    for bits in range(2**d):
        s = torch.tensor([-1.0 if (bits >> k) & 1 else 1.0 for k in range(d)], dtype=dtype)
        if s.prod() > 0:
            out.append(torch.diag(s))
    return out


def align_pairs(x0: Tensor, x1: Tensor, *, permute: bool = True, n_iter: int = 2,
                n_starts: int | None = None) -> tuple[Tensor, Tensor]:
    """Rotate (proper rotations) and permute each x0 onto its partner x1, batched over pairs.

    Args:
        x0, x1: ``(B, n, d)`` configurations (centred here).
        permute: also permute the particles of x0 (identical particles); without it one Kabsch
            rotation per pair, the exact optimum (``n_iter`` and ``n_starts`` are not used).
        n_iter: alternations of particle assignment and Kabsch per start.
        n_starts: how many of the principal-axis starts to try (default all: 4 in 3-D).
    Returns:
        ``(x0_aligned (B, n, d), squared_distance (B,))``: the centred x0 moved by the best
        rotation/permutation found, and Σ_i |x0_aligned_i − x1_i|² (length unit²) for centred x1.
        The joint minimization is non-convex; this is a local optimum from each start.
    """
    _check(x0, x1)
    device, dtype = x0.device, x0.dtype
    a = (x1 - x1.mean(1, keepdim=True)).detach().to("cpu")
    b = (x0 - x0.mean(1, keepdim=True)).detach().to("cpu")
    if a.dtype not in (torch.float32, torch.float64):
        a, b = a.double(), b.double()
    if not permute:  # rotations alone: Kabsch is the exact optimum, no starts needed
        y = b @ kabsch(a, b, False).transpose(1, 2)
        cost = ((a - y) ** 2).sum(dim=(1, 2))
        return y.to(device=device, dtype=dtype), cost.to(device=device, dtype=dtype)
    bsz, n, d = a.shape
    fa, fb = principal_frames(a, proper=True), principal_frames(b, proper=True)
    starts = _proper_flips(d, a.dtype)[: n_starts or None]
    best = torch.full((bsz,), math.inf, dtype=a.dtype)
    best_x = b.clone()
    ident = torch.arange(n).expand(bsz, n)
    for q in starts:
        r = fa @ q @ fb.transpose(1, 2)  # takes b's principal frame onto a's, up to the flip q
        bp = b
        for _ in range(max(n_iter, 1)):
            perm = assign_particles(a, b @ r.transpose(1, 2)) if permute else ident
            bp = torch.gather(b, 1, perm[:, :, None].expand_as(b))
            r = kabsch(a, bp, False)
        y = bp @ r.transpose(1, 2)
        cost = ((a - y) ** 2).sum(dim=(1, 2))
        better = cost < best
        best = torch.where(better, cost, best)
        best_x[better] = y[better]
    return best_x.to(device=device, dtype=dtype), best.to(device=device, dtype=dtype)


def transport_cost(x0: Tensor, x1: Tensor) -> Tensor:
    """``(B,)`` squared Euclidean distances Σ_i |x0_i − x1_i|² of the pairs as given."""
    _check(x0, x1)
    return ((x0 - x1) ** 2).sum(dim=(1, 2))


def _aligned_batch_cost(x0: Tensor, x1: Tensor, permute: bool = True) -> Tensor:
    """``(B, B)`` aligned squared distances: with ``permute`` one start and one assignment +
    Kabsch each, without it the exact Kabsch distance."""
    bsz = x0.shape[0]
    i0 = torch.arange(bsz).repeat_interleave(bsz)
    i1 = torch.arange(bsz).repeat(bsz)
    _, cost = align_pairs(x0[i0], x1[i1], n_iter=1, n_starts=1, permute=permute)
    return cost.reshape(bsz, bsz)


#: batch costs ``(x0, x1) -> (B, B)`` of the ``"equivariant-ot"`` coupling for identical particles
BATCH_COSTS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"radial": radial_cost, "aligned": _aligned_batch_cost}


@register_coupling("independent", pairwise=True, keeps_tilt=True)
def _independent(x0: Tensor, x1: Tensor, *, batch_cost: str, permute: bool) -> tuple[Tensor, Tensor]:
    """The pairs as drawn."""
    return x0, x1


@register_coupling("ot")
def _ot(x0: Tensor, x1: Tensor, *, batch_cost: str, permute: bool) -> tuple[Tensor, Tensor]:
    """The batch assignment minimizing Σ |x0_σ(j) − x1_j|²."""
    sigma = ot_assignment(torch.cdist(x0.flatten(1), x1.flatten(1)).pow(2))
    return x0[sigma], x1


@register_coupling("equivariant-ot", centred=True, permutes=True)
def _equivariant_ot(x0: Tensor, x1: Tensor, *, batch_cost: str, permute: bool) -> tuple[Tensor, Tensor]:
    """The batch assignment on a rotation- (and permutation-) invariant cost, then each pair aligned."""
    cost = BATCH_COSTS[batch_cost](x0, x1) if permute else _aligned_batch_cost(x0, x1, permute=False)
    return align_pairs(x0[ot_assignment(cost)], x1, permute=permute)[0], x1


@register_coupling("aligned", centred=True, permutes=True, pairwise=True, keeps_tilt=True)
def _aligned(x0: Tensor, x1: Tensor, *, batch_cost: str, permute: bool) -> tuple[Tensor, Tensor]:
    """Independent pairs, each x0 aligned to its x1."""
    return align_pairs(x0, x1, permute=permute)[0], x1


#: couplings that permute the particles of the base samples when the particles are interchangeable
PERMUTING_COUPLINGS = tuple(name for name, c in COUPLINGS.items() if c.permutes)
#: couplings that act pair by pair, so that a shard of a minibatch can be coupled on its own
PAIRWISE_COUPLINGS = tuple(name for name, c in COUPLINGS.items() if c.pairwise)
#: couplings of the tilt's (x0, x1) pairs that keep the ITM fixed point (docs/couplings.md)
TILT_COUPLINGS = tuple(name for name, c in COUPLINGS.items() if c.keeps_tilt)


def couple(kind: str, x0: Tensor, x1: Tensor, *, batch_cost: str = "radial",
           permute: bool = True) -> tuple[Tensor, Tensor]:
    """Pair a minibatch: returns ``(x0', x1)`` with x0' the base samples re-paired (and for the
    symmetry-aware couplings aligned) to the unchanged ``x1``; both ``(B, n, d)``.

    Deterministic (no random draws), so a seeded training run stays reproducible.

    Args:
        kind: one of :data:`COUPLINGS`.
        x0: ``(B, n, d)`` base samples; x1: ``(B, n, d)`` data samples (centred for the
            symmetry-aware couplings).
        batch_cost: batch cost of ``"equivariant-ot"`` with ``permute`` (:data:`BATCH_COSTS`).
        permute: the particles are interchangeable (:func:`permutes_particles`); ``False`` for
            molecules: ``"aligned"`` and ``"equivariant-ot"`` then rotate only.
    Raises:
        ConfigError: unknown ``kind`` or ``batch_cost``; uncentred configurations for the
            symmetry-aware couplings.
    """
    if kind not in COUPLINGS:
        raise ConfigError(f"unknown coupling {kind!r}; choose one of {', '.join(COUPLINGS)}")
    if batch_cost not in BATCH_COSTS:
        raise ConfigError(f"unknown batch_cost {batch_cost!r}; choose one of {', '.join(BATCH_COSTS)}")
    _check(x0, x1)
    coupling = COUPLINGS[kind]
    if coupling.centred:
        for name, x in (("x0", x0), ("x1", x1)):
            if float(x.mean(1).abs().max()) > 1e-4 * (1.0 + float(x.abs().max())):
                raise ConfigError(f"coupling {kind!r} needs centred configurations ({name} has a centre of mass "
                                  "off 0): use it with a CoM-free base (particle systems), or use 'ot'")
    with torch.no_grad():
        return coupling.pair(x0, x1, batch_cost=batch_cost, permute=permute)
