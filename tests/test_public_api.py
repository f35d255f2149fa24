import subprocess
import sys

import molsample


def test_every_public_name_resolves():
    for name in molsample.__all__:
        assert getattr(molsample, name) is not None, name


def test_import_is_light():
    code = "import sys, molsample; molsample.load_system('lj13'); print(sorted(m for m in ('e3nn', 'h5py') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
