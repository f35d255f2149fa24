r"""SE(3)-equivariant velocity field built from e3nn, able to tell a molecule from its mirror image.

Why. An EGNN (:class:`~molsample.nets.EGNN`) is E(3)-equivariant: it maps a configuration and its
mirror image to mirrored velocities, so a flow built on it from a reflection-symmetric base
density gives an enantiomer and its mirror image the same density. For a chiral molecule
(alanine dipeptide: L- and D-alanine) it samples both. This network is equivariant under
rotations, translations and permutations of identical particles but *not* under reflections.

Architecture (fully connected graph over the n particles, batched; no loops over samples):

* node input: scalars ``0e`` from the time (t and Fourier features [sin 2^k π t, cos 2^k π t])
  and an optional one-hot atom type per particle, mapped to ``hidden`` channels;
* edge attributes: spherical harmonics Y^l(r̂_ij), l ≤ ``lmax`` (irreps 0e + 1o + 2e + …), of the
  relative positions r_ij = x_i − x_j, and a smooth radial basis of the distances
  (Gaussians evenly spaced in log-distance between ``r_min`` and ``r_max`` with
  :func:`e3nn.math.soft_one_hot_linspace`, so that bond lengths (≈ 0.1 nm) and the spread of the
  base Gaussian (several units) are both resolved);
* one layer: a channel-wise tensor product (``uvu`` paths, e3nn's ``TensorProduct`` with
  Clebsch–Gordan coefficients :func:`e3nn.o3.wigner_3j`) h_j ⊗ Y(r̂_ij) with per-edge weights from a
  radial MLP (:class:`e3nn.nn.FullyConnectedNet`), summed over neighbours j ≠ i and divided by
  √(n − 1) (contracted over neighbours with dense matrix products,
  :class:`~molsample.nets.e3nn_conv.Convolution`); a linear self-interaction
  (:class:`e3nn.o3.Linear`); a gated nonlinearity (:class:`e3nn.nn.Gate`: SiLU on ``0e``, tanh on
  ``0o``, sigmoid gates on l ≥ 1); a residual connection;
* hidden irreps with both parities up to ``lmax_hidden``: ``H×0e + H×0o + (H/2)×1o + (H/2)×1e``
  (+ ``(H/4)×2e + (H/4)×2o`` for ``lmax_hidden = 2``; H = ``hidden``; multiplicity H·2^{−l},
  at least 1);
* output: a linear map onto one ``1o`` vector per particle, projected to zero mean over particles.

Chirality. The tensor products follow the O(3) selection rules (1o ⊗ 1o → 1e is a cross
product, 1e ⊗ 1o → 0o a triple product: pseudovectors and pseudoscalars). With ``chiral=True``
(the default) the linear layers treat irreps of equal l and opposite parity as the same SO(3)
representation — for a rotation D^{l,p}(R) = D^l(R) whatever p — and mix them: pseudoscalars
enter the scalar channels and the gates, and pseudovectors enter the output vector. Every layer
stays exactly SO(3)-equivariant but the net is no longer reflection-equivariant, so it can put
all of its density on one enantiomer. ``chiral=False`` keeps the parities apart and gives an
E(3)-equivariant net (a check, and an alternative to the EGNN).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from molsample.errors import ConfigError, ShapeError
from molsample.molecules.topology import atom_types_from_topology
from molsample.nets.common import batch_time, fourier_features
from molsample.nets.e3nn_conv import Convolution, load_e3nn, senders

__all__ = ["E3NNVelocity", "atom_types_from_topology"]


def _so3_labels(irreps, chiral: bool):
    """``irreps`` with every parity set to (−1)^l when ``chiral`` (same data layout), else unchanged.

    For rotations the two parities of one l are the same representation, so an e3nn layer built on
    the relabelled irreps is SO(3)-equivariant and mixes true and pseudo tensors.
    """
    o3, _, _ = load_e3nn()
    if not chiral:
        return irreps
    return o3.Irreps([(mul, (ir.l, (-1) ** ir.l)) for mul, ir in irreps])


class _Layer(nn.Module):
    """Convolution, linear self-interaction, gate, residual."""

    def __init__(self, irreps_in, irreps_hidden, irreps_sh, lmax: int, n_basis: int, radial_hidden: int,
                 chiral: bool) -> None:
        super().__init__()
        o3, enn, _ = load_e3nn()
        irreps_in, irreps_hidden = o3.Irreps(irreps_in), o3.Irreps(irreps_hidden)
        scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_hidden if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in irreps_hidden if ir.l > 0])
        gates = o3.Irreps([(gated.num_irreps, "0e")]) if gated.num_irreps else o3.Irreps("")
        acts = [F.silu if ir.p == 1 else torch.tanh for _, ir in scalars]
        self.gate = enn.Gate(scalars, acts, gates, [torch.sigmoid] * len(gates), gated)
        self.conv = Convolution(irreps_in, irreps_sh, lmax, None, n_basis, radial_hidden)
        self.lin = o3.Linear(_so3_labels(self.conv.irreps_out, chiral), _so3_labels(self.gate.irreps_in, chiral))
        self.self_lin = o3.Linear(_so3_labels(irreps_in, chiral), _so3_labels(self.gate.irreps_in, chiral))
        self.residual = irreps_in == self.gate.irreps_out

    def forward(self, h: Tensor, sh: Tensor, emb: Tensor) -> Tensor:
        out = self.gate(self.lin(self.conv(h, sh, emb)) + self.self_lin(h))
        return h + out if self.residual else out

    def tangent(self, h: Tensor, dh: Tensor | None, sh: Tensor, emb: Tensor, dsh: Tensor,
                demb: Tensor) -> tuple[Tensor, Tensor]:
        """Output ``(B, n, dim)`` and its tangents ``(B, n, T, dim)``; see :meth:`Convolution.tangent`."""
        c, dc = self.conv.tangent(h, dh, sh, emb, dsh, demb)
        pre = self.lin(c) + self.self_lin(h)
        dpre = self.lin(dc)
        if dh is not None:
            dpre = dpre + self.self_lin(dh)
        out = self.gate(pre)
        # the gate acts per node: its JVP with the T directions laid out as extra rows
        _, dout = torch.func.jvp(self.gate, (pre[:, :, None, :].expand_as(dpre).contiguous(),), (dpre,))
        if self.residual:
            return h + out, dout if dh is None else dh + dout
        return out, dout


class E3NNVelocity(nn.Module):
    """SE(3)- and permutation-equivariant, translation-invariant velocity b(t, x) built from e3nn.

    Args:
        n_particles: number of particles n (≥ 2).
        dim: spatial dimension (must be 3).
        hidden: multiplicity H of the scalar channels; l ≥ 1 channels get H·2^{−l} (at least 1),
            for each parity.
        n_layers: message-passing layers (≥ 1, ≥ 2 when ``chiral``; the last one feeds the output).
        lmax: largest l of the spherical harmonics of the edge directions.
        lmax_hidden: largest l of the hidden node features (1: scalars and vectors; 2 adds rank-2
            tensors at about twice the cost).
        n_freqs: Fourier frequencies of the time embedding.
        n_basis: radial basis functions.
        radial_hidden: width of the radial MLPs.
        r_min, r_max: range of the log-spaced radial basis, in the length unit of the positions.
        chiral: ``True`` for an SO(3) net that can tell mirror images apart; ``False`` for an
            E(3)-equivariant one.
        atom_types: one non-negative ``int`` per particle (e.g. from :func:`atom_types_from_topology`),
            one-hot encoded into the node scalars; ``None`` treats all particles alike (the net is
            then permutation-equivariant over all particles).

    ``forward(t, x)`` takes ``t`` as a float, 0-d or ``(batch,)`` tensor and ``x: (batch, n, 3)`` and
    returns the velocity ``(batch, n, 3)`` with zero mean over particles;
    :meth:`velocity_and_divergence` adds its exact divergence (for likelihoods). ``spec`` holds every
    constructor argument (``"name": "e3nn"``), so the net can be rebuilt from it.

    Capabilities: ``chiral=True`` (SO(3) only: pseudovectors tell mirror images apart) is not
    reflection-invariant, ``chiral=False`` (E(3)) is; each instance sets ``reflection_invariant = not
    chiral``. The velocity has zero mean over particles; ``atom_types`` enter the node scalars.
    """

    #: capabilities (see the class docstring; read through :func:`molsample.nets.capabilities`)
    reflection_invariant = False
    takes_atom_types = True
    keeps_centre_of_mass = True

    #: budget (in tensor elements) for the intermediates of :meth:`velocity_and_divergence`
    div_max_elements: int = 2**24

    def __init__(self, n_particles: int, dim: int = 3, hidden: int = 16, n_layers: int = 3, lmax: int = 2,
                 lmax_hidden: int = 1, n_freqs: int = 4, n_basis: int = 12, radial_hidden: int = 32,
                 r_min: float = 0.05, r_max: float = 8.0, chiral: bool = True,
                 atom_types: list[int] | None = None) -> None:
        super().__init__()
        o3, _, _ = load_e3nn()
        if dim != 3:
            raise ConfigError(f"the 'e3nn' net works in 3-D only, got dim={dim}; use 'egnn' or 'mlp'")
        if n_particles < 2:
            raise ConfigError(f"E3NNVelocity needs n_particles >= 2, got {n_particles}; use the 'mlp' net for toys")
        if min(hidden, n_layers, lmax, lmax_hidden, n_basis, radial_hidden) < 1 or n_freqs < 0:
            raise ConfigError(
                f"E3NNVelocity needs hidden, n_layers, lmax, lmax_hidden, n_basis, radial_hidden >= 1 and "
                f"n_freqs >= 0; got hidden={hidden}, n_layers={n_layers}, lmax={lmax}, lmax_hidden={lmax_hidden}, "
                f"n_basis={n_basis}, radial_hidden={radial_hidden}, n_freqs={n_freqs}"
            )
        if chiral and n_layers < 2:
            raise ConfigError(
                f"a chiral E3NNVelocity needs n_layers >= 2, got n_layers={n_layers}: one layer sees each pair "
                f"direction alone and cannot form a pseudovector; raise n_layers or pass chiral=False"
            )
        if not 0.0 < r_min < r_max:
            raise ConfigError(f"E3NNVelocity needs 0 < r_min < r_max, got r_min={r_min}, r_max={r_max}")
        if atom_types is not None:
            atom_types = [int(a) for a in atom_types]
            if len(atom_types) != n_particles or min(atom_types) < 0:
                raise ConfigError(
                    f"atom_types must list one non-negative int per particle ({n_particles}), got {atom_types!r}; "
                    f"see molsample.molecules.topology.atom_types_from_topology"
                )
        self.n_particles, self.dim, self.n_freqs = int(n_particles), 3, int(n_freqs)
        self.r_min, self.r_max, self.n_basis = float(r_min), float(r_max), int(n_basis)
        self.chiral = bool(chiral)
        self.reflection_invariant = not self.chiral
        self.spec: dict = {"name": "e3nn", "n_particles": self.n_particles, "dim": 3, "hidden": int(hidden),
                           "n_layers": int(n_layers), "lmax": int(lmax),
                           "lmax_hidden": int(lmax_hidden), "n_freqs": self.n_freqs,
                           "n_basis": self.n_basis, "radial_hidden": int(radial_hidden), "r_min": self.r_min,
                           "r_max": self.r_max, "chiral": self.chiral,
                           "atom_types": None if atom_types is None else list(atom_types)}
        n_types = 0 if atom_types is None else max(atom_types) + 1
        if atom_types is not None:
            onehot = F.one_hot(torch.tensor(atom_types), n_types).to(torch.get_default_dtype())
            self.register_buffer("type_onehot", onehot)
        else:
            self.type_onehot = None

        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        self.sh = o3.SphericalHarmonics(self.irreps_sh, normalize=True, normalization="component")
        hidden_irreps = o3.Irreps([(max(1, hidden >> l), (l, p)) for l in range(lmax_hidden + 1)
                                     for p in (1, -1)])
        self.irreps_hidden = hidden_irreps.sort().irreps.simplify()
        self.embed = nn.Linear(1 + 2 * self.n_freqs + n_types, hidden)
        irreps_in = o3.Irreps(f"{hidden}x0e")
        self.layers = nn.ModuleList()
        for _ in range(n_layers - 1):
            layer = _Layer(irreps_in, self.irreps_hidden, self.irreps_sh, lmax_hidden, n_basis, radial_hidden,
                           self.chiral)
            self.layers.append(layer)
            irreps_in = layer.gate.irreps_out
        # last layer: only l = 1 messages are needed for the vector output
        self.out_conv = Convolution(irreps_in, self.irreps_sh, None, {1}, n_basis, radial_hidden)
        irreps_v = o3.Irreps("1x1o")
        self.out_lin = o3.Linear(_so3_labels(self.out_conv.irreps_out, self.chiral), irreps_v)
        # widest convolution output: the tangents of one sample hold a few (n, 3n, width) arrays
        self._tangent_width = max(cv.irreps_out.dim for cv in [layer.conv for layer in self.layers] + [self.out_conv])
        has_vectors = any(ir == o3.Irrep("1o") for _, ir in _so3_labels(irreps_in, self.chiral))
        self.out_self = o3.Linear(_so3_labels(irreps_in, self.chiral), irreps_v) if has_vectors else None

    def _check(self, x: Tensor) -> None:
        if x.dim() != 3 or tuple(x.shape[1:]) != (self.n_particles, 3):
            raise ShapeError(f"E3NNVelocity expects x of shape (batch, {self.n_particles}, 3), got {tuple(x.shape)}")

    def _edge_features(self, r: Tensor) -> tuple[Tensor, Tensor]:
        """Spherical harmonics ``(…, dim_sh)`` and radial basis ``(…, n_basis)`` of ``r: (…, 3)``."""
        _, _, soft_one_hot_linspace = load_e3nn()
        sh = self.sh(r)
        d = torch.sqrt((r * r).sum(-1) + 1e-12)
        u = torch.log(d + self.r_min)
        emb = soft_one_hot_linspace(u, math.log(self.r_min), math.log(self.r_max), self.n_basis,
                                    basis="gaussian", cutoff=False)
        return sh, emb

    def _h0(self, t: Tensor | float, x: Tensor) -> Tensor:
        B, n, _ = x.shape
        tb = batch_time(t, B, x)
        feats = torch.cat([tb[:, None], fourier_features(tb, self.n_freqs)], dim=-1)[:, None, :].expand(B, n, -1)
        if self.type_onehot is not None:
            feats = torch.cat([feats, self.type_onehot.to(x.dtype).expand(B, n, -1)], dim=-1)
        return self.embed(feats)

    def forward(self, t: Tensor | float, x: Tensor) -> Tensor:
        """Velocity ``(batch, n, 3)`` with zero mean over particles."""
        self._check(x)
        h = self._h0(t, x)
        sh, emb = self._edge_features(x[:, :, None, :] - senders(x))  # r_ij = x_i − x_j over j ≠ i
        for layer in self.layers:
            h = layer(h, sh, emb)
        v = self.out_lin(self.out_conv(h, sh, emb))
        if self.out_self is not None:
            v = v + self.out_self(h)
        return v - v.mean(dim=1, keepdim=True)

    @torch.no_grad()
    def velocity_and_divergence(self, t: Tensor | float, x: Tensor) -> tuple[Tensor, Tensor]:
        """The velocity ``(batch, n, 3)`` and its exact divergence Σ_k ∂v_k/∂x_k, ``(batch,)``.

        Forward-mode derivatives along all 3n coordinate directions at once, written out for this
        architecture: the edge features (spherical harmonics, radial weights) depend on one
        relative position each, so their derivatives are formed once per edge and scattered to
        the 3n directions; the node-feature tangents go through the convolutions as one
        (3n × n·A) @ (n·A × n·K) product per sample, channel and path — several times faster than
        generic vmapped JVPs (docs/benchmarks/e3nn_vs_egnn.md). Samples are processed in chunks so that the largest
        intermediate stays below :attr:`div_max_elements` elements. No autograd graph is built.
        """
        self._check(x)
        B, n, _ = x.shape
        tb = batch_time(t, B, x)
        per_sample = 4 * n * 3 * n * self._tangent_width
        chunk = max(1, int(self.div_max_elements) // per_sample)
        if chunk >= B:
            return self._v_div(tb, x)
        outs = [self._v_div(tb[i:i + chunk], x[i:i + chunk]) for i in range(0, B, chunk)]
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

    def _v_div(self, tb: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        B, n, _ = x.shape
        h = self._h0(tb, x)
        r = x[:, :, None, :] - senders(x)
        sh, emb = self._edge_features(r)
        eye = torch.eye(3, dtype=x.dtype, device=x.device)
        d_edge = [torch.func.jvp(self._edge_features, (r,), (eye[c].expand_as(r),))[1] for c in range(3)]
        dsh = torch.stack([d[0] for d in d_edge])
        demb = torch.stack([d[1] for d in d_edge])
        dh = None  # the initial node features depend on t only
        for layer in self.layers:
            h, dh = layer.tangent(h, dh, sh, emb, dsh, demb)
        c, dc = self.out_conv.tangent(h, dh, sh, emb, dsh, demb)
        v = self.out_lin(c)
        dv = self.out_lin(dc)  # (B, n, T, 3)
        if self.out_self is not None:
            v = v + self.out_self(h)
            if dh is not None:
                dv = dv + self.out_self(dh)
        v = v - v.mean(dim=1, keepdim=True)
        dv = dv - dv.mean(dim=1, keepdim=True)
        # Σ_{p, c} ∂v_{p,c}/∂x_{p,c}: output particle i = p, T-index 3p + c, output component c
        diag = dv.reshape(B, n, n, 3, 3).diagonal(dim1=1, dim2=2).diagonal(dim1=1, dim2=2)
        return v, diag.sum(dim=(1, 2))
