import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from emotion.data.cache import load_raw
from tests.conftest import write_face


def test_second_load_comes_from_cache_and_is_identical(folder_data, tmp_path):
    first, cached1 = load_raw(folder_data, cache_dir=tmp_path / "cache")
    second, cached2 = load_raw(folder_data, cache_dir=tmp_path / "cache")
    assert (cached1, cached2) == (False, True)
    for name in ("images", "labels", "origin", "folder_split", "sources"):
        assert np.array_equal(getattr(first, name), getattr(second, name))
    assert second.report.to_dict() == first.report.to_dict()


def test_adding_a_file_invalidates_the_cache(folder_data, tmp_path):
    load_raw(folder_data, cache_dir=tmp_path / "cache")
    write_face(folder_data / "train" / "happy" / "Training_new.jpg", "happy", 99)
    raw, cached = load_raw(folder_data, cache_dir=tmp_path / "cache")
    assert not cached
    assert "train/happy/Training_new.jpg" in set(raw.sources)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


def test_files_replaced_in_place_are_decoded_again(folder_data, tmp_path):
    """As when this project's blurred training faces were restored: same file names, new pixels."""
    first, _ = load_raw(folder_data, cache_dir=tmp_path / "cache")
    target = sorted((folder_data / "train" / "happy").iterdir())[0]
    i = list(first.sources).index(f"train/happy/{target.name}")
    cv2.imwrite(str(target), 255 - first.images[i])
    raw, cached = load_raw(folder_data, cache_dir=tmp_path / "cache")
    assert not cached
    inverted = 255 - first.images[i].astype(int)
    assert np.abs(raw.images[i].astype(int) - inverted).mean() < 3  # the new pixels (up to JPEG noise)


def test_atomic_writes_leave_the_old_file_when_the_writer_fails(tmp_path):
    from emotion.atomic import atomic_open, atomic_write_text

    target = atomic_write_text(tmp_path / "history.json", "old")
    try:
        with atomic_open(target, "w") as fh:
            fh.write("half of the new")
            raise RuntimeError("crash while writing")
    except RuntimeError:
        pass
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["history.json"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new"


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_get_the_mode_the_umask_gives_and_keep_an_existing_files(tmp_path, umask, mode):
    import os

    from emotion.atomic import atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "new.json", "{}")
        kept = tmp_path / "kept.json"
        kept.write_text("old")
        kept.chmod(0o640)
        atomic_write_text(kept, "new")
    finally:
        os.umask(old)
    assert (tmp_path / "new.json").stat().st_mode & 0o777 == mode
    assert kept.stat().st_mode & 0o777 == 0o640 and kept.read_text() == "new"


def test_an_output_place_is_checked_without_making_it(tmp_path):
    from emotion.atomic import unwritable_reason

    assert unwritable_reason(tmp_path / "a" / "b") is None and list(tmp_path.iterdir()) == []
    taken = tmp_path / "taken"
    taken.write_text("mine")
    assert unwritable_reason(taken) == "is a file, not a folder"
    assert unwritable_reason(taken / "sub" / "dir") == f"{taken} is a file, not a folder"
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    read_only = locked if not os.access(locked, os.W_OK) else Path("/sys")  # root writes anywhere but in sysfs
    assert unwritable_reason(read_only / "new" / "dir") == "Permission denied" and not (read_only / "new").exists()
