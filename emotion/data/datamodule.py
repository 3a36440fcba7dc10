"""LightningDataModule for FER2013: decode once, gather batches from memory, augment batched on the device."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from emotion.data.augment import BatchAugment
from emotion.data.cache import load_raw
from emotion.data.locate import locate
from emotion.data.mix import BatchMix
from emotion.data.sources import RawData
from emotion.data.splits import Splits, assign_splits
from emotion.data.synthetic import ensure_dataset
from emotion.errors import DatasetError
from emotion.labels import FER2013_CLASSES
from emotion.ranges import check

log = logging.getLogger(__name__)


def batch_seed(seed: int, epoch: int, batch: int, stream: int = 0) -> int:
    """The one seed of a training batch: its augmentation and (``BatchSeed``) its dropout masks derive from it.
    ``stream`` (32 bits; 0: none) gives the same seed another sequence of views: a distilling run's, so that a student
    trained with its teacher's seed is not shown the very augmented faces its teacher learnt
    (:meth:`emotion.models.distill.Distillation.views_stream`)."""
    return ((seed * 1_000_003 + epoch * 100_003 + batch) % 2**32) ^ stream


class EpochBatchSampler(Sampler[torch.Tensor]):
    """Yields index tensors of whole batches; the order is a pure function of (seed, epoch).

    Distributed training (``rank`` of ``world`` processes, ``even``) shards whole batches: rank r takes batches r,
    r + world, … of the one global order, each with its global number's seed, and the last global batches that would
    leave ranks with unequal counts are dropped (DDP steps in lockstep). Evaluation gives each rank an equal
    contiguous share of the faces, every face exactly once (``DistributedSampler`` would pad with repeated faces).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        drop_last: bool = False,
        rank: int = 0,
        world: int = 1,
        even: bool = False,
        stream: int = 0,
    ) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not one of {world} processes")
        self.n, self.batch_size, self.shuffle, self.seed, self.drop_last = n, batch_size, shuffle, seed, drop_last
        self.rank, self.world, self.even, self.stream = rank, world, even, stream
        if even and self._n_global() == 0:
            raise DatasetError(f"{n} training faces make fewer batches of {batch_size} than the {world} processes")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # called by Lightning at the start of every epoch
        self.epoch = epoch

    def _n_global(self) -> int:
        """Global batches this epoch (``even``: a multiple of ``world``, so that every rank steps equally often)."""
        n = self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)
        return n - n % self.world if self.even else n

    def _batches(self) -> list[tuple[int, torch.Tensor]]:
        """This rank's (global batch number, face indices) of this epoch."""
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        else:
            order = torch.arange(self.n)
        if self.even:
            return [(b, order[b * self.batch_size : (b + 1) * self.batch_size]) for b in self._owned()]
        faces = torch.tensor_split(order, self.world)[self.rank]  # evaluation: an equal share of the faces each
        return list(enumerate(torch.split(faces, self.batch_size)))

    def _owned(self) -> range:
        return range(self.rank, self._n_global(), self.world)

    def __iter__(self):
        for b, idx in self._batches():
            yield idx, batch_seed(self.seed, self.epoch, b, self.stream)

    def __len__(self) -> int:
        if self.even:
            return len(self._owned())
        share = len(torch.tensor_split(torch.arange(self.n), self.world)[self.rank])
        return -(-share // self.batch_size)


NO_LABEL = -1  # a training batch's label for a face whose hard label data.drop_labels dropped


def listed_sources(file: str, setting: str) -> list[str]:
    """The relative source paths listed in a JSON {"exclude": [paths…]} (``python -m emotion.audit``, a
    ``label_issues`` verdict); a DatasetError naming ``setting`` when the file is missing or not such a list."""
    path = Path(file)
    if not path.is_file():
        raise DatasetError(f"{setting}={file}: no such file")
    try:
        listed = json.loads(path.read_text()).get("exclude")
    except (ValueError, AttributeError) as exc:
        raise DatasetError(f"{setting}={file}: not a JSON object with an exclude list ({exc})") from None
    if not isinstance(listed, list):
        raise DatasetError(f'{setting}={file}: no "exclude" list of relative image paths in it')
    return [str(p) for p in listed]


def check_listed(setting: str, file: str, listed: list[str], sources: np.ndarray, what: str, remedy: str) -> None:
    """A list of faces (``data.exclude``, ``data.drop_labels``) none of whose paths is among ``sources`` would act on
    nothing, unsaid: a DatasetError; the strays of a partly matching list are counted in a warning."""
    found = np.isin(listed, sources)
    if listed and not found.any():
        raise DatasetError(
            f"{setting}={file}: none of its {len(listed)} paths (e.g. {listed[0]}) is {what}; give {remedy}"
        )
    if not found.all():
        missing = [p for p, f in zip(listed, found, strict=True) if not f]
        log.warning(
            "%s=%s: %d of its %d paths are not %s (e.g. %s); the other %d are used",
            setting, file, len(missing), len(listed), what, missing[0], int(found.sum()),
        )  # fmt: skip


class InMemoryFaces(Dataset):
    """Faces held as one N×1×S×S uint8 tensor; indexed by a whole batch of indices at once."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        augment: bool,
        views: tuple[np.ndarray, np.ndarray] | None = None,
        views_p: float = 0.0,
        targets: torch.Tensor | None = None,
    ) -> None:
        self.x = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)
        self.y = torch.from_numpy(labels)
        self.augment = augment
        self.targets = targets  # the teacher's stored targets per face (model.distill.precompute), carried along
        # a second picture of some faces (``views``: pictures and a mask of the faces that have one), swapped in
        # for a share ``views_p`` of the samples that have one
        self.views = self.has_view = None
        if views is not None:
            self.views = torch.from_numpy(np.ascontiguousarray(views[0])).unsqueeze(1)
            self.has_view = torch.from_numpy(views[1])
        self.views_p = views_p

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, item: tuple[torch.Tensor, int]):
        idx, batch_seed = item
        if self.augment or self.targets is not None:
            x = self.x[idx]
            if self.views is not None and self.views_p > 0:
                g = torch.Generator().manual_seed(view_seed(batch_seed))
                pick = (torch.rand(len(idx), generator=g) < self.views_p) & self.has_view[idx]
                x = torch.where(pick[:, None, None, None], self.views[idx], x)
            stored = () if self.targets is None else (self.targets[idx],)
            return x, self.y[idx], torch.tensor(batch_seed), *stored
        return self.x[idx], self.y[idx]


def view_seed(batch_seed: int) -> int:
    """The view choice's own seed, apart from the augmentation's and the mixing's streams."""
    return (batch_seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**63


class FER2013DataModule(L.LightningDataModule):
    """FER2013 (folder layout or CSV) with the official split where present; see :mod:`emotion.data.splits`.

    Training batches are ``(uint8 images, labels, batch_seed)`` (and the teacher's targets, where the model stored
    them in ``train_targets``: ``model.distill.precompute``); ``on_after_batch_transfer`` augments them on the device.
    Validation/test batches are ``(uint8 images, labels)`` and are never augmented.
    """

    def __init__(
        self,
        root: str = "data/fer2013",
        batch_size: int = 64,
        eval_batch_size: int = 512,
        image_size: int = 48,
        val_fraction: float = 0.1,
        seed: int = 0,
        cache_dir: str | None = ".cache/emotion",
        augment: BatchAugment | None = None,
        mix: BatchMix | None = None,
        max_bad_fraction: float = 0.01,
        exclude: str | None = None,
        drop_labels: str | None = None,
        synthesize: dict[str, int] | None = None,
        download: bool = True,
        pin_memory: bool = False,
        views: str | None = None,
        views_p: float = 0.5,
    ) -> None:
        super().__init__()
        check("data.views_p", views_p)
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size} (eval_batch_size {eval_batch_size})")
        if not 0 <= val_fraction < 1:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        if not 0 <= max_bad_fraction <= 1:
            raise ValueError(f"data.max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
        self.root = Path(root)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.image_size, self.val_fraction, self.seed = image_size, val_fraction, seed
        self.cache_dir = cache_dir
        self.augment = augment
        self.mix = mix
        self.max_bad_fraction = max_bad_fraction
        self.exclude = exclude
        self.drop_labels = drop_labels
        self.labels_dropped = np.zeros(0, np.int64)  # indices of training faces whose hard label is dropped
        self.synthesize = synthesize
        self.download = download
        self.pin_memory = pin_memory
        self.views, self.views_p = views, views_p
        self.train_views: tuple[np.ndarray, np.ndarray] | None = None
        self.train_targets: torch.Tensor | None = None  # the teacher's, per training face (set by the model)
        self.views_stream = 0  # the training views' stream (:func:`batch_seed`; set by a distilling model)
        self.class_names: tuple[str, ...] = FER2013_CLASSES
        self.raw: RawData | None = None
        self.splits: Splits | None = None
        self.info: dict[str, Any] = {}

    # ----------------------------------------------------------------- locating and reading
    def resolve_root(self) -> Path:
        """The data root, generating the synthetic set or downloading from Kaggle when configured and missing."""
        if self.synthesize is not None:
            return ensure_dataset(self.root, **self.synthesize)
        return locate(self.root, self.download)

    def prepare_data(self) -> None:
        self.resolve_root()

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        root = self.resolve_root()
        raw, cached = load_raw(root, self.image_size, self.cache_dir)
        self._check_report(raw, root)
        excluded = self._apply_exclude(raw)
        self.raw = raw
        self.splits = assign_splits(raw, self.val_fraction, self.seed)
        if len(excluded):
            before = len(self.splits.train)
            self.splits.train = np.setdiff1d(self.splits.train, excluded)
            self.splits.protocol["excluded_from_train"] = f"{len(excluded)} images listed in {self.exclude}"
            dropped = before - len(self.splits.train)
            self.splits.protocol["train"] += f" minus {dropped} excluded (data.exclude) = {len(self.splits.train)}"
        if self.drop_labels:
            self.labels_dropped = self._apply_drop_labels(raw)
        if self.views is not None:
            self.train_views = self._load_views(raw)
        for name in ("train", "val", "test"):
            idx = getattr(self.splits, name)
            counts = np.bincount(raw.labels[idx], minlength=len(self.class_names))
            self.info[f"{name}_class_counts"] = dict(zip(self.class_names, counts.tolist()))
        self.info.update(
            root=str(root),
            from_cache=cached,
            split_protocol=self.splits.protocol,
            decode_report={**raw.report.to_dict(), "skipped_count": len(raw.report.skipped)},
        )
        log.info("split protocol: %s", self.splits.describe())
        for note in self.splits.protocol["notes"]:
            log.warning("%s", note)

    def _check_report(self, raw: RawData, root: Path) -> None:
        rep = raw.report
        for folder in rep.empty_class_folders:
            log.warning("empty class folder: %s", folder)
        if rep.ignored_non_images:
            log.warning(
                "ignored %d files without an image extension, e.g. %s",
                len(rep.ignored_non_images),
                rep.ignored_non_images[:3],
            )
        if rep.converted:
            log.info("converted on load: %s", dict(rep.converted))
        n_bad, n_all = len(rep.skipped), len(rep.skipped) + len(raw.labels)
        if n_bad:
            shown = "\n".join(f"  {p}: {r}" for p, r in rep.skipped[:20])
            log.warning("skipped %d unreadable image files:\n%s%s", n_bad, shown, "\n  ..." if n_bad > 20 else "")
        if n_all == 0:
            raise DatasetError(f"{root} holds no images; expected {root}/train/<class>/*.jpg")
        if n_bad / n_all > self.max_bad_fraction:
            raise DatasetError(
                f"{n_bad} of {n_all} image files under {root} are unreadable ({n_bad / n_all:.1%} > "
                f"data.max_bad_fraction={self.max_bad_fraction}); first: {rep.skipped[0][0]}: {rep.skipped[0][1]}. "
                "Re-download the data set or raise data.max_bad_fraction."
            )

    def _apply_exclude(self, raw: RawData) -> np.ndarray:
        """Indices of images listed (by relative source path) in an exclusion JSON: {"exclude": [paths…]}."""
        if not self.exclude:
            return np.zeros(0, np.int64)
        listed = listed_sources(self.exclude, "data.exclude")
        check_listed(
            "data.exclude", self.exclude, listed, raw.sources, f"an image under {self.root}",
            f"a list made on this data set (python -m emotion.audit {self.root})",
        )  # fmt: skip
        return np.flatnonzero(np.isin(raw.sources, listed))

    def _apply_drop_labels(self, raw: RawData) -> np.ndarray:
        """``data.drop_labels``: the training faces (indices into ``raw``) listed in a JSON {"exclude": [paths…]}
        (a ``label_issues`` verdict) that stay in training without their hard label: they learn from the
        distillation teacher alone (their label is :data:`NO_LABEL` in training batches)."""
        if self.mix is not None and self.mix.enabled:
            raise DatasetError(
                f"data.drop_labels={self.drop_labels} with data.mix: a mixed face would blend a dropped label; "
                "set data.mix's alphas to 0 or data.drop_labels=null"
            )
        listed = listed_sources(self.drop_labels, "data.drop_labels")
        train = self.splits.train
        check_listed(
            "data.drop_labels", self.drop_labels, listed, raw.sources[train], f"a training face under {self.root}",
            "a verdict made on this data set (experiments/tools/label_issues.py find)",
        )  # fmt: skip
        dropped = train[np.isin(raw.sources[train], listed)]
        self.splits.protocol["labels_dropped"] = (
            f"{len(dropped)} training faces listed in {self.drop_labels} learn without their label (data.drop_labels)"
        )
        log.info("data.drop_labels: %d of %d training faces keep no hard label", len(dropped), len(train))
        return dropped

    def _load_views(self, raw: RawData) -> tuple[np.ndarray, np.ndarray]:
        """``data.views``: an .npz of ``sources`` and ``images`` (another 48x48 picture of training faces, e.g. as
        the serving pipeline frames them: experiments/faces_in_the_field/field_views.py), aligned with the training
        split, with the mask of the training faces that have one."""
        path = Path(self.views)
        if not path.is_file():
            raise DatasetError(
                f"data.views={self.views}: no such file; make it with "
                "experiments/faces_in_the_field/field_views.py or leave data.views unset"
            )
        try:
            with np.load(path) as f:
                sources, images = f["sources"], f["images"]
        except (OSError, ValueError, KeyError) as exc:
            raise DatasetError(f"data.views={self.views}: not a views file with sources and images ({exc})") from exc
        train = self.splits.train
        if images.shape[1:] != raw.images.shape[1:]:
            raise DatasetError(
                f"data.views={self.views}: views are {images.shape[1]}x{images.shape[2]} px, the faces "
                f"{raw.images.shape[1]}x{raw.images.shape[2]}; make the views at data.image_size"
            )
        where = {s: i for i, s in enumerate(sources.tolist())}
        rows = np.array([where.get(source, -1) for source in raw.sources[train].tolist()], np.int64)
        has = rows >= 0
        out = np.zeros_like(raw.images[train])
        out[has] = images[rows[has]]
        hits = int(has.sum())
        if hits == 0:
            raise DatasetError(f"data.views={self.views}: none of its {len(sources)} faces is a training face here")
        self.info["views"] = {"file": str(path), "training_faces_with_view": hits, "training_faces": len(train)}
        log.info("data.views: %d of %d training faces have a view (p=%g)", hits, len(train), self.views_p)
        return out, has

    # ----------------------------------------------------------------- loaders
    def _subset(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if self.splits is None or self.raw is None:
            raise RuntimeError("call setup() first")
        idx = getattr(self.splits, name)
        return self.raw.images[idx], self.raw.labels[idx]

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The uint8 images (``N×S×S``) and labels of ``train``, ``val`` or ``test``, after :meth:`setup`."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        return self._subset(split)

    def has_training_faces(self) -> bool:
        return len(self._subset("train")[0]) > 0

    def class_counts(self) -> np.ndarray:
        _, y = self._subset("train")
        return np.bincount(y, minlength=len(self.class_names))

    def _loader(self, name: str, train: bool) -> DataLoader:
        images, labels = self._subset(name)
        if len(labels) == 0:
            raise DatasetError(f"the {name} split of {self.root} is empty ({self.splits.protocol.get(name)})")
        if name == "train" and train and len(self.labels_dropped):
            labels = np.where(np.isin(self.splits.train, self.labels_dropped), NO_LABEL, labels)
        ds = InMemoryFaces(
            images,
            labels,
            augment=train and (self.augment is not None or self.mix is not None or self.train_views is not None),
            views=self.train_views if name == "train" and train else None,
            views_p=self.views_p,
            targets=self.train_targets if name == "train" and train else None,
        )
        trainer = self.trainer  # None outside a Trainer: one process
        sampler = EpochBatchSampler(
            len(ds),
            self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            seed=self.seed,
            drop_last=train and len(ds) > self.batch_size,
            rank=getattr(trainer, "global_rank", 0),
            world=getattr(trainer, "world_size", 1),
            even=train,
            stream=self.views_stream if train else 0,
        )
        return DataLoader(ds, sampler=sampler, batch_size=None, num_workers=0, pin_memory=self.pin_memory)

    def eval_dataloader(self, split: str) -> DataLoader:
        """Any split (train, val or test) in evaluation order, unaugmented: for scoring a model on it."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        return self._loader(split, train=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if len(batch) >= 3:  # a training batch: augment (and mix) on its device, then drop the seed
            x, y, seed, *stored = batch
            if self.trainer is not None and self.trainer.training:
                if self.augment is not None:
                    x = self.augment(x, int(seed))
                if self.mix is not None:  # (the model refuses mixing with stored targets)
                    x, y = self.mix(x, y, int(seed), len(self.class_names))
            return x, y, *stored
        return batch
