"""Ramachandran basins: dihedrals against mdtraj, populations and ΔF with error bars on synthetic angles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from molsample.molecules.basins import BASINS, basin_labels, basin_populations, dihedrals_deg, phi_psi

P_TRUE = np.array([0.6, 0.3, 0.1])  # beta_c7eq, alpha_r, phi_positive


def angles_in(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(φ, ψ) drawn uniformly inside each sample's basin."""
    n = labels.shape[0]
    phi = np.where(labels == 2, rng.uniform(0, 180, n), rng.uniform(-180, 0, n))
    psi_beta = rng.uniform(-30, 180, n)
    psi_beta = np.where(psi_beta < 0, psi_beta - 150, psi_beta)  # [0, 180) or [-180, -150)
    psi = np.where(labels == 1, rng.uniform(-150, 0, n), np.where(labels == 0, psi_beta, rng.uniform(-180, 180, n)))
    return np.stack([phi, psi], axis=1)


def test_dihedrals_match_mdtraj() -> None:
    import mdtraj

    from molsample.systems.cards import load_system

    aldp = load_system("aldp")
    rng = np.random.default_rng(0)
    x = np.asarray(aldp.energy.positions)[None] + 0.03 * rng.normal(size=(16, 22, 3))
    traj = mdtraj.Trajectory(x, aldp.topology)
    ref = np.degrees(mdtraj.compute_dihedrals(traj, [[4, 6, 8, 14], [6, 8, 14, 16]]))
    assert np.allclose(phi_psi(x, aldp), ref, atol=1e-4)
    phi0, psi0 = phi_psi(np.asarray(aldp.energy.positions)[None], aldp)[0]
    assert phi0 == pytest.approx(-77.5, abs=0.1) and psi0 == pytest.approx(54.1, abs=0.1)   # docs/openmm.md
    assert np.allclose(dihedrals_deg(-x, (4, 6, 8, 14)), -ref[:, 0], atol=1e-4)              # mirror: φ → −φ


def test_labels_partition_the_torus() -> None:
    a = np.array([[-80, 60], [-150, 160], [-80, -170], [-70, -40], [-70, -150], [-80, 0], [60, 40], [0, -60]])
    assert basin_labels(a).tolist() == [0, 0, 0, 1, 1, 0, 2, 2]


def test_independent_populations_and_delta_f() -> None:
    rng = np.random.default_rng(1)
    n = 20_000
    lab = rng.choice(3, size=n, p=P_TRUE)
    st = basin_populations(angles_in(lab, rng))
    for k, b in enumerate(BASINS):
        assert abs(st.populations[b] - P_TRUE[k]) < 4 * st.se[b]
        assert st.se[b] == pytest.approx(math.sqrt(P_TRUE[k] * (1 - P_TRUE[k]) / n), rel=0.05)
    df_true = -math.log(P_TRUE[0] / P_TRUE[1])
    assert abs(st.delta_f_kT - df_true) < 4 * st.delta_f_se_kT
    # delta method: Var(ln p_β − ln p_α) = (1/p_β + 1/p_α)/n for multinomial counts
    assert st.delta_f_se_kT == pytest.approx(math.sqrt((1 / P_TRUE[0] + 1 / P_TRUE[1]) / n), rel=0.05)


def test_weighted_samples_recover_the_target() -> None:
    """Uniform proposal over the basins, weights p_k / (1/3): the weighted populations are P_TRUE."""
    rng = np.random.default_rng(2)
    n = 30_000
    lab = rng.choice(3, size=n)
    logw = np.log(P_TRUE[lab] * 3)
    st = basin_populations(angles_in(lab, rng), logw)
    assert st.kind == "weighted" and n / 2 < st.n_eff < n
    for k, b in enumerate(BASINS):
        assert abs(st.populations[b] - P_TRUE[k]) < 4 * st.se[b]
    assert abs(st.delta_f_kT + math.log(2.0)) < 4 * st.delta_f_se_kT
    # zero weights (−inf) remove samples
    logw2 = np.where(lab == 2, -np.inf, logw)
    st2 = basin_populations(angles_in(lab, rng), logw2)
    assert st2.populations["phi_positive"] == 0.0
    # one sample carrying (almost) all the weight: no error bar
    degenerate = np.where(np.arange(n) == 0, 0.0, -50.0)
    assert math.isnan(basin_populations(angles_in(lab, rng), degenerate).delta_f_se_kT)


def test_time_series_error_bars_use_tau() -> None:
    """A sticky Markov chain over the basins: the τ_int error bar matches the spread over chains."""
    rng = np.random.default_rng(3)
    stay, n, chains = 0.95, 4000, 60
    est, ses = [], []
    for _ in range(chains):
        lab = np.empty(n, dtype=np.int64)
        lab[0] = rng.choice(3, p=P_TRUE)
        jump = rng.random(n) > stay
        fresh = rng.choice(3, size=n, p=P_TRUE)
        for t in range(1, n):
            lab[t] = fresh[t] if jump[t] else lab[t - 1]
        st = basin_populations(angles_in(lab, rng), time_series=True)
        est.append(st.populations["beta_c7eq"])
        ses.append(st.se["beta_c7eq"])
    spread, mean_se = float(np.std(est)), float(np.mean(ses))
    # τ_int of the indicator = (1 + stay)/(1 − stay) = 39: naive se is ~6x too small
    naive = math.sqrt(P_TRUE[0] * (1 - P_TRUE[0]) / n)
    assert mean_se > 4 * naive
    assert 0.7 < mean_se / spread < 1.4
    assert abs(np.mean(est) - P_TRUE[0]) < 4 * spread / math.sqrt(chains)


def test_basins_figure(tmp_path) -> None:
    from molsample.reporting.basins_figure import basins_figure
    from molsample.systems.cards import load_system

    aldp = load_system("aldp")
    rng = np.random.default_rng(4)
    x = np.asarray(aldp.energy.positions)[None] + 0.02 * rng.normal(size=(200, 22, 3))
    fig, caption = basins_figure(aldp, x, x[:100], flow_logw=rng.normal(size=200))
    assert len(fig.axes) == 3 and "reweighted flow" in caption
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert all("ΔF(β−αR)" in t and "φ>0" in t for t in texts)
    # weights far below 1 (huge energies) still draw: the histogram normalises by the largest weight
    fig3, _ = basins_figure(aldp, x, None, flow_logw=-1e10 + rng.normal(size=200))
    h = [c.get_array() for c in fig3.axes[1].collections]
    assert h and np.isfinite(np.asarray(h[0], dtype=float)).any()
    fig.savefig(tmp_path / "rama.png")
    assert (tmp_path / "rama.png").stat().st_size > 10_000
    fig2, _ = basins_figure(aldp, x, None)
    assert len(fig2.axes) == 1
    lj = load_system("lj13")
    assert basins_figure(lj, np.zeros((2, 13, 3)), None) is None
