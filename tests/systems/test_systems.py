import subprocess
import sys
from pathlib import Path

import pytest
import torch

from molsample import load_system
from molsample.cli import main
from molsample.errors import ConfigError, MissingFileError, UnknownSystemError
from molsample.systems.cards import available_systems


@pytest.mark.parametrize(
    "name,n,dim,pair_factor,osc",
    [("lj13", 13, 3, 2.0, 1.0), ("lj55", 55, 3, 2.0, 1.0)],
)
def test_lj_cards_use_benchmark_convention(name, n, dim, pair_factor, osc):
    s = load_system(name)
    assert (s.n_particles, s.dim, s.kT, s.remove_com) == (n, dim, 1.0, True)
    assert s.energy.pair_factor == pair_factor and s.energy.oscillator_scale == osc
    assert s.topology is not None and s.topology.n_atoms == n


@pytest.mark.parametrize("name,shape", [("dw4", (4, 2)), ("ring2d", (1, 2)), ("gauss2d", (1, 2))])
def test_other_cards(name, shape):
    s = load_system(name)
    assert s.event_shape == shape
    x = torch.randn(3, *shape)
    assert s.reduced_energy(x).shape == (3,)


def test_cards_are_listed():
    assert {"lj13", "lj55", "dw4", "ring2d", "gauss2d"} <= set(available_systems())


def test_unknown_system_lists_known_ones():
    with pytest.raises(UnknownSystemError, match="known systems: .*lj13"):
        load_system("lj14")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "card.toml"
    p.write_text(text)
    return p


def test_malformed_toml(tmp_path):
    with pytest.raises(ConfigError, match="malformed TOML"):
        load_system(write(tmp_path, "name = \n[energy"))


def test_missing_key_names_key_and_file(tmp_path):
    p = write(tmp_path, 'kT = 1.0\n[energy]\ntype = "lennard_jones"\n')
    with pytest.raises(ConfigError, match=r"card.toml.*n_particles"):
        load_system(p)


def test_wrong_type_and_missing_temperature(tmp_path):
    with pytest.raises(ConfigError, match="must be int"):
        load_system(write(tmp_path, 'kT = 1.0\n[energy]\ntype = "lennard_jones"\nn_particles = "13"\n'))
    with pytest.raises(ConfigError, match="kT"):
        load_system(write(tmp_path, '[energy]\ntype = "lennard_jones"\nn_particles = 13\n'))
    with pytest.raises(ConfigError, match="type"):
        load_system(write(tmp_path, 'kT = 1.0\n[energy]\ntype = "spring"\n'))


def test_missing_card_file(tmp_path):
    with pytest.raises(MissingFileError):
        load_system(tmp_path / "nope.toml")


def test_plugin_energy_card(tmp_path, project_root):
    card = write(tmp_path, f"""
kT = 0.5
[energy]
type = "plugin"
path = "{project_root / 'potentials/harmonic_example.py'}:HarmonicWells"
params = {{ n_particles = 3, dim = 3, k = 2.0 }}
""")
    s = load_system(card)
    x = torch.tensor([[[1.0, 0, 0], [-1.0, 0, 0], [0, 0, 0]]])
    assert s.energy.energy(x).item() == pytest.approx(2.0)
    assert s.kT == 0.5


def test_plugin_missing_file(tmp_path):
    card = write(tmp_path, 'kT = 1.0\n[energy]\ntype = "plugin"\npath = "nowhere.py:X"\n')
    with pytest.raises(MissingFileError, match="nowhere.py"):
        load_system(card)


def test_cli_systems_lists_everything(capsys):
    main(["systems"])
    out = capsys.readouterr().out
    for name in ("lj13", "lj55", "dw4", "ring2d", "gauss2d"):
        assert name in out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["energy", "--system", "lj14"], "unknown system 'lj14'"),
        (["energy", "--system", "dw4"], "--positions"),
        (["energy", "--system", "lj13", "--positions", "missing.npy"], "cannot read positions"),
    ],
)
def test_cli_user_errors_exit_2_without_traceback(argv, needle):
    proc = subprocess.run([sys.executable, "-m", "molsample", *argv], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_energy_of_minimum(tmp_path, data_dir):
    import numpy as np

    x = np.loadtxt(data_dir / "lj13_minimum.txt")
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([sys.executable, "-m", "molsample", "energy", "--system", "lj13",
                           "--positions", str(tmp_path / "x.npy")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # benchmark convention: 2 × (−44.326801) + oscillator term
    e = float(proc.stdout.split()[1])
    c = x - x.mean(0)
    assert e == pytest.approx(2 * -44.326801 + 0.5 * (c**2).sum(), rel=1e-6)


@pytest.mark.parametrize("value", ["0.0", "-0.2", '"big"', "true"])
def test_bad_length_scale_names_the_key(tmp_path, value):
    text = f'kT = 1.0\nlength_scale = {value}\n[energy]\ntype = "lennard_jones"\nn_particles = 13\n'
    with pytest.raises(ConfigError, match="length_scale must be a positive number"):
        load_system(write(tmp_path, text))


def test_length_scale_default_and_card_value(tmp_path):
    assert load_system("lj13").length_scale == 1.0
    text = 'kT = 1.0\nlength_scale = 0.3\n[energy]\ntype = "lennard_jones"\nn_particles = 13\n'
    assert load_system(write(tmp_path, text)).length_scale == 0.3


# --------------------------------------------------------------------------- misspelled keys, plugin params


@pytest.mark.parametrize("text,needle", [
    ('temprature_K = 300\n[energy]\ntype = "gaussian"\nmean = [0.0]\ncov = [[1.0]]\n',
     "unknown key 'temprature_K'; did you mean 'temperature_K'?"),
    ('kT = 1.0\n[energy]\ntype = "lennard_jones"\nn_particles = 3\nepsilonn = 2.0\n',
     "unknown key 'epsilonn'; did you mean 'epsilon'?"),
    ('kT = 1.0\n[energy]\ntype = "openmm"\nstructure = "x.pdb"\nplatfrom = "CPU"\n',
     "unknown key 'platfrom'; did you mean 'platform'?"),
])
def test_misspelled_card_keys_name_the_close_match(tmp_path, text, needle):
    with pytest.raises(ConfigError, match=needle.replace("?", r"\?")):
        load_system(write(tmp_path, text))


def test_shipped_cards_use_only_allowed_keys():
    for name in ("lj13", "lj55", "dw4", "ring2d", "gauss2d", "aldp"):
        load_system(name)  # raises on any unknown key


def test_plugin_unknown_parameter_is_a_config_error(tmp_path, project_root, capsys):
    card = write(tmp_path, f"""
kT = 0.5
[energy]
type = "plugin"
path = "{project_root / 'potentials/harmonic_example.py'}:HarmonicWells"
params = {{ n_particles = 3, dim = 3, kk = 2.0 }}
""")
    with pytest.raises(ConfigError, match=r"\[energy.params\].*unknown key 'kk'; did you mean 'k'\?"):
        load_system(card)
    with pytest.raises(SystemExit) as exc:
        main(["energy", "--system", str(card), "--random", "2"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "kk" in err and "Traceback" not in err


@pytest.mark.parametrize("n", ["-3", "0"])
def test_energy_random_must_be_positive(n, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["energy", "--system", "lj13", "--random", n])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"--random {n}" in err and ">= 1" in err


def test_reference_help_says_what_auto_picks():
    from molsample.commands.reference_cmd import reference
    from molsample.mcmc.reference import resolve_method

    text = next(p for p in reference.params if p.name == "method").help
    assert resolve_method(load_system("lj13")) == "mala" and "else MALA (Lennard-Jones included)" in text
    assert resolve_method(load_system("dw4")) == "pt" and "parallel tempering for the double well" in text
