import numpy as np

from emotion.data.sources import read_csv, read_folders
from emotion.data.splits import assign_splits


def test_official_split_when_all_prefixes_present(folder_data):
    s = assign_splits(read_folders(folder_data))
    assert (len(s.train), len(s.val), len(s.test)) == (56, 14, 14)
    assert s.protocol["val"] == "PublicTest (14)" and s.protocol["test"] == "PrivateTest (14)"
    assert not s.protocol["notes"]


def test_public_test_only_gives_test_equal_to_val_and_says_so(folder_data):
    for f in folder_data.glob("test/*/PrivateTest_*"):
        f.unlink()
    s = assign_splits(read_folders(folder_data))
    assert np.array_equal(s.val, s.test)
    assert "NOT held out" in s.protocol["test"]
    assert any("PrivateTest absent" in n for n in s.protocol["notes"])


def test_unprefixed_files_carve_a_seeded_stratified_val(folder_data):
    for f in list(folder_data.rglob("*.jpg")):
        f.rename(f.with_name(f.name.split("_", 1)[1]))  # drop the split prefixes
    raw = read_folders(folder_data)
    a = assign_splits(raw, val_fraction=0.25, seed=3)
    b = assign_splits(raw, val_fraction=0.25, seed=3)
    assert np.array_equal(a.val, b.val)
    assert np.bincount(raw.labels[a.val]).tolist() == [2] * 7  # 25% of 8 per class
    assert not set(a.val) & set(a.train)
    assert len(a.test) == 28 and "without split prefixes" in a.protocol["test"]
    assert any("carved from train" in n for n in a.protocol["notes"])


def test_csv_usage_column_carries_the_split(csv_data):
    s = assign_splits(read_csv(csv_data))
    assert (len(s.train), len(s.val), len(s.test)) == (21, 7, 7)
