"""Atomic writes: files get the mode the umask asks for (not mkstemp's 0600), and failures leave nothing."""

import os
import stat

import pytest

from molsample.io.atomic import atomic_path, write_text_atomic
from molsample.io.hdf5 import RunFile


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_respect_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
        with RunFile(tmp_path / "b.h5", "w") as rf:
            rf.set_attrs(system="x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "b.h5").stat().st_mode) == mode


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "c.png", ".png") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
