"""The bond-graph (harmonic) prior: exact CoM-free log density, invariances, samples, selection by card."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from molsample.errors import ConfigError
from molsample.flows.distributions import CoMFreeGaussian, HarmonicPrior, base_distribution, bond_laplacian

#: a branched 6-atom molecule plus one atom without bonds (tests the isotropic term)
BONDS = [(0, 1), (1, 2), (2, 3), (1, 4), (4, 5)]
N, D = 7, 3


def subspace_basis(n: int, d: int) -> torch.Tensor:
    """Orthonormal basis (n·d, (n−1)·d) of the zero-CoM configurations (flattened row-major (i, c))."""
    m = torch.eye(n, dtype=torch.float64) - 1.0 / n
    evals, evecs = torch.linalg.eigh(m)
    q = evecs[:, evals > 0.5]                   # n − 1 eigenvectors with eigenvalue 1
    return torch.kron(q, torch.eye(d, dtype=torch.float64))


def brute_force_log_prob(prior: HarmonicPrior, x: torch.Tensor) -> torch.Tensor:
    """log N(Uᵀx; 0, (Uᵀ(A ⊗ I)U)⁻¹) with an explicit orthonormal basis U of the subspace."""
    u = subspace_basis(N, D)
    a_full = torch.kron(prior.precision, torch.eye(D, dtype=torch.float64))
    mvn = torch.distributions.MultivariateNormal(torch.zeros(u.shape[1], dtype=torch.float64),
                                                 precision_matrix=u.T @ a_full @ u)
    xc = x - x.mean(dim=1, keepdim=True)
    return mvn.log_prob(xc.reshape(x.shape[0], -1) @ u)


def random_orthogonal(generator: torch.Generator, reflect: bool) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if (torch.det(q) < 0) != reflect:
        q[:, 0] = -q[:, 0]
    return q


def test_laplacian() -> None:
    lap = bond_laplacian(4, [(0, 1), (1, 2), (2, 1), (1, 3)])
    assert lap.tolist() == [[1, -1, 0, 0], [-1, 3, -1, -1], [0, -1, 1, 0], [0, -1, 0, 1]]
    with pytest.raises(ConfigError):
        bond_laplacian(3, [(0, 3)])


@pytest.mark.parametrize("bond_std, std", [(0.15, 0.17), (0.1, 1.0)])
def test_log_prob_matches_brute_force_normal_on_the_subspace(bond_std, std, generator) -> None:
    prior = HarmonicPrior(N, D, BONDS, bond_std=bond_std, std=std)
    x = torch.randn(5, N, D, generator=generator, dtype=torch.float64) * 0.2
    assert torch.allclose(prior.log_prob(x), brute_force_log_prob(prior, x), atol=1e-9)
    # translation does not change the density (inputs are projected on the subspace)
    assert torch.allclose(prior.log_prob(x + torch.tensor([1.0, -2.0, 0.5])), prior.log_prob(x), atol=1e-9)
    assert prior.dof == (N - 1) * D


def test_without_bonds_it_is_the_com_free_gaussian(generator) -> None:
    x = torch.randn(4, N, D, generator=generator, dtype=torch.float64)
    prior, iso = HarmonicPrior(N, D, [], std=0.3), CoMFreeGaussian(N, D, std=0.3)
    assert torch.allclose(prior.log_prob(x), iso.log_prob(x), atol=1e-10)


def test_invariant_under_rotation_and_reflection(generator) -> None:
    prior = HarmonicPrior(N, D, BONDS, bond_std=0.15, std=0.5)
    x = prior.sample(8, generator=generator, dtype=torch.float64)
    for reflect in (False, True):
        r = random_orthogonal(generator, reflect)
        assert torch.allclose(prior.log_prob(x @ r.T), prior.log_prob(x), atol=1e-10)


def test_samples_are_com_free_with_the_prior_covariance(generator) -> None:
    prior = HarmonicPrior(N, D, BONDS, bond_std=0.15, std=0.5)
    n = 40_000
    x = prior.sample(n, generator=generator, dtype=torch.float64)
    assert x.shape == (n, N, D) and x.dtype == torch.float64
    assert x.mean(dim=1).abs().max() < 1e-12
    # per-component covariance over particles vs Q A⊥⁻¹ Qᵀ (the pseudo-inverse of A on the subspace)
    emp = torch.einsum("bic,bjc->ij", x, x) / (n * D)
    u1 = torch.eye(N, dtype=torch.float64) - 1.0 / N
    expected = torch.linalg.pinv(u1 @ prior.precision @ u1, hermitian=True)
    assert torch.allclose(prior.covariance, expected, atol=1e-10)
    se = (expected.diagonal()[:, None] * expected.diagonal()[None, :] + expected**2).sqrt() / math.sqrt(n * D)
    assert ((emp - expected).abs() < 5 * se + 1e-12).all()
    # bonded atoms are closer than non-bonded ones: E|x_0 − x_1|² < E|x_0 − x_6|²
    d01 = (x[:, 0] - x[:, 1]).pow(2).sum(-1).mean()
    d06 = (x[:, 0] - x[:, 6]).pow(2).sum(-1).mean()
    assert d01 < 0.5 * d06
    # the sample log density has mean −dof/2 − log normaliser (chi-square with dof degrees of freedom)
    lp = prior.log_prob(x)
    mean_expected = -0.5 * prior.dof + 0.5 * D * prior.logdet_perp - 0.5 * prior.dof * math.log(2 * math.pi)
    assert abs(float(lp.mean()) - mean_expected) < 5 * math.sqrt(0.5 * prior.dof / n)


def test_float32_samples_and_generator_reproducibility() -> None:
    prior = HarmonicPrior(N, D, BONDS)
    a = prior.sample(3, generator=torch.Generator().manual_seed(5))
    b = prior.sample(3, generator=torch.Generator().manual_seed(5))
    assert a.dtype == torch.float32 and torch.equal(a, b)
    assert prior.log_prob(a).dtype == torch.float32


def test_selected_by_the_card() -> None:
    from molsample.systems.cards import load_system

    aldp = load_system("aldp")
    assert type(base_distribution(aldp)) is CoMFreeGaussian
    harm = dataclasses.replace(aldp, card={**aldp.card, "base": {"kind": "harmonic", "bond_std": 0.1}})
    prior = base_distribution(harm)
    assert isinstance(prior, HarmonicPrior) and len(prior.bonds) == 21
    assert prior.bond_std == 0.1 and prior.std == aldp.length_scale
    with pytest.raises(ConfigError, match="unknown base kind"):
        base_distribution(dataclasses.replace(aldp, card={**aldp.card, "base": {"kind": "student"}}))
    lj = load_system("lj13")
    with pytest.raises(ConfigError, match="needs a system with bonds"):
        base_distribution(dataclasses.replace(lj, card={**lj.card, "base": {"kind": "harmonic"}}))
    with pytest.raises(ConfigError):
        HarmonicPrior(3, 3, [(0, 1)], bond_std=-1.0)


def test_selected_by_a_run_config_and_keyed_in_pretraining(tmp_path) -> None:
    """A run config's [base] overrides the card's; a pretrained field of another base is not reused."""
    from molsample.stages.config import config_from_dict
    from molsample.stages.context import RunContext
    from molsample.stages.pretrain import pretrain_field
    from molsample.training.flow_matching import FlowMatchingConfig

    cfg = config_from_dict({"system": "aldp", "base": {"kind": "harmonic", "bond_std": 0.12}}).validate()
    ctx = RunContext.create(cfg, tmp_path / "run", progress=False)
    assert isinstance(ctx.base, HarmonicPrior) and ctx.base.bond_std == 0.12 and ctx.base.std == 0.17
    plain = RunContext.create(config_from_dict({"system": "aldp"}).validate(), tmp_path / "run", progress=False)
    assert type(plain.base) is CoMFreeGaussian
    for table, needle in (({"kind": "student"}, "base.kind = 'student'"), ({"bond_std": 0.0}, "base.bond_std")):
        with pytest.raises(ConfigError, match=needle):
            config_from_dict({"system": "aldp", "base": table}).validate()

    spec = {"name": "egnn", "n_particles": 22, "dim": 3, "hidden": 8, "n_layers": 1, "length_scale": 0.17}
    data = 0.1 * torch.randn(16, 22, 3, generator=torch.Generator().manual_seed(0))
    out, said = tmp_path / "pretrained.pt", []
    kw = dict(device=torch.device("cpu"), dtype=torch.float32, progress=False, echo=said.append)
    fm = FlowMatchingConfig(steps=2, batch_size=4)
    pretrain_field(spec, data, ctx.base, fm, out, **kw)
    pretrain_field(spec, data, ctx.base, fm, out, **kw)
    assert said == [f"pretraining: reusing {out}"]
    pretrain_field(spec, data, plain.base, fm, out, **kw)  # the Gaussian base: trained again
    assert said == [f"pretraining: reusing {out}"]
    assert torch.load(out, weights_only=False)["base"] == repr(plain.base)


def test_pretrain_cli_base_option(tmp_path, capsys) -> None:
    import numpy as np

    from molsample.cli import main
    from molsample.nets import load_model

    def run(*extra: str) -> tuple[int, str]:
        try:
            main(["pretrain", "--system", "aldp", "--data", str(tmp_path / "x.npy"), "--steps", "1",
                  "--batch-size", "4", "--hidden", "8", "--layers", "1", "--quiet", *extra])
            code = 0
        except SystemExit as exc:
            code = exc.code
        return code, capsys.readouterr().err

    np.save(tmp_path / "x.npy", 0.1 * np.random.default_rng(0).normal(size=(16, 22, 3)).astype(np.float32))
    code, err = run("--out", str(tmp_path / "m"), "--base", "harmonic", "--bond-std", "0.1")
    assert code == 0, err
    assert load_model(tmp_path / "m" / "model.pt")[1]["base"].startswith(
        "HarmonicPrior(n_particles=22, dim=3, bonds=21, bond_std=0.1,")
    code, err = run("--out", str(tmp_path / "m2"), "--base", "harmonic", "--bond-std", "-1")
    assert code == 2 and "--bond-std must be > 0" in err
