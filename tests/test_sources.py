from pathlib import Path

import cv2
import numpy as np
import pytest

from emotion.data.sources import read_csv, read_folders
from emotion.errors import DatasetError
from emotion.labels import FER2013_CLASSES
from tests.conftest import write_csv, write_face


def test_folder_reader_maps_labels_by_folder_name(tmp_path):
    # Capitalised names, as in some mirrors; alphabetical position would give neutral=4 and sad=5.
    for i, name in enumerate(["Angry", "Neutral", "Sad", "Surprise"]):
        write_face(tmp_path / "train" / name / f"Training_{i}.jpg", name.lower(), seed=i)
    raw = read_folders(tmp_path)
    got = dict(zip(raw.sources, raw.labels))
    assert got["train/Neutral/Training_1.jpg"] == FER2013_CLASSES.index("neutral") == 6
    assert got["train/Sad/Training_2.jpg"] == FER2013_CLASSES.index("sad") == 4
    assert raw.images.shape == (4, 48, 48) and raw.images.dtype == np.uint8


def test_folder_reader_reads_official_split_prefixes(folder_data):
    raw = read_folders(folder_data)
    assert set(raw.origin) == {"Training", "PublicTest", "PrivateTest"}
    assert (raw.origin == "Training").sum() == 8 * 7
    assert set(raw.folder_split[raw.origin == "PublicTest"]) == {"test"}


def test_unknown_class_folder_is_an_error_listing_accepted_names(folder_data):
    (folder_data / "train" / "contempt").mkdir()
    with pytest.raises(ValueError, match="contempt.*angry, disgust, fear, happy, sad, surprise, neutral"):
        read_folders(folder_data)


def _png16(path: Path) -> None:
    cv2.imwrite(str(path), (np.arange(60 * 60, dtype=np.uint16).reshape(60, 60) * 17))


def test_bad_files_are_skipped_with_reasons_and_conversions_counted(folder_data):
    d = folder_data / "train" / "happy"
    (d / "Training_zero.jpg").write_bytes(b"")
    (d / "Training_text.jpg").write_text("not an image")
    good = (d / sorted(p.name for p in d.iterdir())[0]).read_bytes()
    (d / "Training_trunc.jpg").write_bytes(good[: len(good) // 2])
    (d / "notes.txt").write_text("hello")
    cv2.imwrite(str(d / "Training_colour.png"), np.full((48, 48, 3), (0, 0, 255), np.uint8))
    cv2.imwrite(str(d / "Training_big.png"), np.zeros((300, 200), np.uint8))
    _png16(d / "Training_16bit.png")

    raw = read_folders(folder_data)
    rep = raw.report
    reasons = {Path(p).name: r for p, r in rep.skipped}
    assert reasons == {
        "Training_zero.jpg": "empty file (0 bytes)",
        "Training_text.jpg": "not a decodable image",
        "Training_trunc.jpg": "truncated JPEG (no end-of-image marker)",
    }
    assert rep.ignored_non_images == [str(d / "notes.txt")]
    assert rep.converted["colour→gray"] == 1
    assert rep.converted["16-bit→8-bit"] == 1
    assert rep.converted["resized"] == 2  # the 300×200 and the 60×60 16-bit image
    # Every valid image is kept: 8×7 train + 2×7 + 2×7 test, plus the three converted ones.
    assert len(raw.labels) == 8 * 7 + 4 * 7 + 3
    red = raw.images[list(raw.sources).index("train/happy/Training_colour.png")]
    assert red.min() == red.max() == 76  # BT.601 luma of pure red


def test_a_face_stored_sideways_with_an_exif_orientation_is_read_upright_as_serving_reads_it(tmp_path):
    from PIL import Image

    upright = np.tile(np.linspace(0, 255, 48, dtype=np.uint8), (48, 1))  # dark left, bright right
    upright[:12] = 0  # and a dark top band: every turn of it differs
    exif = Image.Exif()
    exif[0x0112] = 6  # display: turn 90° clockwise
    path = tmp_path / "train" / "happy" / "Training_phone.jpg"
    path.parent.mkdir(parents=True)
    Image.fromarray(np.ascontiguousarray(np.rot90(upright))).save(path, exif=exif.tobytes(), quality=100)
    raw = read_folders(tmp_path)
    assert np.abs(raw.images[0].astype(int) - upright).mean() < 3


def test_a_heic_face_is_read_like_its_png_twin(tmp_path):
    pytest.importorskip("pillow_heif").register_heif_opener()
    from PIL import Image

    face = np.tile(np.linspace(0, 255, 48, dtype=np.uint8), (48, 1))
    (tmp_path / "train" / "sad").mkdir(parents=True)
    Image.fromarray(face).save(tmp_path / "train" / "sad" / "Training_1.heic", quality=100)
    cv2.imwrite(str(tmp_path / "train" / "sad" / "Training_2.png"), face)
    raw = read_folders(tmp_path)
    assert sorted(raw.sources) == ["train/sad/Training_1.heic", "train/sad/Training_2.png"] and not raw.report.skipped
    heic, png = (raw.images[list(raw.sources).index(f"train/sad/Training_{i}")] for i in ("1.heic", "2.png"))
    assert np.abs(heic.astype(int) - png).mean() < 3


def test_empty_class_folder_is_reported(folder_data):
    (folder_data / "train" / "Disgust2").mkdir()  # not a class: error
    with pytest.raises(ValueError):
        read_folders(folder_data)
    (folder_data / "train" / "Disgust2").rmdir()
    for f in (folder_data / "train" / "disgust").iterdir():
        f.unlink()
    raw = read_folders(folder_data)
    assert raw.report.empty_class_folders == [str(folder_data / "train" / "disgust")]


def test_class_folders_directly_under_root_are_a_test_set(tmp_path):
    write_face(tmp_path / "happy" / "a.jpg", "happy", 0)
    write_face(tmp_path / "sad" / "b.jpg", "sad", 1)
    raw = read_folders(tmp_path)
    assert list(raw.folder_split) == ["test", "test"]
    assert sorted(raw.labels.tolist()) == [3, 4]


def test_csv_reader(csv_data):
    raw = read_csv(csv_data)
    assert raw.images.shape == (35, 48, 48)
    assert list(raw.labels[:7]) == list(range(7))
    assert (raw.origin == "PrivateTest").sum() == 7
    assert raw.sources[0] == "fer2013.csv:2"


def test_malformed_csv_row_names_its_line(tmp_path):
    path = write_csv(tmp_path / "fer2013.csv", {"Training": 3})
    lines = path.read_text().splitlines()
    lines[2] = "3,12 oops 7,Training"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"fer2013.csv:3: malformed row"):
        read_csv(path)


def test_truncated_csv_names_its_last_line(tmp_path):
    path = write_csv(tmp_path / "fer2013.csv", {"Training": 3})
    text = path.read_text()
    path.write_text(text[: len(text) - 500])
    with pytest.raises(DatasetError, match=r"fer2013.csv:4: expected 3 columns.*truncated"):
        read_csv(path)


def test_csv_label_out_of_range(tmp_path):
    path = write_csv(tmp_path / "fer2013.csv", {"Training": 2})
    lines = path.read_text().splitlines()
    lines[1] = "9" + lines[1][1:]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match="label 9 outside 0..6"):
        read_csv(path)


def test_too_many_unreadable_files_abort_with_the_first_reason(folder_data):
    from emotion.data import FER2013DataModule

    for i in range(5):
        (folder_data / "train" / "happy" / f"Training_bad{i}.jpg").write_bytes(b"")
    dm = FER2013DataModule(root=str(folder_data), cache_dir=None, max_bad_fraction=0.01)
    with pytest.raises(DatasetError, match=r"5 of 89 image files .* are unreadable .*empty file"):
        dm.setup("fit")
    dm = FER2013DataModule(root=str(folder_data), cache_dir=None, max_bad_fraction=0.1)
    dm.setup("fit")  # under the limit: skipped, counted, and training goes on
    assert dm.info["decode_report"]["skipped_count"] == 5
