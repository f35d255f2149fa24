r"""The dense-graph convolution of the e3nn velocity field and the edge layout it works on.

A fully connected graph over n particles keeps, for every receiver i, the n − 1 senders j ≠ i in
increasing j: edge data have shape ``(B, n, n−1, ·)`` (:func:`senders` lays node data out so,
:func:`scatter_senders` puts edge data back on the n × n grid). :class:`Convolution` is the
channel-wise tensor product Σ_{j≠i} TP_uvu(h_j, Y(r̂_ij); w(d_ij)) / √(n − 1) of
:class:`~molsample.nets.e3nn_net.E3NNVelocity`, with its forward-mode derivatives along all 3n
coordinate directions (:meth:`Convolution.tangent`) for exact divergences.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from molsample.errors import ConfigError

__all__ = ["Convolution", "load_e3nn", "scatter_senders", "senders"]


def load_e3nn() -> tuple[Any, Any, Any]:
    """e3nn's ``o3``, ``nn`` and ``soft_one_hot_linspace``; a one-line error naming the fix when it is missing."""
    try:
        from e3nn import nn as enn
        from e3nn import o3
        from e3nn.math import soft_one_hot_linspace
    except ImportError as exc:  # pragma: no cover - e3nn is a dependency
        raise ConfigError("the 'e3nn' net needs the e3nn package; install it with `pip install e3nn`") from exc
    return o3, enn, soft_one_hot_linspace


class Convolution(nn.Module):
    r"""Σ_{j≠i} TP_uvu(h_j, Y(r̂_ij); w(d_ij)) / √(n − 1) on the dense graph.

    The tensor product is e3nn's ``TensorProduct`` with ``uvu`` paths (input irrep (u × l₁) ⊗
    spherical harmonic l₂ → u × l_out, one weight per channel u and edge) and component
    normalization: for a path p,

        out_i[u, k] = Σ_j w_ij[p, u] Σ_{a,b} √(2l_out + 1) · C^{l₁ l₂ l_out}_{a b k} h_j[u, a] Y_ij[b]

    with C = :func:`e3nn.o3.wigner_3j` (tests check it against ``o3.TensorProduct``). It is computed
    without materializing per-edge messages: G_ij[a, k] = Σ_b C_{abk} Y_ij[b] is formed per
    (l₁, l₂, l_out), then out_i = Σ_{j, a} (w_ij h_j)[u, a] G_ij[a, k] is one batched matrix product
    per path that contracts neighbours and components together — dense GEMMs instead of the
    per-edge 3 × 3 products of a generic sparse tensor product, forward, backward and JVP alike.
    """

    def __init__(self, irreps_in, irreps_sh, lmax_out: int | None, keep_l: set[int] | None,
                 n_basis: int, radial_hidden: int) -> None:
        super().__init__()
        o3, enn, _ = load_e3nn()
        irreps_in, irreps_sh = o3.Irreps(irreps_in), o3.Irreps(irreps_sh)
        paths, mid = [], []
        for i, (mul, ir_in) in enumerate(irreps_in):
            for j, (_, ir_sh) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if lmax_out is not None and ir_out.l > lmax_out:
                        continue
                    if keep_l is not None and ir_out.l not in keep_l:
                        continue
                    paths.append((i, j, ir_out.l))
                    mid.append((mul, ir_out))
        if not paths:
            raise ConfigError("E3NNVelocity: no tensor-product path reaches the requested output; raise lmax")
        irreps_mid, perm, _ = o3.Irreps(mid).sort()
        self.irreps_in, self.irreps_sh, self.irreps_out = irreps_in, irreps_sh, irreps_mid
        self.paths = paths
        self.order = [perm.index(k) for k in range(len(paths))]  # output block k is path order[k]
        self.mul = [irreps_in[i].mul for i, _, _ in paths]
        self.weight_numel = sum(self.mul)
        # Clebsch-Gordan blocks √(2l_out + 1)·C^{l₁ l₂ l_out}, kept in float64 (constants, not state)
        self._cg: dict[tuple[int, int, int], Tensor] = {}
        for i, j, l_out in paths:
            key = (irreps_in[i].ir.l, irreps_sh[j].ir.l, l_out)
            if key not in self._cg:
                self._cg[key] = o3.wigner_3j(*key, dtype=torch.float64) * math.sqrt(2 * l_out + 1)
        self.radial = enn.FullyConnectedNet([n_basis, radial_hidden, self.weight_numel], act=F.silu)

    def _sender_parts(self, h: Tensor) -> list[Tensor]:
        """Per input irrep, the senders' features with components before channels: ``(B, n, n−1, A, u)``."""
        B, n = h.shape[:2]
        return [senders(blk.reshape(B, n, mul, ir.dim).transpose(-1, -2).reshape(B, n, ir.dim * mul))
                .reshape(B, n, n - 1, ir.dim, mul)
                for blk, (mul, ir) in zip(h.split([mi.dim for mi in self.irreps_in], dim=-1), self.irreps_in)]

    def _key(self, i: int, j: int, l_out: int) -> tuple[int, int, int]:
        return (self.irreps_in[i].ir.l, self.irreps_sh[j].ir.l, l_out)

    def _g(self, y: Tensor, key: tuple[int, int, int]) -> Tensor:
        """G[a, k] = Σ_b C_{abk} Y[b] for ``y: (..., S)`` → ``(..., A, K)``."""
        cg = self._cg[key].to(dtype=y.dtype, device=y.device)
        return torch.einsum("...s,ask->...ak", y, cg)

    def forward(self, h: Tensor, sh: Tensor, emb: Tensor) -> Tensor:
        """``h: (B, n, dim_in)``, ``sh``/``emb``: ``(B, n, n−1, ·)`` edge features → ``(B, n, dim_mid)``."""
        B, n = h.shape[:2]
        m = n - 1
        h_parts = self._sender_parts(h)
        y_parts = sh.split([mi.dim for mi in self.irreps_sh], dim=-1)
        w_parts = self.radial(emb).split(self.mul, dim=-1)
        g_cache: dict[tuple[int, int, int], Tensor] = {}
        outs = []
        for (i, j, l_out), w in zip(self.paths, w_parts):
            key = self._key(i, j, l_out)
            if key not in g_cache:
                g_cache[key] = self._g(y_parts[j], key)
            g = g_cache[key]  # (B, n, n−1, A, K)
            A, K = g.shape[3], g.shape[4]
            left = h_parts[i] * w[..., None, :]  # (B, n, n−1, A, u)
            u = left.shape[-1]
            # out_i[k, u] = Σ_{j, a} G_ij[a, k] (w_ij h_j)[a, u]: one matrix product per receiver
            out = torch.bmm(g.reshape(B * n, m * A, K).transpose(1, 2), left.reshape(B * n, m * A, u))
            outs.append(out.transpose(1, 2).reshape(B, n, u * K))
        return torch.cat([outs[k] for k in self.order], dim=-1) / math.sqrt(m)

    def tangent(self, h: Tensor, dh: Tensor | None, sh: Tensor, emb: Tensor, dsh: Tensor,
                demb: Tensor) -> tuple[Tensor, Tensor]:
        r"""The output and its derivatives along all 3n coordinate directions (forward mode).

        Args:
            h: ``(B, n, dim_in)`` node features; ``dh``: their tangents ``(B, n, T, dim_in)`` for the
                T = 3n directions (p, c) ↦ T-index 3p + c, or ``None`` when they are zero.
            sh, emb: edge features ``(B, n, n−1, ·)``; ``dsh``, ``demb``: ``(3, B, n, n−1, ·)``, their
                derivatives along r_ij ↦ r_ij + e_c.
        Returns:
            ``(out (B, n, dim_mid), dout (B, n, T, dim_mid))``.

        Direction (p, c) moves x_p along e_c, so r_ij changes by (δ_ip − δ_jp) e_c: the edge terms
        (through Y and w) reach receiver p from all its edges and every other receiver i from its
        edge to p; the node term (through h_j) is the convolution of ``dh`` with fixed Y and w.
        """
        B, n = h.shape[:2]
        m, T = n - 1, 3 * n
        h_parts = self._sender_parts(h)
        y_parts = sh.split([mi.dim for mi in self.irreps_sh], dim=-1)
        dy_parts = dsh.split([mi.dim for mi in self.irreps_sh], dim=-1)
        w_all = self.radial(emb)
        dw_all = torch.stack([torch.func.jvp(self.radial, (emb,), (demb[c],))[1] for c in range(3)])
        w_parts = w_all.split(self.mul, dim=-1)
        dw_parts = dw_all.split(self.mul, dim=-1)
        dh_parts = None
        if dh is not None:
            # per input irrep, (B, n, T, u, A) → (B·u, T, n·A): the directions as rows, senders as columns
            dh_parts = [blk.reshape(B, n, T, mul, ir.dim).permute(0, 3, 2, 1, 4).reshape(B * mul, T, n * ir.dim)
                        for blk, (mul, ir) in zip(dh.split([mi.dim for mi in self.irreps_in], dim=-1),
                                                  self.irreps_in)]
        g_cache: dict[tuple[int, int, int], tuple[Tensor, Tensor]] = {}
        outs, douts = [], []
        for (i, j, l_out), w, dw in zip(self.paths, w_parts, dw_parts):
            key = self._key(i, j, l_out)
            if key not in g_cache:
                g_cache[key] = (self._g(y_parts[j], key), self._g(dy_parts[j], key))
            g, dg = g_cache[key]  # (B, n, n−1, A, K), (3, B, n, n−1, A, K)
            A, K = g.shape[3], g.shape[4]
            hp = h_parts[i]
            u = hp.shape[-1]
            gt = g.reshape(B * n, m * A, K).transpose(1, 2)
            out = torch.bmm(gt, (hp * w[..., None, :]).reshape(B * n, m * A, u))
            outs.append(out.transpose(1, 2).reshape(B, n, u * K))
            # edge terms, per edge: M_c = w ⊙ TP(h_j, ∂_c Y) + ∂_c w ⊙ TP(h_j, Y), (3, B, n, n−1, u, K)
            p_y = torch.einsum("bikau,bikaq->bikuq", hp, g)
            p_dy = torch.einsum("bikau,cbikaq->cbikuq", hp, dg)
            msg = (p_dy * w[None, ..., None] + p_y[None] * dw[..., None]).reshape(3, B, n, m, u * K)
            full = scatter_senders(msg)  # (3, B, n_i, n_j, uK), zero on the diagonal
            geo = -full.permute(1, 2, 3, 0, 4)  # (B, n_i, n_p, 3, uK): receiver i ≠ p, edge (i, p)
            idx = torch.arange(n, device=h.device)
            geo[:, idx, idx] += msg.sum(3).permute(1, 2, 0, 3)  # receiver p: all its edges
            dout = geo.reshape(B, n, T, u * K)
            if dh_parts is not None:
                # node term Σ_{j,a} dh_j[T, u, a] w_ij[u] G_ij[a, k]: for each (sample, channel u) one
                # (T × n·A) @ (n·A × n·K) product with the edge operator laid out densely (zero for i = j)
                op = scatter_senders((g[..., None] * w[:, :, :, None, None, :]).reshape(B, n, m, A * K * u))
                op = op.reshape(B, n, n, A, K, u).permute(0, 5, 2, 3, 1, 4).reshape(B * u, n * A, n * K)
                dn = torch.bmm(dh_parts[i], op)  # (B·u, T, n·K)
                dout = dout + dn.reshape(B, u, T, n, K).permute(0, 3, 2, 1, 4).reshape(B, n, T, u * K)
            douts.append(dout)
        scale = 1.0 / math.sqrt(m)
        return (torch.cat([outs[k] for k in self.order], dim=-1) * scale,
                torch.cat([douts[k] for k in self.order], dim=-1) * scale)


def scatter_senders(e: Tensor) -> Tensor:
    """Inverse of :func:`senders` on edge data: ``(..., n, n−1, D)`` → ``(..., n, n, D)``, zero diagonal."""
    *lead, n, m, D = e.shape
    z = e.new_zeros(*lead, m, n + 1, D)
    z[..., :, :n, :] = e.reshape(*lead, m, n, D)
    flat = torch.cat([e.new_zeros(*lead, 1, D), z.reshape(*lead, m * (n + 1), D)], dim=-2)
    return flat.reshape(*lead, n, n, D)


def senders(h: Tensor) -> Tensor:
    """``h: (B, n, D)`` → ``(B, n, n−1, D)`` whose row i lists h_j for j ≠ i in increasing j.

    The off-diagonal entries of an n × n grid, in row-major order, are the flat entries 1 … n² − 1
    viewed as (n − 1) rows of n + 1 with the last column (the next diagonal entry) dropped.
    """
    B, n, D = h.shape
    grid = h[:, None, :, :].expand(B, n, n, D).reshape(B, n * n, D)
    return grid[:, 1:].reshape(B, n - 1, n + 1, D)[:, :, :n].reshape(B, n, n - 1, D)
