"""data.views: a second picture of training faces (as the serving pipeline frames them) swapped into batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emotion.data.datamodule import FER2013DataModule
from emotion.errors import DatasetError


def views_file(dm: FER2013DataModule, path: Path, every: int = 2) -> tuple[Path, set[str]]:
    """Views (the face inverted) for every ``every``-th training face; returns the file and the sources with one."""
    train = dm.splits.train[::every]
    sources = dm.raw.sources[train]
    np.savez(path, sources=sources, images=255 - dm.raw.images[train])
    return path, set(sources.tolist())


def setup(root: Path, **kw) -> FER2013DataModule:
    dm = FER2013DataModule(str(root), batch_size=16, cache_dir=None, download=False, **kw)
    dm.setup()
    return dm


def first_batch(dm: FER2013DataModule) -> tuple[np.ndarray, np.ndarray]:
    x, y, _ = next(iter(dm.train_dataloader()))
    return x[:, 0].numpy(), y.numpy()


def test_views_replace_a_share_of_the_faces_that_have_one_and_only_in_training(folder_data, tmp_path):
    plain = setup(folder_data)
    path, with_view = views_file(plain, tmp_path / "views.npz")
    originals = {s: plain.raw.images[i] for i, s in enumerate(plain.raw.sources)}
    sampler = plain.train_dataloader().sampler
    batch, _ = next(iter(sampler))
    batch_sources = plain.raw.sources[plain.splits.train][batch.numpy()]

    shown = {}
    for p in (0.0, 0.5, 1.0):
        dm = setup(folder_data, views=str(path), views_p=p)
        x, _ = first_batch(dm)
        swapped = [not np.array_equal(img, originals[s]) for img, s in zip(x, batch_sources)]
        for img, s, sw in zip(x, batch_sources, swapped):
            if sw:  # a swapped face shows exactly its view, and only faces with a view are swapped
                assert s in with_view and np.array_equal(img, 255 - originals[s])
        shown[p] = sum(swapped)
        assert dm.info["views"]["training_faces_with_view"] == len(with_view)
        val_x, _ = next(iter(dm.val_dataloader()))
        assert np.array_equal(val_x[:, 0].numpy(), plain.raw.images[plain.splits.val][: len(val_x)])
    have = sum(s in with_view for s in batch_sources)
    assert shown[0.0] == 0 and shown[1.0] == have > 0
    assert 0 < shown[0.5] < have  # the share moves the result (16 faces: both extremes are unlikely by chance)
    again = setup(folder_data, views=str(path), views_p=0.5)
    assert np.array_equal(first_batch(again)[0], first_batch(setup(folder_data, views=str(path), views_p=0.5))[0])


def _garbage(dm: FER2013DataModule, path: Path) -> None:
    path.write_bytes(b"not an npz")


def _strangers(dm: FER2013DataModule, path: Path) -> None:
    np.savez(path, sources=np.array(["elsewhere.png"]), images=np.zeros((1, 48, 48), np.uint8))


def _wrong_size(dm: FER2013DataModule, path: Path) -> None:
    np.savez(path, sources=dm.raw.sources[:1], images=np.zeros((1, 64, 64), np.uint8))


@pytest.mark.parametrize(
    "make, says",
    [
        (None, "no such file"),
        (_garbage, "not a views file"),
        (_strangers, "none of its 1 faces"),
        (_wrong_size, "64x64"),
    ],
)
def test_a_wrong_views_file_is_one_clear_error(folder_data, tmp_path, make, says):
    path = tmp_path / "views.npz"
    if make is not None:
        make(setup(folder_data), path)
    with pytest.raises(DatasetError, match=says) as err:
        setup(folder_data, views=str(path))
    assert "data.views=" in str(err.value) and "\n" not in str(err.value)


def test_views_p_outside_zero_to_one_is_refused(folder_data):
    with pytest.raises(ValueError, match="data.views_p"):
        FER2013DataModule(str(folder_data), views_p=1.5)


def test_experiment_field_fine_tunes_the_shipped_model_on_the_views(folder_data, tmp_path):
    from emotion.train import train
    from tests.conftest import make_cfg

    path, with_view = views_file(setup(folder_data), tmp_path / "views.npz")
    cfg = make_cfg(
        tmp_path,
        [
            "experiment=field",
            f"data.root={folder_data}",
            f"data.views={path}",
            "data.download=false",
            "data.batch_size=16",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.enable_progress_bar=false",
            "~callbacks.progress_bar",
            "~callbacks.model_summary",
        ],
    )
    assert cfg.data.views_p == 0.5 and cfg.model.init_from == "emotion_vgg"
    train(cfg)
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert report["data"]["views"]["training_faces_with_view"] == len(with_view)
