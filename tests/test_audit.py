import json
import shutil

import cv2
import numpy as np

from emotion.data import FER2013DataModule
from emotion.data.audit import main as audit_main


def test_audit_finds_duplicates_conflicts_blanks_and_feeds_exclusion(folder_data, tmp_path, capsys):
    train = folder_data / "train"
    src = sorted((train / "happy").iterdir())[0]
    shutil.copy(src, train / "sad" / "Training_copy.jpg")  # byte-identical, other label: conflict
    img = cv2.imread(str(sorted((train / "fear").iterdir())[0]), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(train / "fear" / "Training_reencoded.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 70])  # near-dup
    cv2.imwrite(str(train / "angry" / "Training_blank.png"), np.zeros((48, 48), np.uint8))
    leaked = sorted((folder_data / "test" / "surprise").glob("PublicTest_*"))[0]
    shutil.copy(leaked, train / "surprise" / "Training_leak.jpg")  # train/val overlap

    out = tmp_path / "audit"
    assert audit_main([str(folder_data), "--out", str(out)]) == 0
    report = json.loads((out / "audit.json").read_text())
    s = report["summary"]
    assert (s["byte_identical_groups"], s["near_identical_groups"], s["blank_images"]) == (2, 1, 1)
    assert (s["conflicting_label_groups"], s["cross_split_groups"]) == (1, 1)
    assert report["class_counts"]["PublicTest"]["surprise"] == 2
    excluded = set(report["exclude"])
    assert {
        "train/sad/Training_copy.jpg",
        "train/angry/Training_blank.png",
        "train/surprise/Training_leak.jpg",
    } <= excluded
    assert not any(p.startswith("test/") for p in excluded)  # never drops evaluation images
    assert (out / "audit_contact_sheet.png").stat().st_size > 1000
    assert "byte_identical_groups: 2" in capsys.readouterr().out

    dm = FER2013DataModule(root=str(folder_data), cache_dir=None, exclude=str(out / "audit.json"))
    dm.setup("fit")
    assert len(dm.splits.train) == 8 * 7 + 4 - len(excluded)
    assert f"{len(excluded)} images listed in" in dm.info["split_protocol"]["excluded_from_train"]
    assert dm.splits.describe().startswith(f"train: Training (60) minus {len(excluded)} excluded (data.exclude) = ")


def test_audit_warns_in_one_line_when_the_splits_differ_in_sharpness(folder_data, tmp_path, capsys):
    """The check that found this project's blurred training copy: blurred training faces against sharp test faces."""
    out = tmp_path / "audit"
    assert audit_main([str(folder_data), "--out", str(out)]) == 0
    assert not json.loads((out / "audit.json").read_text())["sharpness"]["mismatch"]
    assert "WARNING" not in capsys.readouterr().out
    for path in (folder_data / "train").rglob("*.jpg"):
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(path), cv2.GaussianBlur(img, (0, 0), 3.0))
    assert audit_main([str(folder_data), "--out", str(out)]) == 0
    sharpness = json.loads((out / "audit.json").read_text())["sharpness"]
    assert sharpness["mismatch"] and sharpness["max_ratio"] > 4
    warnings = [line for line in capsys.readouterr().out.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "sharpness" in warnings[0]


def test_an_output_folder_that_cannot_be_written_is_one_line_before_the_audit(
    folder_data, tmp_path, capsys, monkeypatch
):
    """The audit of FER2013 takes minutes; its results used to meet an unwritable --out only at the end, as a
    traceback."""
    taken = tmp_path / "taken"
    taken.write_text("a file where the folder would go")
    audited = []
    monkeypatch.setattr("emotion.data.audit.audit", lambda root: audited.append(root))
    assert audit_main([str(folder_data), "--out", str(taken / "audit")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --out {taken / 'audit'}: cannot write there (") and "\n" not in err
    assert not audited


def test_an_audit_that_fails_leaves_no_output_folder_behind(tmp_path, capsys):
    """--out is checked before the audit but made only when the results are written: a data set that cannot be read
    used to leave an empty audit folder behind."""
    out = tmp_path / "audits" / "fer"
    assert audit_main([str(tmp_path / "no-such-data"), "--out", str(out)]) == 2
    assert "no-such-data" in capsys.readouterr().err
    assert not (tmp_path / "audits").exists()


def test_an_exclusion_list_made_on_another_copy_is_refused_or_its_strays_counted(folder_data, tmp_path, caplog):
    """A list whose paths name no image here (another copy's layout, e.g. the CSV's) excluded nothing, unsaid."""
    import pytest

    from emotion.errors import DatasetError

    other = tmp_path / "other.json"
    other.write_text(json.dumps({"exclude": ["Training/00001.png", "Training/00002.png"]}))
    with pytest.raises(DatasetError, match=r"none of its 2 paths \(e.g. Training/00001.png\) is an image under"):
        FER2013DataModule(root=str(folder_data), cache_dir=None, exclude=str(other)).setup("fit")
    real = sorted((folder_data / "train" / "happy").iterdir())[0].relative_to(folder_data).as_posix()
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps({"exclude": [real, "Training/00001.png", "Training/00002.png"]}))
    dm = FER2013DataModule(root=str(folder_data), cache_dir=None, exclude=str(mixed))
    dm.setup("fit")
    assert len(dm.splits.train) == 8 * 7 - 1
    assert "2 of its 3 paths are not an image under " in caplog.text
    assert "(e.g. Training/00001.png); the other 1 are used" in caplog.text
