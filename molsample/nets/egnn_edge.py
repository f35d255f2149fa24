"""The fused EGNN edge block: an autograd function with a hand-written backward and forward-mode
tangent (jvp), so that training and the exact divergence of :class:`~molsample.nets.egnn.EGNN`
never materialise per-edge H×H Jacobians.

Given per-node projections a_i = A h_i, b_j = B h_j, squared distances d_ij² and the layer's
weights, it returns the coordinate weights ψ_ij and the neighbour sums Σ_{j≠i} s_ij of the edge
features s_ij = SiLU(a_i + b_j + c·d_ij² + e + g_ij) (see the module docstring of
:mod:`molsample.nets.egnn`); g_ij is an optional per-edge bias (the bond-graph embedding of a
molecule), the same for every sample of the batch.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable


def _silu_prime(z: Tensor, scale: Tensor | None = None) -> Tensor:
    """d SiLU(z)/dz = σ(z)(1 + z(1 − σ(z))), times ``scale`` (broadcast) when given."""
    if torch.is_grad_enabled() and z.requires_grad:
        sig = torch.sigmoid(z)
        out = sig * (1.0 + z * (1.0 - sig))
        return out if scale is None else out * scale
    g = (torch.ones((), dtype=z.dtype, device=z.device) if scale is None else scale).expand_as(z)
    return torch.ops.aten.silu_backward(g, z)  # one fused pass


def _edge_block_values(a: Tensor, b: Tensor, d2: Tensor, c: Tensor, wc: Tensor, bc: Tensor, w: Tensor,
                       bo: Tensor, g: Tensor | None = None) -> tuple[Tensor, ...]:
    """The per-edge part of a layer: ``(pre, s, q, z, psi, s_sum)``.

    pre_ij = a_i + b_j + c·d²_ij (+ g_ij), s = SiLU(pre), q = W_c s + b_c, z = SiLU(q), ψ = w·z + b_o,
    s_sum_i = Σ_{j≠i} s_ij. Shapes: a, b (B, n, H); d2 (B, n, n); g (n, n, H) or None;
    pre, s, q, z (B, n, n, H); psi (B, n, n); s_sum (B, n, H).
    """
    B, n, H = a.shape[0], a.shape[1], a.shape[-1]
    ab = a[:, :, None, :] + b[:, None, :, :]
    if g is not None:
        ab = ab + g
    pre = torch.addcmul(ab, d2[..., None], c)
    s = F.silu(pre)
    q = torch.addmm(bc, s.reshape(-1, H), wc.t()).view(B, n, n, H)
    z = F.silu(q)
    psi = torch.mv(z.reshape(-1, H), w).view(B, n, n) + bo
    s_sum = s.sum(2) - torch.diagonal(s, dim1=1, dim2=2).transpose(1, 2)
    return pre, s, q, z, psi, s_sum


class _EdgeBlock(torch.autograd.Function):
    """:func:`_edge_block_values` with a hand-written backward (fewer passes over the (B, n, n, H)
    edge tensors than autograd's, and no K = 1 matrix products) and forward-mode rule (``jvp``).

    The backward is once differentiable: second derivatives through the EGNN raise an error.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(a, b, d2, c, wc, bc, w, bo, g=None):  # type: ignore[override]
        pre, s, q, z, psi, s_sum = _edge_block_values(a, b, d2, c, wc, bc, w, bo, g)
        return psi, s_sum, pre, s, q, z

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        _, _, d2, c, wc, _, w, _ = inputs[:8]
        _, _, pre, s, q, z = output
        ctx.mark_non_differentiable(pre, s, q, z)
        ctx.set_materialize_grads(False)  # no zero-filled edge-sized gradients for the saved outputs
        ctx.save_for_backward(pre, s, q, z, d2, c, wc, w)
        ctx.save_for_forward(pre, s, q, z, d2, c, wc, w)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_psi, g_sum, *_):  # type: ignore[override]
        pre, s, q, z, d2, c, wc, w = ctx.saved_tensors
        B, n, _, H = pre.shape
        E = B * n * n
        need = ctx.needs_input_grad
        g_w = g_bo = g_wc = g_bc = None
        g_s = None
        if g_psi is not None:
            g_psi_flat = g_psi.reshape(E)
            g_q = torch.ops.aten.silu_backward(g_psi[..., None] * w, q).view(E, H)
            g_w = torch.mv(z.reshape(E, H).t(), g_psi_flat) if need[6] else None
            g_bo = g_psi.sum().reshape(1) if need[7] else None
            g_wc = g_q.t() @ s.reshape(E, H) if need[4] else None
            g_bc = g_q.sum(0) if need[5] else None
            g_s = (g_q @ wc).view(B, n, n, H)
        if g_sum is not None:
            # s_sum_i = Σ_{j≠i} s_ij: its gradient reaches every edge but the self edges (out of place for vmap)
            off = (1.0 - torch.eye(n, dtype=pre.dtype, device=pre.device))[:, :, None]
            g_s = g_sum[:, :, None, :] * off if g_s is None else torch.addcmul(g_s, g_sum[:, :, None, :], off)
        extra = (None,) * (len(need) - 8)  # the gradient of the edge bias g, when given
        if g_s is None:
            return (None,) * 8 + extra
        g_pre = torch.ops.aten.silu_backward(g_s, pre)
        g_a = g_pre.sum(2) if need[0] else None
        g_b = g_pre.sum(1) if need[1] else None
        g_flat = g_pre.view(E, H)
        g_d2 = torch.mv(g_flat, c).view(B, n, n) if need[2] else None
        g_c = torch.mv(g_flat.t(), d2.reshape(E)) if need[3] else None
        if extra and need[8]:
            extra = (g_pre.sum(0),)
        return (g_a, g_b, g_d2, g_c, g_wc, g_bc, g_w, g_bo) + extra

    @staticmethod
    def jvp(ctx, t_a, t_b, t_d2, t_c, t_wc, t_bc, t_w, t_bo, t_g=None):  # type: ignore[override]
        pre, s, q, z, d2, c, wc, w = ctx.saved_tensors
        d_pre = torch.zeros_like(pre)
        if t_g is not None:
            d_pre = d_pre + t_g
        if t_a is not None:
            d_pre = d_pre + t_a[:, :, None, :]
        if t_b is not None:
            d_pre = d_pre + t_b[:, None, :, :]
        if t_d2 is not None:
            d_pre = d_pre + t_d2[..., None] * c
        if t_c is not None:
            d_pre = d_pre + d2[..., None] * t_c
        d_s = _silu_prime(pre) * d_pre
        d_q = d_s @ wc.t()
        if t_wc is not None:
            d_q = d_q + s @ t_wc.t()
        if t_bc is not None:
            d_q = d_q + t_bc
        d_z = _silu_prime(q) * d_q
        d_psi = d_z @ w
        if t_w is not None:
            d_psi = d_psi + z @ t_w
        if t_bo is not None:
            d_psi = d_psi + t_bo
        d_sum = d_s.sum(2) - torch.diagonal(d_s, dim1=1, dim2=2).transpose(1, 2)
        return d_psi, d_sum, None, None, None, None
