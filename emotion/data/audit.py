"""Data integrity audit: ``python -m emotion.audit DATA_ROOT [--out DIR]``.

Finds byte-identical and near-identical images (64-bit difference hash) within and across splits, groups whose
copies carry different labels, blank/constant images, unreadable files, and class counts per split. Prints a
summary and writes ``audit.json`` (with an ``exclude`` list usable as ``data.exclude=…/audit.json``),
``audit_groups.csv`` and ``audit_contact_sheet.png`` (the largest / conflicting groups).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from emotion.atomic import atomic_open, unwritable_reason, write_json
from emotion.data.sources import DecodeReport, decode_image, list_image_files, origin_of
from emotion.data.twins import near_duplicate_groups
from emotion.errors import DatasetError, quiet_if_reader_gone, report
from emotion.labels import FER2013_CLASSES


def split_of(path: Path, folder_split: str) -> str:
    return origin_of(path.name) or folder_split


def laplacian_variance(img: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a uint8 image, on the 0..1 pixel scale: low means blurred."""
    return float(cv2.Laplacian(img.astype(np.float32) / 255.0, cv2.CV_32F, ksize=1)[1:-1, 1:-1].var())


def sharpness_by_split(entries: list[dict], ratio_warn: float = 4.0) -> dict[str, Any]:
    """Median Laplacian variance per split (0..1 pixel scale); flags splits whose sharpness differs by > ratio_warn×.

    A network trained on blurred faces misreads sharp ones (and the reverse): this project's FER2013 copy once had
    its training faces blurred (σ ≈ 3 px, 343× below the test faces), which this check found.
    """
    by_split: dict[str, list[float]] = defaultdict(list)
    for e in entries:
        by_split[e["split"]].append(laplacian_variance(e["img"]))
    medians = {split: float(np.median(values)) for split, values in sorted(by_split.items())}
    positive = {k: v for k, v in medians.items() if v > 0}
    ratio = max(positive.values()) / min(positive.values()) if len(positive) > 1 else 1.0
    return {
        "median_laplacian_variance": {k: round(v, 8) for k, v in medians.items()},
        "max_ratio": round(ratio, 1),
        "mismatch": ratio > ratio_warn,
    }


def audit(root: str | Path, blank_std: float = 2.0, max_mad: float = 6.0) -> dict[str, Any]:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; expected ROOT/train/<class>/*.jpg")
    report = DecodeReport()
    files = list_image_files(root, report)
    entries, unreadable = [], []
    for f in files:
        data = f.path.read_bytes()
        rel = str(f.path.relative_to(root))
        try:
            img = decode_image(data, 48)
        except ValueError as exc:
            unreadable.append({"path": rel, "reason": str(exc)})
            continue
        entries.append(
            {
                "path": rel,
                "split": split_of(f.path, f.folder_split),
                "label": FER2013_CLASSES[f.label],
                "sha1": hashlib.sha1(data).hexdigest(),
                "std": float(img.std()),
                "img": img,
            }
        )

    def groups_by(key: str) -> list[list[dict]]:
        buckets: dict[Any, list[dict]] = defaultdict(list)
        for e in entries:
            buckets[e[key]].append(e)
        return [g for g in buckets.values() if len(g) > 1]

    exact = groups_by("sha1")
    # Near-duplicates: one representative per byte-identical set, grouped by hash distance + pixel agreement.
    unique = list({e["sha1"]: e for e in entries}.values())
    pixels = np.stack([e["img"] for e in unique]) if unique else np.zeros((0, 48, 48), np.uint8)
    near = [[unique[i] for i in g] for g in near_duplicate_groups(pixels, max_mad=max_mad)]
    blank = [e for e in entries if e["std"] < blank_std]

    def describe(g: list[dict], kind: str) -> dict[str, Any]:
        return {
            "kind": kind,
            "size": len(g),
            "splits": sorted({e["split"] for e in g}),
            "labels": sorted({e["label"] for e in g}),
            "conflicting_labels": len({e["label"] for e in g}) > 1,
            "cross_split": len({e["split"] for e in g}) > 1,
            "paths": [e["path"] for e in g],
        }

    groups = [describe(g, "byte-identical") for g in exact] + [describe(g, "near-identical") for g in near]
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FER2013_CLASSES, 0))
    for e in entries:
        counts[e["split"]][e["label"]] += 1
    # Suggested exclusions for training: blank images, and every copy in a group with conflicting labels, and
    # training copies of images that also appear in a validation/test split (they inflate held-out accuracy).
    exclude = {e["path"] for e in blank}
    for g in groups:
        if g["conflicting_labels"]:
            exclude.update(g["paths"])
        elif g["cross_split"]:
            exclude.update(p for p in g["paths"] if split_of(Path(p), "train") in ("Training", "train"))
    summary = {
        "root": str(root),
        "images": len(entries),
        "unreadable": len(unreadable),
        "byte_identical_groups": len(exact),
        "byte_identical_images": sum(len(g) for g in exact),
        "near_identical_groups": len(near),
        "conflicting_label_groups": sum(g["conflicting_labels"] for g in groups),
        "cross_split_groups": sum(g["cross_split"] for g in groups),
        "blank_images": len(blank),
        "suggested_exclusions": len(exclude),
    }
    sharpness = sharpness_by_split(entries)
    summary["sharpness_mismatch_between_splits"] = sharpness["mismatch"]
    return {
        "summary": summary,
        "class_counts": {k: dict(v) for k, v in sorted(counts.items())},
        "sharpness": sharpness,
        "groups": sorted(groups, key=lambda g: (not g["conflicting_labels"], not g["cross_split"], -g["size"])),
        "blank": [{"path": e["path"], "std": round(e["std"], 3)} for e in blank],
        "unreadable": unreadable,
        "exclude": sorted(exclude),
        "_images": {e["path"]: e["img"] for e in entries},
    }


def contact_sheet(result: dict[str, Any], path: Path, n_groups: int = 12, per_group: int = 8) -> Path | None:
    from emotion.atomic import save_figure

    groups = result["groups"][:n_groups]
    if not groups:
        return None
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(groups), per_group, figsize=(per_group * 1.1, len(groups) * 1.25), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for row, g in zip(axes, groups):
        for ax, p in zip(row, g["paths"][:per_group]):
            ax.imshow(result["_images"][p], cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"{split_of(Path(p), '?')}\n{Path(p).parent.name}", fontsize=6)
    fig.suptitle("worst duplicate groups (conflicting labels and cross-split first)", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


@quiet_if_reader_gone
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m emotion.audit", description=__doc__.splitlines()[0])
    p.add_argument("root")
    p.add_argument("--out", type=Path, help="output folder (default: ./audit-<root name>)")
    args = p.parse_args(argv)
    out = args.out or Path(f"audit-{Path(args.root).resolve().name}")
    if why := unwritable_reason(out):  # before minutes of auditing, not after
        return report(f"--out {out}: cannot write there ({why}); give a folder you can write to")
    try:
        result = audit(args.root)
    except DatasetError as exc:
        return report(exc)
    sheet = contact_sheet(result, out / "audit_contact_sheet.png")  # None: no groups to show
    images = result.pop("_images")
    write_json(result, out / "audit.json")
    with atomic_open(out / "audit_groups.csv", "w") as fh:
        w = csv.writer(fh)
        w.writerow(["kind", "size", "splits", "labels", "conflicting_labels", "cross_split", "paths"])
        for g in result["groups"]:
            w.writerow(
                [
                    g["kind"],
                    g["size"],
                    ";".join(g["splits"]),
                    ";".join(g["labels"]),
                    g["conflicting_labels"],
                    g["cross_split"],
                    ";".join(g["paths"]),
                ]
            )
    for k, v in result["summary"].items():
        print(f"{k:>26}: {v}")
    print("class counts per split:")
    for split, counts in result["class_counts"].items():
        print(f"  {split:>12}: " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    sharp = result["sharpness"]
    print(
        "sharpness (median Laplacian variance, 0..1 pixels): "
        + ", ".join(f"{k} {v:.3g}" for k, v in sharp["median_laplacian_variance"].items())
    )
    if sharp["mismatch"]:
        print(
            f"WARNING: splits differ {sharp['max_ratio']}x in sharpness (blurred or resized copies?): a model trained "
            "on one misreads the other; get an unaltered copy of the data set before training."
        )
    also = ", audit_contact_sheet.png" if sheet else " (no groups: no contact sheet)"
    print(f"wrote {out}/audit.json, audit_groups.csv{also} ({len(images)} images checked)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
