"""Metrics that judge a sampler against reference samples.

Every metric takes numpy arrays or torch tensors and returns a Python float, and takes
optional non-negative weight vectors (normalized internally) so that importance-reweighted
samples are judged as the distribution they represent. Samples whose value is non-finite get
weight 0 (the convention of the weights module: non-finite energies carry no weight).

- :func:`energy_w1`, :func:`energy_w2`: exact 1-D Wasserstein distances between energy
  distributions (via quantile functions; sorted samples for equal, unweighted sets).
- :func:`distance_histogram`, :func:`distance_w1`, :func:`distance_tv`: the distribution of
  all interatomic distances (unique pairs i<j, pooled over configurations).
- :func:`sliced_wasserstein`: the ITM tutorial's sliced 2-Wasserstein distance.
- :func:`equivariant_w2`: 2-Wasserstein distance between configuration sets with the cost
  minimized over rotations (Kabsch) and particle permutations (linear assignment).
"""

from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch
from torch import Tensor

from molsample.analysis.geometry import assign_particles, kabsch, principal_frames, random_orthogonal
from molsample.errors import ConfigError, ShapeError

ArrayLike = Union[np.ndarray, Tensor, list, tuple]

__all__ = [
    "distance_histogram",
    "distance_tv",
    "distance_w1",
    "energy_w1",
    "energy_w2",
    "equivariant_w2",
    "interatomic_distances",
    "sliced_wasserstein",
    "wasserstein_1d",
]


# --------------------------------------------------------------------------- input handling


def _t(a: ArrayLike) -> Tensor:
    """float64 CPU tensor (no grad)."""
    if isinstance(a, Tensor):
        return a.detach().to(device="cpu", dtype=torch.float64)
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def _weights(w: ArrayLike | None, n: int, name: str) -> Tensor:
    """Weights ``(n,)`` >= 0 (not yet normalized); ``None`` gives ones."""
    if w is None:
        return torch.ones(n, dtype=torch.float64)
    wt = _t(w).reshape(-1)
    if wt.numel() != n:
        raise ShapeError(f"{name} has {wt.numel()} entries but there are {n} samples; pass one weight per sample")
    wt = torch.where(torch.isfinite(wt), wt, torch.zeros_like(wt))
    if (wt < 0).any():
        raise ConfigError(f"{name} has negative entries (min {wt.min().item():.3g}); pass weights >= 0, e.g. exp(logw)")
    return wt


def _normalize(w: Tensor, name: str) -> Tensor:
    s = w.sum()
    if not s > 0:
        raise ConfigError(f"{name}: all weights are zero (or all samples non-finite); nothing to compare")
    return w / s


def _flat_samples(x: ArrayLike, name: str) -> Tensor:
    xt = _t(x)
    if xt.dim() == 1:
        xt = xt[:, None]
    if xt.dim() < 2 or xt.shape[0] == 0:
        raise ShapeError(f"{name} must be (n_samples, ...) with n_samples > 0, got shape {tuple(xt.shape)}")
    return xt.reshape(xt.shape[0], -1)


def _particles(x: ArrayLike, name: str) -> Tensor:
    xt = _t(x)
    if xt.dim() != 3:
        raise ShapeError(f"{name} must be (n_samples, n_particles, dim), got shape {tuple(xt.shape)}")
    return xt


# --------------------------------------------------------------------------- 1-D Wasserstein


def _wpp_1d(a: Tensor, b: Tensor, wa: Tensor, wb: Tensor, p: float) -> Tensor:
    """W_p^p between weighted 1-D empirical measures, batched over rows.

    Args:
        a: ``(P, n_a)``, b: ``(P, n_b)`` values (finite); wa ``(n_a,)``, wb ``(n_b,)`` normalized weights.
    Returns:
        ``(P,)`` ∫_0^1 |Q_a(u) − Q_b(u)|^p du, exact for the step quantile functions.
    """
    sa, ia = torch.sort(a, dim=1)
    sb, ib = torch.sort(b, dim=1)
    ca = torch.cumsum(wa[ia], dim=1)
    cb = torch.cumsum(wb[ib], dim=1)
    ca = ca / ca[:, -1:]
    cb = cb / cb[:, -1:]
    u = torch.sort(torch.cat([ca, cb], dim=1), dim=1).values
    u_prev = torch.cat([torch.zeros_like(u[:, :1]), u[:, :-1]], dim=1)
    du = (u - u_prev).clamp_min(0.0)
    mid = 0.5 * (u + u_prev)
    qa = sa.gather(1, torch.searchsorted(ca.contiguous(), mid.contiguous()).clamp(max=sa.shape[1] - 1))
    qb = sb.gather(1, torch.searchsorted(cb.contiguous(), mid.contiguous()).clamp(max=sb.shape[1] - 1))
    return (du * (qa - qb).abs() ** p).sum(dim=1)


def wasserstein_1d(
    a: ArrayLike, b: ArrayLike, w_a: ArrayLike | None = None, w_b: ArrayLike | None = None, p: float = 1.0
) -> float:
    """Exact p-Wasserstein distance between two weighted 1-D samples.

    W_p = (∫_0^1 |Q_a(u) − Q_b(u)|^p du)^{1/p} with Q the (weighted) empirical quantile functions;
    for equal-size unweighted samples this is the mean over sorted pairs.
    """
    at, bt = _t(a).reshape(-1), _t(b).reshape(-1)
    wa, wb = _weights(w_a, at.numel(), "w_a"), _weights(w_b, bt.numel(), "w_b")
    wa = torch.where(torch.isfinite(at), wa, torch.zeros_like(wa))
    wb = torch.where(torch.isfinite(bt), wb, torch.zeros_like(wb))
    ka, kb = wa > 0, wb > 0
    at, wa = at[ka], _normalize(wa[ka], "w_a")
    bt, wb = bt[kb], _normalize(wb[kb], "w_b")
    if w_a is None and w_b is None and at.numel() == bt.numel():
        wpp = ((torch.sort(at).values - torch.sort(bt).values).abs() ** p).mean()
    else:
        wpp = _wpp_1d(at[None], bt[None], wa, wb, p)[0]
    return float(wpp ** (1.0 / p))


def energy_w1(e_a: ArrayLike, e_b: ArrayLike, w_a: ArrayLike | None = None, w_b: ArrayLike | None = None) -> float:
    """1-Wasserstein distance between two energy distributions (in the energy unit).

    Args:
        e_a, e_b: ``(n_a,)``, ``(n_b,)`` energies; non-finite ones get weight 0.
        w_a, w_b: optional importance weights (not log-weights).
    """
    return wasserstein_1d(e_a, e_b, w_a, w_b, p=1.0)


def energy_w2(e_a: ArrayLike, e_b: ArrayLike, w_a: ArrayLike | None = None, w_b: ArrayLike | None = None) -> float:
    """2-Wasserstein distance between two energy distributions (in the energy unit)."""
    return wasserstein_1d(e_a, e_b, w_a, w_b, p=2.0)


# --------------------------------------------------------------------------- interatomic distances


def interatomic_distances(x: ArrayLike) -> Tensor:
    """Distances of all unique pairs i<j, ``(n_samples, n(n−1)/2)`` float64, from ``x: (n_samples, n, dim)``."""
    xt = _particles(x, "x")
    n = xt.shape[1]
    if n < 2:
        raise ShapeError(f"interatomic distances need at least 2 particles, got x of shape {tuple(xt.shape)}")
    i, j = torch.triu_indices(n, n, offset=1)
    return (xt[:, i, :] - xt[:, j, :]).norm(dim=-1)


def _pooled_distances(x: ArrayLike, w: ArrayLike | None, name: str) -> tuple[Tensor, Tensor]:
    d = interatomic_distances(x)
    wt = _weights(w, d.shape[0], name)
    wt = torch.where(torch.isfinite(d).all(dim=1), wt, torch.zeros_like(wt))
    wp = wt[:, None].expand_as(d).reshape(-1)
    dp = d.reshape(-1)
    keep = wp > 0
    return dp[keep], wp[keep]


def distance_histogram(
    x: ArrayLike,
    bins: int = 100,
    range: tuple[float, float] | None = None,
    weights: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalized histogram of all interatomic distances.

    Args:
        x: ``(n_samples, n_particles, dim)``.
        bins: number of bins; range: ``(lo, hi)`` (default: min and max of the distances).
        weights: per-sample weights (each pair of a sample carries its sample's weight).
    Returns:
        ``(density (bins,), edges (bins + 1,))``; the density integrates to the fraction of
        weight inside ``range`` (1 with the default range).
    """
    d, w = _pooled_distances(x, weights, "weights")
    if d.numel() == 0:
        raise ConfigError("distance_histogram: all weights are zero (or all samples non-finite)")
    lo, hi = range if range is not None else (float(d.min()), float(d.max()))
    if not hi > lo:
        hi = lo + 1.0
    counts, edges = np.histogram(d.numpy(), bins=bins, range=(lo, hi), weights=w.numpy())
    widths = np.diff(edges)
    return counts / (w.sum().item() * widths), edges


def distance_w1(
    x_a: ArrayLike, x_b: ArrayLike, w_a: ArrayLike | None = None, w_b: ArrayLike | None = None
) -> float:
    """1-Wasserstein distance between the interatomic-distance distributions (length unit)."""
    da, wa = _pooled_distances(x_a, w_a, "w_a")
    db, wb = _pooled_distances(x_b, w_b, "w_b")
    if da.numel() == 0 or db.numel() == 0:
        raise ConfigError("distance_w1: all weights are zero (or all samples non-finite)")
    return wasserstein_1d(da, db, wa, wb, p=1.0)


def distance_tv(
    x_a: ArrayLike,
    x_b: ArrayLike,
    bins: int = 100,
    range: tuple[float, float] | None = None,
    w_a: ArrayLike | None = None,
    w_b: ArrayLike | None = None,
) -> float:
    """Total variation ½ Σ|p_a − p_b| between interatomic-distance histograms, in [0, 1].

    Both histograms use the same bins (default range: min to max over both sets); mass
    outside a given ``range`` counts in an underflow and an overflow bin.
    """
    da, wa = _pooled_distances(x_a, w_a, "w_a")
    db, wb = _pooled_distances(x_b, w_b, "w_b")
    if da.numel() == 0 or db.numel() == 0:
        raise ConfigError("distance_tv: all weights are zero (or all samples non-finite)")
    if range is None:
        lo, hi = float(min(da.min(), db.min())), float(max(da.max(), db.max()))
    else:
        lo, hi = float(range[0]), float(range[1])
    if not hi > lo:
        hi = lo + 1.0
    edges = np.concatenate([[-np.inf], np.linspace(lo, hi, bins + 1), [np.inf]])
    pa, _ = np.histogram(da.numpy(), bins=edges, weights=wa.numpy())
    pb, _ = np.histogram(db.numpy(), bins=edges, weights=wb.numpy())
    return float(0.5 * np.abs(pa / pa.sum() - pb / pb.sum()).sum())


# --------------------------------------------------------------------------- sliced Wasserstein


def sliced_wasserstein(
    a: ArrayLike,
    b: ArrayLike,
    n_projections: int = 128,
    seed: int = 0,
    w_a: ArrayLike | None = None,
    w_b: ArrayLike | None = None,
) -> float:
    """Sliced 2-Wasserstein distance (the ITM tutorial's definition).

    Samples are flattened to vectors ``(n, D)``, projected on ``n_projections`` random unit
    directions (``torch.randn`` from a generator seeded with ``seed``, float32, normalized),
    and the distance is sqrt(mean over projections of W2² between the projections). For
    equal-size unweighted sets this is the tutorial's RMS over sorted projections; for weights
    or unequal sizes the 1-D W2 uses the weighted quantile functions.

    Args:
        a, b: ``(n_a, ...)``, ``(n_b, ...)`` samples with the same trailing size.
        w_a, w_b: optional weights per sample.
    """
    at, bt = _flat_samples(a, "a"), _flat_samples(b, "b")
    if at.shape[1] != bt.shape[1]:
        raise ShapeError(f"a and b have different sample sizes {at.shape[1]} and {bt.shape[1]}; compare like with like")
    if n_projections < 1:
        raise ConfigError(f"n_projections must be >= 1, got {n_projections}")
    gen = torch.Generator().manual_seed(int(seed))
    directions = torch.randn(n_projections, at.shape[1], generator=gen, dtype=torch.float32)
    directions = (directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-12)).to(torch.float64)
    fa, fb = torch.isfinite(at).all(dim=1), torch.isfinite(bt).all(dim=1)
    if w_a is None and w_b is None and at.shape[0] == bt.shape[0] and fa.all() and fb.all():
        pa = torch.sort(at @ directions.T, dim=0).values
        pb = torch.sort(bt @ directions.T, dim=0).values
        return float(torch.sqrt(((pa - pb) ** 2).mean()))
    wa = _weights(w_a, at.shape[0], "w_a") * fa
    wb = _weights(w_b, bt.shape[0], "w_b") * fb
    ka, kb = wa > 0, wb > 0
    at, wa = at[ka], _normalize(wa[ka], "w_a")
    bt, wb = bt[kb], _normalize(wb[kb], "w_b")
    w2sq = _wpp_1d((at @ directions.T).T, (bt @ directions.T).T, wa, wb, 2.0)
    return float(torch.sqrt(w2sq.mean()))


# --------------------------------------------------------------------------- equivariant W2


def _start_rotations(d: int, reflections: bool, n_random: int, seed: int, dtype: torch.dtype) -> list[Tensor]:
    """Fixed relative rotations Q: the axis sign flips (det +1 unless ``reflections``) and random ones."""
    out = []
    for bits in range(2**d):
        s = torch.tensor([-1.0 if (bits >> k) & 1 else 1.0 for k in range(d)], dtype=dtype)
        if reflections or s.prod() > 0:
            out.append(torch.diag(s))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n_random):
        out.append(random_orthogonal(d, gen, reflection=None if reflections else False, dtype=dtype))
    return out


def aligned_squared_distance(
    a: Tensor, b: Tensor, *, reflections: bool = False, n_iter: int = 2, n_random_rotations: int = 8, seed: int = 0
) -> Tensor:
    """min over rotations R and permutations π of Σ_i |a_i − R b_{π(i)}|², batched over pairs.

    Args:
        a, b: ``(B, n, d)`` configurations (centred here).
        reflections: also allow improper rotations (det −1).
        n_iter: alternations of linear assignment and Kabsch per starting rotation.
        n_random_rotations: random starting rotations (relative to the principal axes) added to
            the axis-flip ones.
    Returns:
        ``(B,)`` squared distances (length unit²). The joint minimization is non-convex; it
        alternates assignment and Kabsch from several starts and keeps the best.
    """
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    d = a.shape[2]
    fa, fb = principal_frames(a, proper=not reflections), principal_frames(b, proper=not reflections)
    best = torch.full((a.shape[0],), math.inf, dtype=a.dtype)
    for q in _start_rotations(d, reflections, n_random_rotations, seed, a.dtype):
        r = fa @ q @ fb.transpose(1, 2)  # maps b's principal frame onto a's, up to q
        for _ in range(max(n_iter, 1)):
            perm = assign_particles(a, b @ r.transpose(1, 2))
            bp = torch.gather(b, 1, perm[:, :, None].expand_as(b))
            r = kabsch(a, bp, reflections)
        cost = ((a - bp @ r.transpose(1, 2)) ** 2).sum(dim=(1, 2))
        best = torch.minimum(best, cost)
    return best


def equivariant_w2(
    x_a: ArrayLike,
    x_b: ArrayLike,
    w_a: ArrayLike | None = None,
    w_b: ArrayLike | None = None,
    *,
    reflections: bool = False,
    n_iter: int = 2,
    n_random_rotations: int = 8,
    seed: int = 0,
) -> float:
    """2-Wasserstein distance between configuration sets, invariant to E(3) and permutations.

    The ground cost between two configurations is min over translations, rotations (Kabsch)
    and particle permutations (linear assignment) of Σ_i |a_i − R b_{π(i)}|²; the transport
    plan between the sets is an optimal assignment (equal sizes, no weights) or the exact
    linear program (weights or unequal sizes). Cost: n_a · n_b small assignment problems per
    start and iteration — subsample to a few hundred configurations per set.

    Args:
        x_a, x_b: ``(n_a, n, d)``, ``(n_b, n, d)``.
        w_a, w_b: optional weights per configuration.
        reflections: treat mirror images as identical (off by default: chirality matters).
    Returns:
        W2 in the length unit (square root of the expected aligned squared distance between
        whole configurations).
    """
    from scipy.optimize import linear_sum_assignment, linprog

    a, b = _particles(x_a, "x_a"), _particles(x_b, "x_b")
    if a.shape[1:] != b.shape[1:]:
        raise ShapeError(f"x_a and x_b differ in (n_particles, dim): {tuple(a.shape[1:])} vs {tuple(b.shape[1:])}")
    wa = _weights(w_a, a.shape[0], "w_a") * torch.isfinite(a).flatten(1).all(1)
    wb = _weights(w_b, b.shape[0], "w_b") * torch.isfinite(b).flatten(1).all(1)
    ka, kb = wa > 0, wb > 0
    a, wa = a[ka], _normalize(wa[ka], "w_a")
    b, wb = b[kb], _normalize(wb[kb], "w_b")
    na, nb = a.shape[0], b.shape[0]
    ia = torch.arange(na).repeat_interleave(nb)
    ib = torch.arange(nb).repeat(na)
    cost = aligned_squared_distance(
        a[ia], b[ib], reflections=reflections, n_iter=n_iter, n_random_rotations=n_random_rotations, seed=seed
    ).reshape(na, nb).numpy()
    if w_a is None and w_b is None and na == nb:
        r, c = linear_sum_assignment(cost)
        return float(math.sqrt(max(cost[r, c].mean(), 0.0)))
    # exact optimal transport: min Σ π_ij C_ij, rows sum to w_a, columns to w_b
    from scipy.sparse import coo_matrix, vstack

    rows = coo_matrix((np.ones(na * nb), (np.repeat(np.arange(na), nb), np.arange(na * nb))), shape=(na, na * nb))
    cols = coo_matrix((np.ones(na * nb), (np.tile(np.arange(nb), na), np.arange(na * nb))), shape=(nb, na * nb))
    res = linprog(
        cost.reshape(-1),
        A_eq=vstack([rows, cols]).tocsr(),
        b_eq=np.concatenate([wa.numpy(), wb.numpy()]),
        bounds=(0, None),
        method="highs",
    )
    if res.status != 0:  # pragma: no cover - HiGHS solves these bounded feasible problems
        raise RuntimeError(f"optimal transport LP failed: {res.message}")
    return float(math.sqrt(max(res.fun, 0.0)))
