r"""E(n)-equivariant graph network (EGNN) velocity field for particle systems.

One layer, for particles i ≠ j on the fully connected graph (Satorras et al. 2021, with the
time t as node feature as in equivariant flow matching for Lennard-Jones clusters):

    s_ij  = SiLU(A h_i + B h_j + c · d_ij² + e [+ g_ij])                  edge features (H)
    h_i  ← h_i + W_o SiLU(P h_i + Q · mean_{j≠i} s_ij + p)                node update
    ψ_ij  = w · SiLU(W_c s_ij + b_c) + b,    φ_ij = R · tanh(ψ_ij / R)     coordinate weight
    x_i  ← x_i + mean_{j≠i} (x_i − x_j) · φ_ij / (√(d_ij² + ε) + 1)

and the velocity is the total displacement x_L − x_0 projected to zero mean over particles.
For molecules, g_ij is a learned embedding (per layer) of the bond-graph separation of atoms i
and j (bonded, two bonds apart, three bonds apart, further), so that every layer knows which
pairs are bonded; it depends on neither x nor h, so the divergence code is unchanged.
It is E(dim)-equivariant (rotations and reflections), permutation-equivariant and
translation-invariant.

Why it is fast. A textbook EGNN concatenates [h_i, h_j, d_ij²] for all n² edges and applies a
(2H+1)×H layer, then a second H×H message layer per edge whose output feeds both the
aggregation and the coordinate MLP. Here the first layer is split into per-node maps A h_i,
B h_j (n·H² work instead of n²·H²), the message layer is linear so it commutes with the mean
over neighbours (applied once per node, folded into Q), and its product with the first
coordinate layer is a single matrix W_c. Per edge and layer only one H×H product remains
(W_c s_ij) instead of three.

Exact divergence. :meth:`EGNN.velocity_and_divergence` computes ∇·v exactly by forward-mode
differentiation along the (n−1)·dim coordinate directions of all particles but the last (whose
diagonal entries follow from translation invariance), written out for this architecture: the
per-edge H×H products are contracted once with the output covector (g_ij in
:meth:`EGNNLayer.tangent`), so every direction costs O(n²·H) per layer instead of O(n²·H²).
See docs/flows.md.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from molsample.errors import ConfigError, ShapeError
from molsample.molecules.topology import BOND_SEPARATIONS, bond_separation
from molsample.nets.common import batch_time, fourier_features
from molsample.nets.egnn_edge import _edge_block_values, _EdgeBlock, _silu_prime

__all__ = ["EGNN", "EGNNLayer"]


class EGNNLayer(nn.Module):
    """One dense EGNN layer on the fully connected graph; see the module docstring.

    Args:
        hidden: node/edge feature width H.
        update_h: whether the layer updates the node features (the last layer does not need to).
        coords_range: R, the bound of the coordinate weights φ (R·tanh(ψ/R)); ``None`` for no bound.
        eps: ε in the distance √(d² + ε) of the coordinate normalization.
    """

    def __init__(self, hidden: int, update_h: bool = True, coords_range: float | None = 15.0,
                 eps: float = 1e-6) -> None:
        super().__init__()
        H = hidden
        self.hidden, self.update_h = H, bool(update_h)
        self.coords_range = None if coords_range is None else float(coords_range)
        self.eps = float(eps)
        # the first edge layer W [h_i; h_j; d²] + e, split into per-node maps (init as one Linear(2H+1, H))
        bound = 1.0 / math.sqrt(2 * H + 1)
        self.edge_a = nn.Linear(H, H)  # A and the bias e
        self.edge_b = nn.Linear(H, H, bias=False)
        self.edge_d = nn.Parameter(torch.empty(H))
        for p in (self.edge_a.weight, self.edge_a.bias, self.edge_b.weight, self.edge_d):
            nn.init.uniform_(p, -bound, bound)
        self.coord_in = nn.Linear(H, H)
        self.coord_out = nn.Linear(H, 1)
        nn.init.xavier_uniform_(self.coord_out.weight, gain=0.001)
        nn.init.zeros_(self.coord_out.bias)
        if self.update_h:
            self.node_h = nn.Linear(H, H)
            self.node_m = nn.Linear(H, H, bias=False)
            self.node_out = nn.Linear(H, H)

    # ------------------------------------------------------------------ primal
    def forward(self, x: Tensor, h: Tensor, cache: dict | None = None,
                edge_bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Update ``x: (batch, n, dim)`` and ``h: (batch, n, H)``; fills ``cache`` for :meth:`tangent`.

        ``edge_bias``: ``(n, n, H)`` added to every edge's pre-activation (the bond-graph embedding).
        """
        n = x.shape[1]
        r = x[:, :, None, :] - x[:, None, :, :]
        d2 = (r * r).sum(-1)  # (B, n, n), exactly 0 on the diagonal
        a = self.edge_a(h)
        b = self.edge_b(h)
        args = (a, b, d2, self.edge_d, self.coord_in.weight, self.coord_in.bias, self.coord_out.weight[0],
                self.coord_out.bias) + (() if edge_bias is None else (edge_bias,))
        if cache is None:
            psi, s_sum = _EdgeBlock.apply(*args)[:2]
        else:
            pre, _, q, _, psi, s_sum = _edge_block_values(*args)
        if self.coords_range is None:
            th = None
            phi = psi
        else:
            th = torch.tanh(psi / self.coords_range)
            phi = self.coords_range * th
        dist = torch.sqrt(d2 + self.eps)
        mask = 1.0 - torch.eye(n, dtype=x.dtype, device=x.device)
        coef = phi * mask / ((dist + 1.0) * (n - 1))
        rowc = coef.sum(-1)
        x_new = x + rowc[..., None] * x - coef @ x  # x_i + Σ_j (x_i − x_j) coef_ij
        u = None
        if self.update_h:
            u = self.node_h(h) + self.node_m(s_sum / (n - 1))  # mean of s_ij over j ≠ i
            h = h + self.node_out(F.silu(u))
        if cache is not None:
            cache.update(x=x, r=r, pre=pre, q=q, th=th, phi=phi, dist=dist, mask=mask, coef=coef, rowc=rowc, u=u)
        return x_new, h

    # ------------------------------------------------------------------ forward-mode derivative
    def tangent(self, cache: dict, dx: Tensor, dh: "Tensor | _EdgeTangent | None"
                ) -> tuple[Tensor, "Tensor | _EdgeTangent | None"]:
        """Push T tangent directions through the layer (a batched JVP written out for this layer).

        Tangents are stored node-major: ``dx: (batch, n, T, dim)``, ``dh: (batch, n, T, H)``.

        Args:
            cache: filled by :meth:`forward` on the same inputs.
            dx: tangents of the positions.
            dh: tangents of the node features, an :class:`_EdgeTangent` (the structured output
                of a first layer), or ``None`` when they are zero.
        Returns:
            the tangents ``(dx_new, dh_new)`` of the layer outputs (``dh_new`` is ``None`` when
            the layer does not update ``h``).
        """
        x, pre, q, dist, mask = cache["x"], cache["pre"], cache["q"], cache["dist"], cache["mask"]
        B, n, T, d = dx.shape
        H = self.hidden
        sig1 = _silu_prime(pre)  # (B, n, n, H)
        # self edges carry no tangent (their δψ and δs are masked below): zero them once here
        torch.diagonal(sig1, dim1=1, dim2=2).zero_()
        # ψ_ij = w·SiLU(W_c s_ij + b_c); g_ij = ∂ψ_ij/∂pre_ij, contracted once per edge
        w = self.coord_out.weight[0]
        g = sig1 * (_silu_prime(q, w) @ self.coord_in.weight)  # (B, n, n, H)
        gc = g @ self.edge_d  # (B, n, n)
        # δ(d_ij²) = 2 (x_i − x_j)·(δx_i − δx_j) from P[b, i, t, j] = δx_i · x_j
        P = (dx.reshape(B, n * T, d) @ x.transpose(1, 2)).reshape(B, n, T, n)
        Pd = torch.diagonal(P, dim1=1, dim2=3)  # (B, T, n): δx_i · x_i
        dd2 = P.permute(0, 3, 2, 1) + P
        dd2 = (Pd.transpose(1, 2)[..., None] + Pd[:, None]).sub_(dd2).mul_(2.0)  # (B, n_i, T, n_j)
        dpsi = gc[:, :, None, :] * dd2
        da = db = dp = None
        if dh is not None:
            if self.update_h or isinstance(dh, _EdgeTangent):
                # A δh, B δh (and P δh)
                ws = [self.edge_a.weight, self.edge_b.weight] + ([self.node_h.weight] if self.update_h else [])
                # one tensor per map: temporaries stay small enough for the allocator to reuse
                if isinstance(dh, _EdgeTangent):
                    projs = [dh.project(wk) for wk in ws]
                    dh = dh.dense()
                else:
                    projs = [dh @ wk.T for wk in ws]
                da, db = projs[0], projs[1]
                dp = projs[2] if self.update_h else None
                dpsi += _pair_dot_i(g, da)
                dpsi += _pair_dot_j(g, db)
            else:
                # last layer: fold A and B into the per-edge covector g (n²·H² work instead of T·n·H²)
                gab = g @ torch.cat([self.edge_a.weight, self.edge_b.weight], 1)
                dpsi += _pair_dot_i(gab[..., :H], dh)
                dpsi += _pair_dot_j(gab[..., H:], dh)
        # δcoef = mask/(n−1) · (δφ/(d+1) − φ δd/(d+1)²) with δφ = sech²(ψ/R) δψ and δd = δd²/(2d):
        # two per-edge factors, then one multiply and one multiply-add over the tangents
        th = cache["th"]
        dist1 = dist + 1.0
        f_psi = mask / ((n - 1) * dist1)
        if th is not None:
            f_psi = f_psi * (1.0 - th * th)
        f_d2 = cache["phi"] * mask / ((n - 1) * 2.0 * dist * dist1 * dist1)
        dcoef = dpsi.mul_(f_psi[:, :, None, :])
        dcoef -= dd2 * f_d2[:, :, None, :]
        coef, rowc = cache["coef"], cache["rowc"]
        # δx_i + Σ_j (δx_i − δx_j) coef_ij + Σ_j (x_i − x_j) δcoef_ij
        dx_new = dx * (1.0 + rowc)[:, :, None, None]
        dx_new -= (coef @ dx.reshape(B, n, T * d)).reshape(B, n, T, d)
        dx_new += x[:, :, None, :] * dcoef.sum(-1, keepdim=True)
        dx_new -= (dcoef.reshape(B, n * T, n) @ x).reshape(B, n, T, d)
        if not self.update_h:
            return dx_new, None
        sig1m = sig1  # diagonal already zero
        sp_u = _silu_prime(cache["u"])  # (B, n, H)
        if dh is None and "onehot" in cache:
            # first layer, x-independent h and one-hot input directions: δh_i is a sum of
            # per-edge vectors times coordinates, kept factored (see _EdgeTangent)
            Y = (sp_u[:, :, None] * self.node_m(sig1m * (self.edge_d * (2.0 / (n - 1))))) @ self.node_out.weight.T
            return dx_new, _EdgeTangent(Y, cache["r"], cache["onehot"])
        ds = _pair_sum_ij(sig1m, dd2).mul_(self.edge_d)
        if dh is None:
            du = self.node_m(ds.mul_(1.0 / (n - 1)))
            return dx_new, (du.mul_(sp_u[:, :, None, :])) @ self.node_out.weight.T
        ds.addcmul_(sig1m.sum(2)[:, :, None, :], da)
        ds += _pair_sum_j(sig1m, db)
        du = self.node_m(ds.mul_(1.0 / (n - 1)))
        du += dp
        dh_new = (du.mul_(sp_u[:, :, None, :])) @ self.node_out.weight.T
        dh_new += dh
        return dx_new, dh_new


def _pair_dot_i(g: Tensor, a: Tensor) -> Tensor:
    """out[b, i, t, j] = Σ_h g[b, i, j, h] · a[b, i, t, h]   (g: (B, n, n, H), a: (B, n, T, H))."""
    B, n, T, H = a.shape
    out = torch.bmm(a.reshape(B * n, T, H), g.reshape(B * n, n, H).transpose(1, 2))
    return out.reshape(B, n, T, n)


def _pair_dot_j(g: Tensor, a: Tensor) -> Tensor:
    """out[b, i, t, j] = Σ_h g[b, i, j, h] · a[b, j, t, h]."""
    return _pair_dot_i(g.transpose(1, 2).contiguous(), a).permute(0, 3, 2, 1)


def _pair_sum_ij(s: Tensor, e: Tensor) -> Tensor:
    """out[b, i, t, h] = Σ_j s[b, i, j, h] · e[b, i, t, j]   (e: (B, n, T, n))."""
    B, n, T, _ = e.shape
    H = s.shape[-1]
    return torch.bmm(e.reshape(B * n, T, n), s.reshape(B * n, n, H)).reshape(B, n, T, H)


def _pair_sum_j(s: Tensor, a: Tensor) -> Tensor:
    """out[b, i, t, h] = Σ_j s[b, i, j, h] · a[b, j, t, h]."""
    return torch.einsum("bijh,bjth->bith", s, a)


class _EdgeTangent:
    """Node-feature tangents of a first layer whose input features do not depend on x.

    For the one-hot input direction τ = (k, c) (particle k, axis c):
    δh[i, τ] = δ_{ik} Σ_j Y_{kj} r_{kj,c} − Y_{ik} r_{ik,c}, with Y: (B, n, n, H) and
    r_ij = x_i − x_j. Linear maps act on Y (n²·H² work) instead of on the T·n·H dense tangents.
    """

    def __init__(self, Y: Tensor, r: Tensor, onehot: tuple[Tensor, Tensor]) -> None:
        self.Y, self.r, (self.ks, self.cs) = Y, r, onehot

    def _assemble(self, Z: Tensor) -> Tensor:
        ks, cs = self.ks, self.cs
        B, n, _, C = Z.shape
        d = self.r.shape[-1]
        T = ks.shape[0]
        if T == (n - 1) * d:  # all directions k < n−1 in order: a broadcast instead of a gather
            out = (Z[:, :, :n - 1, None, :] * -self.r[:, :, :n - 1, :, None]).reshape(B, n, T, C)
        else:
            out = Z[:, :, ks, :]  # (B, n, T, C), a copy
            out *= -self.r[:, :, ks, cs][..., None]
        diag = torch.einsum("bkjc,bkjd->bkdc", Z, self.r)  # Σ_j Z_kj r_kj,d: (B, n, dim, C)
        out[:, ks, torch.arange(T, device=Z.device), :] += diag[:, ks, cs, :]
        return out

    def dense(self) -> Tensor:
        """The tangents as ``(B, n, T, H)``."""
        return self._assemble(self.Y)

    def project(self, W: Tensor) -> Tensor:
        """``dense() @ W.T`` computed on Y."""
        return self._assemble(self.Y @ W.T)


class EGNN(nn.Module):
    """E(dim)- and permutation-equivariant, translation-invariant velocity b(t, x).

    Args:
        n_particles: number of particles n.
        dim: spatial dimension.
        hidden: feature width H.
        n_layers: number of EGNN layers.
        n_freqs: Fourier frequencies of the time embedding ([t, sin(2^k π t), cos(2^k π t)]).
        coords_range: bound R of the coordinate weights (R·tanh(ψ/R)); ``None`` for none.
        eps: ε in the distance √(d² + ε) used by the coordinate normalization 1/(d + 1).
        atom_types: optional integer type per particle (length n). Each type gets a learned
            embedding added to the initial node features, so the field is permutation-equivariant
            only among particles of the same type — needed for molecules, whose atoms are not
            interchangeable (``molsample.molecules.topology.atom_types_from_topology``). ``None``:
            all particles alike (Lennard-Jones, DW-4).
        bonds: optional bond list ``[(i, j), ...]`` of a molecule. Each layer then adds a learned
            embedding of the bond-graph separation of i and j (1, 2, 3 or more bonds; initialised
            to zero) to the edge features.

    ``forward(t, x)`` takes ``t`` as a float, 0-d or ``(batch,)`` tensor and ``x: (batch, n, dim)``
    and returns the velocity ``(batch, n, dim)`` with zero mean over particles.

    Capabilities: every layer sees only distances and relative vectors x_i − x_j, so the field is
    E(dim)-equivariant including reflections, b(t, Rx) = R b(t, x) for det R = −1; its flow maps a
    mirror image to the mirror image, and the density of a reflection-invariant base stays
    reflection-invariant (``reflection_invariant``). The velocity is projected to zero mean, so the
    centre of mass of the samples stays where the base put it (``keeps_centre_of_mass``).
    ``atom_types`` are embedded into the node features (``takes_atom_types``).
    """

    #: capabilities (see the class docstring; read through :func:`molsample.nets.capabilities`)
    reflection_invariant = True
    takes_atom_types = True
    keeps_centre_of_mass = True

    #: budget (in tensor elements) for the intermediates of :meth:`velocity_and_divergence`
    div_max_elements: int = 2**25

    def __init__(self, n_particles: int, dim: int = 3, hidden: int = 64, n_layers: int = 4, n_freqs: int = 4,
                 coords_range: float | None = 15.0, eps: float = 1e-6, atom_types: list[int] | None = None,
                 bonds: list[tuple[int, int]] | None = None) -> None:
        super().__init__()
        if n_particles < 2:
            raise ConfigError(f"EGNN needs n_particles >= 2, got {n_particles}; use the 'mlp' net for toys")
        if min(dim, hidden, n_layers) < 1 or n_freqs < 0:
            raise ConfigError(
                f"EGNN needs dim, hidden, n_layers >= 1 and n_freqs >= 0; got dim={dim}, hidden={hidden}, "
                f"n_layers={n_layers}, n_freqs={n_freqs}"
            )
        self.n_particles, self.dim, self.hidden, self.n_freqs = int(n_particles), int(dim), int(hidden), int(n_freqs)
        self.spec: dict = {"name": "egnn", "n_particles": self.n_particles, "dim": self.dim, "hidden": self.hidden,
                           "n_layers": int(n_layers), "n_freqs": self.n_freqs,
                           "coords_range": None if coords_range is None else float(coords_range),
                           "eps": float(eps)}
        self.time_embed = nn.Linear(1 + 2 * self.n_freqs, self.hidden)
        self.type_embed: nn.Embedding | None = None
        if atom_types is not None:
            types = [int(a) for a in atom_types]
            if len(types) != self.n_particles or min(types) < 0:
                raise ConfigError(f"atom_types must give one non-negative integer per particle ({self.n_particles}), "
                                  f"got {len(types)} entries")
            self.spec["atom_types"] = types
            self.register_buffer("atom_types", torch.tensor(types, dtype=torch.long), persistent=False)
            self.type_embed = nn.Embedding(max(types) + 1, self.hidden)
        self.layers = nn.ModuleList(
            EGNNLayer(self.hidden, update_h=k < n_layers - 1, coords_range=coords_range, eps=eps)
            for k in range(n_layers)
        )
        self.bond_embed: nn.ModuleList | None = None
        if bonds is not None:
            pairs = [(int(i), int(j)) for i, j in bonds]
            self.spec["bonds"] = [list(p) for p in pairs]
            self.register_buffer("edge_types", bond_separation(self.n_particles, pairs), persistent=False)
            self.bond_embed = nn.ModuleList(nn.Embedding(BOND_SEPARATIONS + 1, self.hidden) for _ in range(n_layers))
            for emb in self.bond_embed:
                nn.init.zeros_(emb.weight)

    def _edge_bias(self, k: int) -> Tensor | None:
        """Layer ``k``'s bond-graph edge bias ``(n, n, H)``, or None without bonds."""
        return None if self.bond_embed is None else self.bond_embed[k](self.edge_types)

    def _check(self, x: Tensor) -> None:
        if x.dim() != 3 or tuple(x.shape[1:]) != (self.n_particles, self.dim):
            raise ShapeError(
                f"EGNN expects x of shape (batch, {self.n_particles}, {self.dim}), got {tuple(x.shape)}"
            )

    def _h0(self, t: Tensor | float, x: Tensor) -> Tensor:
        tb = batch_time(t, x.shape[0], x)
        feats = torch.cat([tb[:, None], fourier_features(tb, self.n_freqs)], dim=-1)
        h = self.time_embed(feats)[:, None, :]
        if self.type_embed is not None:
            return h + self.type_embed(self.atom_types)[None]
        return h.expand(-1, x.shape[1], -1)

    def forward(self, t: Tensor | float, x: Tensor) -> Tensor:
        """Velocity ``(batch, n, dim)`` with zero mean over particles."""
        self._check(x)
        h = self._h0(t, x)
        y = x
        for k, layer in enumerate(self.layers):
            y, h = layer(y, h, edge_bias=self._edge_bias(k))
        v = y - x
        return v - v.mean(dim=1, keepdim=True)

    @torch.no_grad()
    def velocity_and_divergence(self, t: Tensor | float, x: Tensor) -> tuple[Tensor, Tensor]:
        """The velocity ``(batch, n, dim)`` and its exact divergence Σ_k ∂v_k/∂x_k, ``(batch,)``.

        The divergence is the trace of the full (n·dim)² Jacobian J; for this translation-invariant
        field it equals the divergence on the zero-CoM subspace. Forward-mode derivatives are pushed
        along the (n−1)·dim coordinate directions of particles 0..n−2; the diagonal entries of the
        last particle follow from translation invariance (J·1_b = 0). Work is split into batch
        chunks (and, for very large systems, chunks of directions) so that the intermediates stay
        below :attr:`div_max_elements` elements. No autograd graph is built.
        """
        self._check(x)
        B, n, d = x.shape
        H = self.hidden
        T = (n - 1) * d
        primal = 8 * n * n * H
        per_tangent = 8 * n * H + 8 * n * n + n * d
        budget = int(self.div_max_elements)
        tb = batch_time(t, B, x)
        all_idx = torch.arange(T, device=x.device)
        per_sample = primal + T * per_tangent
        chunk_b = budget // per_sample
        if chunk_b >= B:
            return self._v_div(tb, x, all_idx)
        if chunk_b >= 1:
            outs = [self._v_div(tb[i:i + chunk_b], x[i:i + chunk_b], all_idx) for i in range(0, B, chunk_b)]
            return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])
        # a single sample exceeds the budget: one sample at a time, directions in chunks
        chunk_t = max(1, (budget - primal) // per_tangent)
        vs, divs = [], []
        for i in range(B):
            div = x.new_zeros(1)
            v = x[i:i + 1]
            for j in range(0, T, chunk_t):
                v, dj = self._v_div(tb[i:i + 1], x[i:i + 1], all_idx[j:j + chunk_t])
                div = div + dj
            vs.append(v)
            divs.append(div)
        return torch.cat(vs), torch.cat(divs)

    def _v_div(self, tb: Tensor, x: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Velocity and the part of the divergence from the flat directions ``idx`` (< (n−1)·dim).

        Direction τ = (k, b) contributes J[τ, τ] − J[(n−1, b), τ]; summed over all k < n−1 this is
        the full trace because Σ_k J[(n−1, b), (k, b)] = 0 (translation invariance).
        """
        B, n, d = x.shape
        Tc = idx.shape[0]
        ks, bs = idx // d, idx % d
        ar = torch.arange(Tc, device=x.device)
        dx0 = torch.zeros(n, Tc, d, dtype=x.dtype, device=x.device)
        dx0[ks, ar, bs] = 1.0
        dx0 = dx0.unsqueeze(0).expand(B, n, Tc, d)
        h = self._h0(tb, x)
        y, dy, dh = x, dx0, None
        for k, layer in enumerate(self.layers):
            cache: dict = {}
            y_new, h = layer(y, h, cache, edge_bias=self._edge_bias(k))
            if k == 0:
                cache["onehot"] = (ks, bs)
            dy, dh = layer.tangent(cache, dy, dh)
            y = y_new
        v = y - x
        v = v - v.mean(dim=1, keepdim=True)
        # δv = δy − δx0 − mean; the mean and δx0 at (n−1, b) cancel in J[τ, τ] − J[(n−1, b), τ]
        diag = dy[:, ks, ar, bs] - dy[:, n - 1, ar, bs] - 1.0  # (B, Tc)
        return v, diag.sum(-1)
