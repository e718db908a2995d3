"""simmm.atomic: whole files or none, with the permissions a plain open() would give."""
import os
import stat

import pytest

from simmm.atomic import atomic_write


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_written_files_get_the_umask_permissions_not_mkstemps_private_ones(tmp_path, mask):
    old = os.umask(mask)
    try:
        atomic_write(tmp_path / "f.json", lambda h: h.write(b"{}"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.json").stat().st_mode) == 0o666 & ~mask
    assert (tmp_path / "f.json").read_bytes() == b"{}"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    (tmp_path / "f").write_bytes(b"old")

    def fail(handle):
        handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "f", fail)
    assert (tmp_path / "f").read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["f"]
