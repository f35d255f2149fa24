"""Starting configurations of reference chains: the lattice at the pair length, relaxation that only
lowers energies and leaves no overlap, the random ball, structures, single particles, seeding."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from molsample.mcmc.initial_configurations import initial_configurations
from molsample.systems.cards import load_system

F64 = torch.float64
#: card name -> the pair length the lattice is spaced by (LJ r_m, double-well d0)
SCALES = {"dw4": 4.0, "lj13": 1.0}


def min_pair_distance(x: torch.Tensor) -> torch.Tensor:
    """``(chains,)`` smallest distance between two particles of each configuration ``(chains, n, d)``."""
    d = torch.cdist(x, x)
    return (d + torch.diag(torch.full((x.shape[1],), math.inf, dtype=x.dtype))).amin((1, 2))


@pytest.mark.parametrize("name", ["dw4", "lj13"])
def test_the_bare_lattice_is_spaced_by_the_pair_length_and_centred(name):
    system = load_system(name)
    x, evals = initial_configurations(system, 3, noise=0.0, relax_steps=0)
    n, d = system.event_shape
    assert x.shape == (3, n, d) and x.dtype == F64 and evals == 0
    assert min_pair_distance(x).tolist() == pytest.approx([SCALES[name]] * 3, rel=1e-12)
    assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])  # no noise: every chain alike
    assert x.mean(1).abs().max() < 1e-12


@pytest.mark.parametrize("name, min_distance", [("dw4", 0.5), ("lj13", 0.9)])
def test_relaxation_only_lowers_energies_and_leaves_no_overlap(name, min_distance):
    system = load_system(name)
    chains, steps = 12, 60
    raw, _ = initial_configurations(system, chains, relax_steps=0, generator=torch.Generator().manual_seed(4))
    x, evals = initial_configurations(system, chains, relax_steps=steps,
                                      generator=torch.Generator().manual_seed(4))
    e_raw, e = system.energy.energy(raw), system.energy.energy(x)
    assert torch.all(e <= e_raw) and torch.isfinite(e).all()
    assert evals == chains * (steps + 1)
    assert torch.all(min_pair_distance(x) > min_distance * SCALES[name])
    assert x.mean(1).abs().max() < 1e-12


@pytest.mark.parametrize("init", ["lattice", "random"])
def test_the_same_generator_seed_gives_the_same_starts(init):
    system = load_system("dw4")

    def draw(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return initial_configurations(system, 5, init=init, relax_steps=20, generator=g)[0]

    a, b, c = draw(9), draw(9), draw(10)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # each chain its own noise


def test_the_random_start_is_uniform_in_a_ball_of_the_lattices_density():
    """Without centring or relaxation every particle lies within 0.6·scale·n^{1/d} of the origin; the
    first one uniformly (in 2-D a quarter of them within half that radius), and the later ones at
    least MIN_START_DISTANCE·scale from every earlier one."""
    from molsample.mcmc.initial_configurations import MIN_START_DISTANCE

    system = dataclasses.replace(load_system("dw4"), remove_com=False)
    g = torch.Generator().manual_seed(1)
    x, _ = initial_configurations(system, 2000, init="random", relax_steps=0, generator=g)
    radius = 0.6 * 4.0 * 4 ** (1 / 2)
    r = x.norm(dim=-1)
    assert float(r.max()) <= radius
    inner = float((r[:, 0] < radius / 2).double().mean())
    assert inner == pytest.approx(0.25, abs=4 * math.sqrt(0.25 * 0.75 / 2000))
    assert float(min_pair_distance(x).min()) >= MIN_START_DISTANCE * 4.0


def test_without_remove_com_the_centre_is_left_where_the_noise_put_it():
    system = dataclasses.replace(load_system("dw4"), remove_com=False)
    x, _ = initial_configurations(system, 50, noise=0.2, relax_steps=10, generator=torch.Generator().manual_seed(2))
    assert float(x.mean(1).norm(dim=-1).max()) > 0.05


class _NeverCalled:
    """An energy with a structure that must not be evaluated (structures are not relaxed)."""

    def __init__(self, positions: torch.Tensor) -> None:
        self.positions = positions.numpy()

    def energy_and_force(self, x: torch.Tensor):
        raise AssertionError("a structure start was relaxed")


def test_a_structure_starts_from_itself_with_a_hundredth_of_the_noise():
    g = torch.Generator().manual_seed(3)
    structure = torch.randn(5, 3, generator=g, dtype=F64) + 2.0
    system = SimpleNamespace(event_shape=(5, 3), energy=_NeverCalled(structure), remove_com=True)
    x, evals = initial_configurations(system, 4, noise=0.0)
    assert evals == 0
    torch.testing.assert_close(x, (structure - structure.mean(0)).expand(4, 5, 3), rtol=0, atol=1e-14)
    y, _ = initial_configurations(system, 400, noise=2.0, generator=g)
    spread = (y - (structure - structure.mean(0))).std()
    assert float(spread) == pytest.approx(0.02 * math.sqrt(4 / 5), rel=0.05)  # 0.01·noise, centred over 5 atoms


def test_a_single_particle_starts_standard_normal():
    system = load_system("gauss2d")
    x, evals = initial_configurations(system, 6, generator=torch.Generator().manual_seed(5))
    assert evals == 0
    assert torch.equal(x, torch.randn(6, 1, 2, generator=torch.Generator().manual_seed(5), dtype=F64))


@pytest.mark.parametrize("name", ["lj13", "lj55"])
def test_relaxed_random_starts_of_a_lennard_jones_cluster_have_no_overlap(name):
    """Random starts keep atoms apart: two atoms inside the LJ distance floor (0.2 r_m) feel no force
    between them, so no relaxation would separate them."""
    system = load_system(name)
    x, _ = initial_configurations(system, 64, init="random", generator=torch.Generator().manual_seed(0))
    assert torch.all(min_pair_distance(x) > 0.5)
    assert torch.all(system.energy.energy(x) < 0)
