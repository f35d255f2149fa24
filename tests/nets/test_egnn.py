"""EGNN velocity: symmetries, zero mean, exact divergence against autograd, spec round trip."""

from __future__ import annotations

import pytest
import torch

from molsample.errors import ConfigError, ShapeError
from molsample.nets import EGNN, build_net, default_net_spec
from molsample.nets.egnn import EGNNLayer
from molsample.systems.cards import load_system
from molsample.testing import assert_equivariant

# torch emits this from its own forward-mode AD decompositions on first use
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def make_net(n: int, d: int, layers: int = 3, hidden: int = 16, seed: int = 0) -> EGNN:
    torch.manual_seed(seed)
    net = EGNN(n, d, hidden=hidden, n_layers=layers).double()
    # the default coordinate head starts near zero; make it large so the checks are not vacuous
    for layer in net.layers:
        torch.nn.init.normal_(layer.coord_out.weight, std=0.5)
    return net


def autograd_divergence(net, t, x):
    b, n, d = x.shape
    jac = torch.autograd.functional.jacobian(lambda y: net(t, y), x)  # (b, n, d, b, n, d)
    jac = jac.reshape(b, n * d, b, n * d)
    return torch.stack([torch.diagonal(jac[k, :, k, :]).sum() for k in range(b)])


@pytest.mark.parametrize("n, d", [(5, 3), (4, 2), (13, 3)])
def test_equivariance(n, d, generator):
    net = make_net(n, d)
    x = torch.randn(3, n, d, generator=generator, dtype=torch.float64)
    for t in (0.0, 0.37, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)):
        assert_equivariant(lambda y, t=t: net(t, y), x)


def test_output_has_zero_mean_and_shape(generator):
    net = make_net(6, 3)
    x = torch.randn(4, 6, 3, generator=generator, dtype=torch.float64) + 5.0
    v = net(0.3, x)
    assert v.shape == x.shape
    assert v.mean(dim=1).abs().max() < 1e-12
    assert v.abs().max() > 1e-3  # not trivially zero


class _BrokenRotation(EGNNLayer):
    """Adds c·|x_i − x̄|² along a fixed direction c: translation/permutation fine, rotations broken."""

    def forward(self, x, h, cache=None, edge_bias=None):
        x_new, h = super().forward(x, h, cache, edge_bias)
        c = torch.zeros(x.shape[-1], dtype=x.dtype)
        c[0] = 0.5
        r2 = ((x - x.mean(1, keepdim=True)) ** 2).sum(-1, keepdim=True)
        return x_new + r2 * c, h


class _BrokenPermutation(EGNNLayer):
    """Adds a displacement that depends on the particle index: permutations (and rotations) broken."""

    def forward(self, x, h, cache=None, edge_bias=None):
        x_new, h = super().forward(x, h, cache, edge_bias)
        w = torch.arange(x.shape[1], dtype=x.dtype)[None, :, None]
        return x_new + 0.1 * w * (x - x.mean(1, keepdim=True)), h


@pytest.mark.parametrize("broken, symmetry, kwargs", [
    (_BrokenRotation, "rotation", {}),
    (_BrokenPermutation, "permutation", {"rotations": False, "reflections": False}),
])
def test_equivariance_check_catches_broken_layer(broken, symmetry, kwargs, generator):
    net = make_net(5, 3)
    old = net.layers[1]
    bad = broken(net.hidden, update_h=old.update_h).double()
    bad.load_state_dict(old.state_dict())
    net.layers[1] = bad
    x = torch.randn(3, 5, 3, generator=generator, dtype=torch.float64)
    with pytest.raises(AssertionError, match=symmetry):
        assert_equivariant(lambda y: net(0.4, y), x, **kwargs)


@pytest.mark.parametrize("n, d, layers", [(5, 3, 1), (5, 3, 2), (4, 2, 3), (6, 3, 4), (13, 3, 4)])
def test_exact_divergence_matches_autograd(n, d, layers, generator):
    net = make_net(n, d, layers=layers)
    x = torch.randn(3, n, d, generator=generator, dtype=torch.float64)
    t = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    v, div = net.velocity_and_divergence(t, x)
    assert torch.allclose(v, net(t, x), atol=1e-13)
    assert torch.allclose(div, autograd_divergence(net, t, x), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("budget", [2000, 20000])
def test_exact_divergence_chunked(budget, generator, monkeypatch):
    """Batch chunks (budget 20000) and direction chunks (budget 2000) give the same divergence."""
    net = make_net(6, 3, layers=3)
    x = torch.randn(5, 6, 3, generator=generator, dtype=torch.float64)
    v_ref, div_ref = net.velocity_and_divergence(0.6, x)
    monkeypatch.setattr(net, "div_max_elements", budget)
    v, div = net.velocity_and_divergence(0.6, x)
    assert torch.allclose(v, v_ref, atol=1e-14) and torch.allclose(div, div_ref, atol=1e-11)


def test_divergence_float32_close_to_float64(generator):
    net = make_net(13, 3, layers=4, hidden=32)
    x = torch.randn(4, 13, 3, generator=generator, dtype=torch.float64)
    _, div64 = net.velocity_and_divergence(0.5, x)
    _, div32 = net.float().velocity_and_divergence(0.5, x.float())
    assert torch.allclose(div32.double(), div64, rtol=1e-4, atol=1e-4)


def test_time_forms_agree(generator):
    net = make_net(4, 3)
    x = torch.randn(3, 4, 3, generator=generator, dtype=torch.float64)
    a = net(0.25, x)
    b = net(torch.tensor(0.25, dtype=torch.float64), x)
    c = net(torch.full((3,), 0.25, dtype=torch.float64), x)
    assert torch.equal(a, b) and torch.allclose(a, c)
    assert not torch.allclose(net(0.75, x), a)  # time matters


def test_spec_round_trip_and_defaults():
    net = EGNN(13)
    assert net.hidden == 64 and len(net.layers) == 4
    rebuilt = build_net(net.spec)
    rebuilt.load_state_dict(net.state_dict())
    x = torch.randn(2, 13, 3)
    assert torch.equal(rebuilt(0.5, x), net(0.5, x))
    assert default_net_spec(load_system("lj13"))["name"] == "egnn"
    assert default_net_spec(load_system("ring2d"))["name"] == "mlp"
    big = EGNN(13, hidden=128, n_layers=5)
    assert big.spec["hidden"] == 128 and len(big.layers) == 5


def test_errors():
    with pytest.raises(ConfigError, match="mlp"):
        EGNN(1, 2)
    with pytest.raises(ConfigError, match="unknown net"):
        build_net({"name": "transformer"})
    with pytest.raises(ShapeError, match=r"\(batch, 4, 3\)"):
        EGNN(4)(0.5, torch.zeros(2, 5, 3))


@pytest.mark.parametrize("edge_bias", [False, True], ids=["plain", "edge-bias"])
def test_edge_block_derivatives_match_finite_differences(edge_bias):
    """The hand-written backward and forward-mode rules of the edge block (float64 gradcheck),
    with and without the per-edge bias of the bond graph."""
    from molsample.nets.egnn import _EdgeBlock

    g = torch.Generator().manual_seed(0)
    b, n, h = 2, 4, 5
    shapes = [(b, n, h), (b, n, h), (b, n, n), (h,), (h, h), (h,), (h,), (1,)] + ([(n, n, h)] if edge_bias else [])
    args = [torch.randn(s, generator=g, dtype=torch.float64).requires_grad_(True) for s in shapes]
    args[2] = (args[2].detach().abs() * 3).requires_grad_(True)  # squared distances

    def f(*a):
        return _EdgeBlock.apply(*a)[:2]

    assert torch.autograd.gradcheck(f, args, check_forward_ad=True, check_batched_grad=True,
                                    check_batched_forward_grad=True)


def test_network_gradients_and_jvp(generator):
    net = make_net(4, 3, layers=3, hidden=6)
    x = torch.randn(2, 4, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.3, 0.7], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda y: net(t, y), (x,))
    w = net.layers[1].coord_in.weight
    assert torch.autograd.gradcheck(lambda wc: torch.func.functional_call(
        net, {"layers.1.coord_in.weight": wc}, (t, x.detach())), (w.detach().clone().requires_grad_(True),))
    # forward mode through the network, with and without grad mode
    tangent = torch.randn(2, 4, 3, generator=generator, dtype=torch.float64)
    _, jv = torch.func.jvp(lambda y: net(t, y), (x.detach(),), (tangent,))
    with torch.no_grad():
        _, jv0 = torch.func.jvp(lambda y: net(t, y), (x.detach(),), (tangent,))
    jac = torch.autograd.functional.jacobian(lambda y: net(t, y), x.detach()).reshape(24, 24)
    assert torch.allclose(jv.reshape(-1), jac @ tangent.reshape(-1)) and torch.allclose(jv, jv0)
    # second derivatives are not supported and say so
    v = net(t, x)
    (grad,) = torch.autograd.grad((v**2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad.sum().backward()


@pytest.mark.parametrize("with_dh, update_h", [(False, True), (True, True), (True, False)])
def test_layer_tangent_matches_jvp(with_dh, update_h, generator):
    """EGNNLayer.tangent pushes arbitrary tangents like torch.func.jvp of the layer (node-major layout)."""
    torch.manual_seed(2)
    layer = EGNNLayer(6, update_h=update_h).double()
    torch.nn.init.normal_(layer.coord_out.weight, std=0.5)
    b, n, d, T = 2, 5, 3, 4
    x = torch.randn(b, n, d, generator=generator, dtype=torch.float64)
    h = torch.randn(b, n, 6, generator=generator, dtype=torch.float64)
    dx = torch.randn(b, n, T, d, generator=generator, dtype=torch.float64)
    dh = torch.randn(b, n, T, 6, generator=generator, dtype=torch.float64) if with_dh else None
    cache: dict = {}
    with torch.no_grad():
        layer(x, h, cache)
        dx_new, dh_new = layer.tangent(cache, dx, dh)
    for k in range(T):
        tangents = (dx[:, :, k], dh[:, :, k] if with_dh else torch.zeros_like(h))
        _, (jx, jh) = torch.func.jvp(lambda xx, hh: layer(xx, hh), (x, h), tangents)
        assert torch.allclose(dx_new[:, :, k], jx, atol=1e-12)
        if update_h:
            assert torch.allclose(dh_new[:, :, k], jh, atol=1e-12)
        else:
            assert dh_new is None


def test_atom_types_break_permutation_symmetry_only_across_types():
    from molsample.testing import assert_equivariant

    torch.manual_seed(0)
    types = [0, 0, 1, 1, 2]
    net = EGNN(5, 3, hidden=16, n_layers=3, atom_types=types).double()
    with torch.no_grad():
        net.type_embed.weight.mul_(5.0)  # make the types matter clearly at initialization
    x = torch.randn(4, 5, 3, dtype=torch.float64)
    t = torch.rand(4, dtype=torch.float64)
    f = lambda y: net(t, y)  # noqa: E731
    assert_equivariant(f, x, permutations=False)  # still E(3)-equivariant
    same = [1, 0, 3, 2, 4]  # swaps within types
    torch.testing.assert_close(f(x[:, same]), f(x)[:, same])
    across = [2, 1, 0, 3, 4]  # swaps a type-0 with a type-1 particle
    scale = f(x).abs().max()
    assert (f(x[:, across]) - f(x)[:, across]).abs().max() > 0.05 * scale
    # the exact divergence still matches the autograd trace
    v, div = net.velocity_and_divergence(t, x)
    xg = x.clone().requires_grad_(True)
    out = net(t, xg).reshape(4, -1)
    tr = sum(torch.autograd.grad(out[:, k].sum(), xg, retain_graph=True)[0].reshape(4, -1)[:, k] for k in range(15))
    torch.testing.assert_close(div, tr, atol=1e-9, rtol=1e-9)
    rebuilt = build_net(net.spec)
    assert rebuilt.spec["atom_types"] == types


def test_bond_separation_counts_bonds_along_the_graph():
    from molsample.molecules.topology import bond_separation

    sep = bond_separation(6, [(0, 1), (1, 2), (2, 3), (3, 4)])  # a chain 0-1-2-3-4 and a lone atom 5
    assert sep[0].tolist() == [0, 1, 2, 3, 0, 0] and sep[2].tolist() == [2, 1, 0, 1, 2, 0]
    assert torch.equal(sep, sep.T) and sep[5].abs().sum() == 0
    ring = bond_separation(4, [(0, 1), (1, 2), (2, 3), (3, 0)])
    assert ring[0].tolist() == [0, 1, 2, 1]  # the shortest way round
    with pytest.raises(ConfigError, match="two different atoms"):
        bond_separation(3, [(0, 3)])


def test_bond_edges_keep_the_symmetries_the_divergence_and_the_spec():
    """Bond-graph edge features: still E(3)-equivariant, equivariant under permutations that map the
    bond graph (and the atom types) onto itself, not under others; exact divergence; spec round trip;
    zero-initialised, so a fresh net equals the net without them."""
    torch.manual_seed(0)
    bonds = [(0, 1), (1, 2), (2, 3), (3, 4)]
    net = EGNN(5, 3, hidden=12, n_layers=3, bonds=bonds).double()
    plain = EGNN(5, 3, hidden=12, n_layers=3).double()
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("bond_embed")})
    x = torch.randn(4, 5, 3, dtype=torch.float64)
    t = torch.rand(4, dtype=torch.float64)
    torch.testing.assert_close(net(t, x), plain(t, x))
    for layer in net.layers:
        torch.nn.init.normal_(layer.coord_out.weight, std=0.5)
    for emb in net.bond_embed:
        torch.nn.init.normal_(emb.weight)
    f = lambda y: net(t, y)  # noqa: E731
    assert_equivariant(f, x, permutations=False)
    mirror = [4, 3, 2, 1, 0]  # maps the chain onto itself
    torch.testing.assert_close(f(x[:, mirror]), f(x)[:, mirror])
    other = [1, 0, 2, 3, 4]  # does not
    assert (f(x[:, other]) - f(x)[:, other]).abs().max() > 1e-3 * f(x).abs().max()
    v, div = net.velocity_and_divergence(t, x)
    torch.testing.assert_close(v, f(x))
    torch.testing.assert_close(div, autograd_divergence(net, t, x), atol=1e-10, rtol=1e-10)
    rebuilt = build_net(net.spec)
    assert rebuilt.spec["bonds"] == [list(b) for b in bonds]


def test_bond_edges_come_from_the_topology_and_need_the_egnn():
    aldp = load_system("aldp")
    spec = default_net_spec(aldp, None, bond_edges=True)
    assert len(spec["bonds"]) == aldp.topology.n_bonds == 21
    with pytest.raises(ConfigError, match="bond_edges"):
        default_net_spec(load_system("lj13"), None, bond_edges=True)
    with pytest.raises(ConfigError, match="bond_edges"):
        default_net_spec(aldp, "e3nn", bond_edges=True)
