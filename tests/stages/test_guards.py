"""Refusals from declared capabilities: a net that moves the centre of mass on a CoM-free system, and
a rotating coupling with a reward that does not declare itself invariant; before anything is written."""

import pytest

from molsample.errors import ConfigError
from molsample.stages.config import RunConfig
from molsample.stages.context import RunContext
from molsample.stages.guards import check_centre_of_mass, check_reward_coupling
from molsample.systems.cards import load_system
from _run_helpers import molsample


@pytest.mark.parametrize("name", ["mlp", "affine"])
def test_a_net_that_moves_the_centre_of_mass_is_refused_on_a_com_free_system(name):
    with pytest.raises(ConfigError, match=rf"net '{name}' does not keep the centre of mass.*--net egnn"):
        check_centre_of_mass(name, load_system("dw4"))
    check_centre_of_mass("egnn", load_system("dw4"))
    check_centre_of_mass(None, load_system("dw4"))
    check_centre_of_mass(name, load_system("ring2d"))  # no centre of mass to keep


@pytest.mark.parametrize("command", ["tilt", "pretrain"])
def test_tilt_and_pretrain_with_the_mlp_on_a_cluster_exit_2_and_write_nothing(tmp_path, command):
    args = [command, "--system", "dw4", "--net", "mlp", "--out", "runs/x"]
    proc = molsample(*args, *(["--preset", "smoke"] if command == "tilt" else []), cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'mlp'" in lines[0] and "--net egnn" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_run_context_refuses_the_mlp_unless_the_run_starts_from_a_model(tmp_path):
    cfg = RunConfig(system="dw4")
    cfg.net.name = "mlp"
    with pytest.raises(ConfigError, match="centre of mass"):
        RunContext.create(cfg, tmp_path / "run")
    cfg.start.model = "some.pt"  # a start model is not trained here: nothing to refuse
    RunContext.create(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("coupling", ["aligned", "equivariant-ot"])
def test_rotating_couplings_need_a_reward_that_declares_itself_invariant(tmp_path, coupling):
    system = load_system("gauss2d")
    with pytest.raises(ConfigError, match=rf"coupling '{coupling}'.*invariant = true.*--coupling independent"):
        check_reward_coupling(coupling, "reward", system)
    check_reward_coupling(coupling, "temperature", system)
    check_reward_coupling("independent", "reward", system)
    card = tmp_path / "gauss2d-invariant.toml"
    text = (system.card_path if system.card_path else None)
    card.write_text(open(text).read().replace("beta = 1.0", "beta = 1.0\ninvariant = true"))
    check_reward_coupling(coupling, "reward", load_system(str(card)))


def test_run_context_refuses_the_aligned_coupling_in_reward_mode(tmp_path):
    cfg = RunConfig(system="gauss2d", mode="reward")
    cfg.pretrain.coupling = "aligned"
    with pytest.raises(ConfigError, match="invariant = true"):
        RunContext.create(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
