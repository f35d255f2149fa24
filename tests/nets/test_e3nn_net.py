"""E3NNVelocity: SE(3)- and permutation-equivariance, no reflection equivariance, rebuild from spec."""

from __future__ import annotations

import json
import math

import pytest
import torch

pytest.importorskip("e3nn")

from e3nn import o3  # noqa: E402
from e3nn.util.test import equivariance_error  # noqa: E402

from molsample.errors import ConfigError, ShapeError  # noqa: E402
from molsample.nets.e3nn_conv import Convolution, senders  # noqa: E402
from molsample.nets.e3nn_net import E3NNVelocity, atom_types_from_topology  # noqa: E402
from molsample.testing import assert_equivariant, random_orthogonal  # noqa: E402

N = 8  # small systems keep the file fast; ALDP-sized checks use 22


def _net(n: int = N, **kw) -> E3NNVelocity:
    torch.manual_seed(0)
    return E3NNVelocity(n, **kw).double()


@pytest.fixture
def x(generator: torch.Generator) -> torch.Tensor:
    return torch.randn(4, N, 3, generator=generator, dtype=torch.float64)


def test_rotation_translation_permutation_equivariant(x: torch.Tensor) -> None:
    net = _net()
    t = torch.tensor([0.1, 0.4, 0.7, 0.9], dtype=torch.float64)
    assert_equivariant(lambda y: net(t, y), x, reflections=False, atol=1e-10, rtol=1e-8)


def test_e3nn_equivariance_error_rotation_small_parity_large(x: torch.Tensor) -> None:
    # e3nn's own checker: proper rotations (parity_k = 0) pass, the inversion (parity_k = 1) does not
    net = _net()
    errors = equivariance_error(lambda y: net(0.3, y), [x], irreps_in=["cartesian_points"], irreps_out=["1o"],
                                ntrials=2)
    for (parity, _), err in errors.items():
        if parity == 0:
            assert float(err.max()) < 1e-5
        else:
            assert float(err.max()) > 1e-2


def test_not_reflection_equivariant_by_a_clear_margin(x: torch.Tensor, generator: torch.Generator) -> None:
    net = _net()
    v = net(0.5, x)
    scale = v.abs().max()
    for q in (-torch.eye(3, dtype=torch.float64), torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)),
              random_orthogonal(3, generator, reflection=True)):
        gap = (net(0.5, x @ q.T) - v @ q.T).abs().max()
        assert gap > 1e-2 * scale, f"mirrored output equals the mirrored velocity (gap {gap:.2e})"
    with pytest.raises(AssertionError, match="reflection"):
        assert_equivariant(lambda y: net(0.5, y), x, rotations=False, translations=False, permutations=False)


def test_achiral_variant_is_e3_equivariant(x: torch.Tensor) -> None:
    # the same architecture without parity mixing is O(3)-equivariant: the mixing is what breaks it
    net = _net(chiral=False)
    assert_equivariant(lambda y: net(0.3, y), x, atol=1e-10, rtol=1e-8)


def test_output_zero_mean_shape_and_time_forms(x: torch.Tensor) -> None:
    net = _net()
    v = net(0.25, x)
    assert v.shape == x.shape and v.dtype == torch.float64
    assert v.mean(dim=1).abs().max() < 1e-12
    assert v.abs().max() > 1e-3
    for t in (torch.tensor(0.25, dtype=torch.float64), torch.full((4,), 0.25, dtype=torch.float64),
              torch.tensor([0.25], dtype=torch.float64)):
        torch.testing.assert_close(net(t, x), v)
    # the time matters
    assert (net(0.9, x) - v).abs().max() > 1e-4
    # per-sample times equal separate calls
    tb = torch.tensor([0.1, 0.5, 0.6, 0.95], dtype=torch.float64)
    vb = net(tb, x)
    for i in range(4):
        torch.testing.assert_close(vb[i:i + 1], net(float(tb[i]), x[i:i + 1]))


def test_float32(x: torch.Tensor) -> None:
    torch.manual_seed(0)
    net32 = E3NNVelocity(N)
    v32 = net32(0.3, x.float())
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), net32.double()(0.3, x), atol=1e-4, rtol=1e-4)


def test_spec_rebuilds_same_net(x: torch.Tensor) -> None:
    net = _net(hidden=8, n_layers=2, lmax=2, lmax_hidden=2, n_basis=6, radial_hidden=16, r_min=0.1, r_max=4.0,
               atom_types=[0, 1, 1, 0, 2, 2, 2, 0])
    spec = json.loads(json.dumps(net.spec))  # plain data, survives JSON/TOML
    assert spec["name"] == "e3nn"
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    again = E3NNVelocity(**kwargs).double()
    again.load_state_dict(net.state_dict())
    torch.testing.assert_close(again(0.6, x), net(0.6, x))
    try:
        from molsample.nets import build_net
    except ImportError:  # the registry is optional for this test
        return
    built = build_net(spec).double()
    built.load_state_dict(net.state_dict())
    torch.testing.assert_close(built(0.6, x), net(0.6, x))


def test_atom_types_keep_symmetry_within_a_type(x: torch.Tensor) -> None:
    types = [0, 1, 1, 0, 2, 2, 2, 0]
    net = _net(atom_types=types)
    v = net(0.3, x)
    # swapping two particles of the same type permutes the output
    perm = torch.tensor([3, 2, 1, 0, 6, 5, 4, 7])  # 0↔3 (type 0), 1↔2 (type 1), 4↔6 (type 2)
    torch.testing.assert_close(net(0.3, x[:, perm]), v[:, perm])
    # swapping particles of different types does not
    perm = torch.tensor([1, 0, 2, 3, 4, 5, 6, 7])
    assert (net(0.3, x[:, perm]) - v[:, perm]).abs().max() > 1e-4
    # still rotation/translation equivariant
    assert_equivariant(lambda y: net(0.3, y), x, reflections=False, permutations=False, atol=1e-10, rtol=1e-8)


def test_atom_types_from_topology() -> None:
    mdtraj = pytest.importorskip("mdtraj")
    top = mdtraj.Topology()
    res = top.add_residue("MOL", top.add_chain())
    for sym in ("C", "H", "H", "O", "C"):
        top.add_atom(sym, mdtraj.element.get_by_symbol(sym), res)
    assert atom_types_from_topology(top) == [0, 1, 1, 2, 0]
    assert atom_types_from_topology(top, by="index") == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match="element"):
        atom_types_from_topology(top, by="mass")


def test_dense_convolution_matches_e3nn_tensor_product(generator: torch.Generator) -> None:
    # the neighbour-contracted product equals e3nn's TensorProduct (uvu, per-edge weights) summed over j ≠ i
    irreps_in = o3.Irreps("4x0e+3x0o+2x1o+2x1e+1x2e")
    irreps_sh = o3.Irreps.spherical_harmonics(2)
    torch.manual_seed(0)
    conv = Convolution(irreps_in, irreps_sh, 2, None, 6, 8).double()
    B, n = 2, 5
    h = torch.randn(B, n, irreps_in.dim, generator=generator, dtype=torch.float64)
    sh = torch.randn(B, n, n - 1, irreps_sh.dim, generator=generator, dtype=torch.float64)
    emb = torch.randn(B, n, n - 1, 6, generator=generator, dtype=torch.float64)
    mid = []
    for i, j, l_out in conv.paths:
        ir = next(ir for ir in irreps_in[i].ir * irreps_sh[j].ir if ir.l == l_out)
        mid.append((irreps_in[i].mul, ir))
    irreps_mid, perm, _ = o3.Irreps(mid).sort()
    assert irreps_mid == conv.irreps_out
    instructions = [(i, j, perm[k], "uvu", True) for k, (i, j, _) in enumerate(conv.paths)]
    tp = o3.TensorProduct(irreps_in, irreps_sh, irreps_mid, instructions,
                          shared_weights=False, internal_weights=False).double()
    ref = tp(senders(h), sh, conv.radial(emb)).sum(2) / math.sqrt(n - 1)
    # e3nn builds its coefficients in float32, hence the tolerance
    torch.testing.assert_close(conv(h, sh, emb), ref, atol=1e-5, rtol=1e-5)
    assert ref.abs().max() > 1.0


def test_senders_lists_the_other_particles() -> None:
    n = 6
    h = torch.arange(n, dtype=torch.float64).reshape(1, n, 1)
    got = senders(h)[0, :, :, 0]
    want = torch.tensor([[j for j in range(n) if j != i] for i in range(n)], dtype=torch.float64)
    torch.testing.assert_close(got, want)


def _jacobian_trace(net: E3NNVelocity, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    jac = torch.func.vmap(torch.func.jacrev(lambda y, s: net(s, y[None])[0]))(x, t)
    d = x.shape[1] * x.shape[2]
    return jac.reshape(x.shape[0], d, d).diagonal(dim1=1, dim2=2).sum(-1)


@pytest.mark.parametrize("kwargs", [
    {},
    {"n_layers": 1, "chiral": False},
    {"n_layers": 2, "lmax_hidden": 2, "atom_types": [0, 1, 2, 0, 1, 2, 0, 1]},
    {"chiral": False, "hidden": 8},
])
def test_velocity_and_divergence_is_the_jacobian_trace(x: torch.Tensor, kwargs: dict) -> None:
    net = _net(**kwargs)
    t = torch.tensor([0.1, 0.5, 0.8, 0.3], dtype=torch.float64)
    v, div = net.velocity_and_divergence(t, x)
    torch.testing.assert_close(v, net(t, x), atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(div, _jacobian_trace(net, t, x), atol=1e-10, rtol=1e-10)
    assert div.abs().max() > 1e-2


def test_divergence_in_sample_chunks_and_float32(x: torch.Tensor) -> None:
    net = _net()
    _, div = net.velocity_and_divergence(0.4, x)
    net.div_max_elements = 1  # one sample at a time
    _, div_chunked = net.velocity_and_divergence(0.4, x)
    torch.testing.assert_close(div_chunked, div, atol=1e-12, rtol=1e-12)
    v32, div32 = net.float().velocity_and_divergence(0.4, x.float())
    assert v32.dtype == div32.dtype == torch.float32
    torch.testing.assert_close(div32.double(), div, atol=1e-3, rtol=1e-4)


def test_ode_uses_the_exact_divergence(x: torch.Tensor) -> None:
    ode = pytest.importorskip("molsample.flows.ode")
    net = _net()
    t = torch.tensor(0.4, dtype=torch.float64)
    v, div = ode.field_divergence(net, t, x)
    torch.testing.assert_close(div, _jacobian_trace(net, t.expand(4), x), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(v, net(t, x))


def test_gradients_reach_every_parameter(x: torch.Tensor) -> None:
    net = _net()
    net(torch.rand(4, dtype=torch.float64), x).pow(2).sum().backward()
    dead = [name for name, p in net.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert not dead, f"parameters without gradient: {dead}"


def test_aldp_size_forward_backward() -> None:
    torch.manual_seed(0)
    net = E3NNVelocity(22)
    x = torch.randn(16, 22, 3)
    v = net(torch.rand(16), x)
    assert v.shape == (16, 22, 3) and torch.isfinite(v).all()
    v.pow(2).sum().backward()


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"n_particles": 5, "dim": 2}, ConfigError, "3-D"),
    ({"n_particles": 1}, ConfigError, "n_particles"),
    ({"n_particles": 5, "hidden": 0}, ConfigError, "hidden"),
    ({"n_particles": 5, "n_layers": 1}, ConfigError, "n_layers >= 2"),
    ({"n_particles": 5, "r_min": 2.0, "r_max": 1.0}, ConfigError, "r_min"),
    ({"n_particles": 3, "atom_types": [0, 1]}, ConfigError, "atom_types"),
    ({"n_particles": 3, "atom_types": [0, -1, 1]}, ConfigError, "atom_types"),
])
def test_bad_arguments(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        E3NNVelocity(**kwargs)


def test_bad_shape() -> None:
    net = E3NNVelocity(5)
    with pytest.raises(ShapeError, match=r"\(batch, 5, 3\)"):
        net(0.0, torch.zeros(2, 4, 3))
