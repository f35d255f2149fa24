import pytest
import torch

from conftest import load_minimum
from molsample.energies import LennardJones
from molsample.errors import ConfigError, ShapeError
from molsample.testing import assert_forces_match_fd, random_orthogonal

# Cambridge Cluster Database global minima (ε units, unique pairs, no oscillator)
KNOWN_MINIMA = {13: -44.326801, 55: -279.248470}


@pytest.mark.parametrize("n", [13, 55])
def test_global_minimum_energy(n):
    lj = LennardJones(n, pair_factor=1.0, oscillator_scale=0.0).double()
    e = lj.energy(load_minimum(n)).item()
    assert e == pytest.approx(KNOWN_MINIMA[n], rel=1e-5)


@pytest.mark.parametrize("n", [13, 55])
def test_minimum_is_stationary(n):
    lj = LennardJones(n).double()
    f = lj.force(load_minimum(n))
    assert f.abs().max() < 1e-5


def test_pair_minimum_at_r_m():
    lj = LennardJones(2, r_m=1.3, epsilon=2.0).double()
    d = torch.linspace(0.9, 2.0, 2001, dtype=torch.float64)
    x = torch.zeros(len(d), 2, 3, dtype=torch.float64)
    x[:, 1, 0] = d
    e = lj.energy(x)
    assert d[e.argmin()].item() == pytest.approx(1.3, abs=1e-3)
    assert e.min().item() == pytest.approx(-2.0, rel=1e-6)


def test_pair_factor_doubles_pair_term():
    x = load_minimum(13) + 0.05 * torch.randn(4, 13, 3, dtype=torch.float64)
    e1 = LennardJones(13, pair_factor=1.0).double().energy(x)
    e2 = LennardJones(13, pair_factor=2.0).double().energy(x)
    torch.testing.assert_close(e2, 2 * e1)


def test_oscillator_term_value_and_translation_invariance():
    x = load_minimum(13) + 0.1 * torch.randn(3, 13, 3, dtype=torch.float64)
    plain = LennardJones(13, pair_factor=2.0).double()
    osc = LennardJones(13, pair_factor=2.0, oscillator_scale=1.0).double()
    centred = x - x.mean(1, keepdim=True)
    torch.testing.assert_close(osc.energy(x) - plain.energy(x), 0.5 * (centred**2).sum((1, 2)))
    shift = torch.tensor([3.0, -7.0, 11.0], dtype=torch.float64)
    torch.testing.assert_close(osc.energy(x + shift), osc.energy(x))


def test_rotation_and_permutation_invariance():
    g = torch.Generator().manual_seed(3)
    lj = LennardJones(13, pair_factor=2.0, oscillator_scale=1.0).double()
    x = load_minimum(13) + 0.1 * torch.randn(5, 13, 3, dtype=torch.float64, generator=g)
    q = random_orthogonal(3, g)
    torch.testing.assert_close(lj.energy(x @ q.T), lj.energy(x))
    perm = torch.randperm(13, generator=g)
    torch.testing.assert_close(lj.energy(x[:, perm]), lj.energy(x))


@pytest.mark.parametrize("pair_factor,osc", [(1.0, 0.0), (2.0, 1.0)])
def test_forces_match_finite_differences(pair_factor, osc):
    lj = LennardJones(13, pair_factor=pair_factor, oscillator_scale=osc).double()
    x = load_minimum(13) + 0.08 * torch.randn(3, 13, 3, dtype=torch.float64)
    assert_forces_match_fd(lj, x, n_coords=None, eps=1e-6, rtol=1e-6, atol=1e-6)


def test_coincident_particles_give_finite_energy_and_gradient():
    lj = LennardJones(13)
    x = load_minimum(13).float().repeat(2, 1, 1)
    x[0, 1] = x[0, 0]  # two atoms on top of each other
    x[1] = 0.0  # all atoms at one point
    e, f = lj.energy_and_force(x)
    assert torch.isfinite(e).all() and torch.isfinite(f).all()
    assert (e > 1e6).all()


def test_batched_dtypes(dtype, tol, device):
    lj = LennardJones(13).to(device=device, dtype=dtype)
    x = load_minimum(13).to(device=device, dtype=dtype).repeat(7, 1, 1)
    e = lj.energy(x)
    assert e.shape == (7,) and e.dtype == dtype
    assert lj.force(x).shape == (7, 13, 3)
    # every precision gives the float64 energy of the committed minimum within its tolerance
    e64 = LennardJones(13).double().energy(load_minimum(13)).to(device=device, dtype=dtype)
    torch.testing.assert_close(e, e64.expand(7), **tol)


def test_wrong_shape_is_a_clear_error():
    lj = LennardJones(13)
    with pytest.raises(ShapeError, match=r"\(batch, 13, 3\)"):
        lj.energy(torch.zeros(4, 12, 3))
    # a single configuration and a flat batch are accepted
    assert lj.energy(torch.randn(13, 3)).shape == (1,)
    assert lj.energy(torch.randn(2, 39)).shape == (2,)


def test_bad_parameters():
    with pytest.raises(ConfigError):
        LennardJones(1)
    with pytest.raises(ConfigError):
        LennardJones(13, epsilon=-1.0)
