"""Predict emotions in images and folders: ``python -m emotion.predict PATH… [--model M] [--json|--csv]``.

Every face of every image is reported; unreadable files and images without a face are reported per file, and the
exit status is 1 when any file failed (0 when all succeeded, 2 for a usage error).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
from rich.console import Console
from rich.table import Table

from emotion.atomic import unwritable_reason
from emotion.data.decode import IMAGE_EXTENSIONS
from emotion.errors import keep_going_when_reader_gone, quiet_if_reader_gone
from emotion.models.tta import TTA_MODES
from emotion.serve.faces import (
    CHECK_SCORE,
    MIN_FACE,
    SURE_CHECK,
    Detector,
    FaceDetector,
    face_check_flag_error,
    photo_detector,
)
from emotion.serve.images import decode_image, images_in, is_url, not_read_note, read_image, source_stem
from emotion.serve.predictor import Predictor

STDIN = "-"  # an image piped in: cat photo.jpg | python -m emotion.predict -


def iter_images(paths: list[str]) -> tuple[list[Path | str], list[Path]]:
    """The files to read — those named, http(s) URLs, ``-`` (standard input), and the images of the folders named
    (recursively) — and the folders' other files, which are not read (:func:`~emotion.serve.images.images_in`)."""
    files: list[Path | str] = []
    others: list[Path] = []
    for name in paths:
        p = Path(name)
        if is_url(name) or name == STDIN:
            files.append(name)  # as typed: Path() would fold a URL's "//"
        elif p.is_dir():
            images, rest = images_in(p)
            files += images
            others += rest
        else:
            files.append(p)  # reported later if missing or unreadable
    return files, others


def load_predictor(
    model: str | None,
    detect: bool,
    tta: str = "none",
    detector: str = "yunet",
    min_face: int = MIN_FACE,
    face_check: float | None = None,
) -> Predictor:
    """``detector``: ``yunet`` (finds tilted faces; crops aligned as FER2013 frames its faces) or ``haar``;
    ``min_face``: the smallest face to find, in pixels (YuNet searches a large photo finely enough; Haar: of its
    downscaled search image); ``face_check``:
    the P(face) YuNet's faces need from the face check (None: the default, 0: no check)."""
    found: Detector | None = None
    if detect and detector == "haar":
        found = FaceDetector(min_size=min_face)
    elif detect:
        check = {} if face_check is None else {"check": face_check}
        found = replace(photo_detector(), min_face=min_face, **check)
    # a model file, or the name of a shipped model (emotion/weights/models.json); none: the default one
    return Predictor.from_pretrained(model or "default", detector=found, tta=tta)


class Progress:
    """``300/1200 files`` on stderr every ``every`` files, at least every ``seconds`` (large photos take a second or
    more each) and at the end; in place on a terminal."""

    def __init__(self, total: int, every: int = 100, seconds: float = 5.0) -> None:
        self.total, self.every, self.seconds = total, every, seconds
        self.last = time.monotonic()

    def __call__(self, done: int) -> None:
        due = done % self.every == 0 or done == self.total or time.monotonic() - self.last >= self.seconds
        if self.total < 2 or not due:
            return
        self.last = time.monotonic()
        tty = sys.stderr.isatty()  # carriage returns only on a terminal, never into a log file
        start, end = ("\r" if tty else ""), ("\n" if done == self.total or not tty else "")
        print(f"{start}{done}/{self.total} files", end=end, file=sys.stderr, flush=True)


def predict_files(predictor: Predictor, files: list[Path | str], detect: bool, annotate: Path | None) -> list[dict]:
    from emotion.serve.draw import draw_faces

    rows: list[dict] = []
    taken: set[str] = set()  # annotated copies' names: two images named alike (a/x.jpg, b/x.png) get two copies
    progress = Progress(len(files))
    for done, path in enumerate(files, 1):
        progress(done)
        try:
            img = decode_image(sys.stdin.buffer.read()) if path == STDIN else read_image(path)
        except ValueError as exc:
            rows.append({"file": str(path), "error": str(exc)})
            continue
        faces = predictor.predict(img) if detect else predictor.predict_crops([img])
        if not faces:
            rows.append({"file": str(path), "error": "no face detected (try --no-detect for pre-cropped faces)"})
        copy = {}
        if annotate is not None and faces:
            stem = "stdin" if path == STDIN else source_stem(path)
            out = annotate / unique_name(f"{stem}_annotated", ".png", taken)
            with contextlib.suppress(OSError):  # made with the first copy (checked, not made, before the work)
                annotate.mkdir(parents=True, exist_ok=True)  # a failure: imwrite's, reported below
            if cv2.imwrite(str(out), draw_faces(img.copy(), faces)):
                copy = {"annotated": str(out)}
            else:  # full disk, vanished folder: say so
                rows.append({"file": str(path), "error": f"its annotated copy could not be written to {out}"})
        for i, face in enumerate(faces):
            rows.append({"file": str(path), "face": i, **face.to_dict(), **copy})
    return rows


def unique_name(stem: str, suffix: str, taken: set[str]) -> str:
    """``stem + suffix``, or with ``-2``, ``-3``… before the suffix if an earlier file of this run took it."""
    name, n = f"{stem}{suffix}", 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}{suffix}"
    taken.add(name)
    return name


def print_table(rows: list[dict]) -> None:
    table = Table("file", "face", "label", "confidence", "runner-up", "box")
    for r in rows:
        if "error" in r:
            table.add_row(r["file"], "-", f"[red]{r['error']}[/]", "", "", "")
            continue
        ranked = sorted(r["probs"].items(), key=lambda kv: -kv[1])
        table.add_row(
            r["file"],
            str(r["face"]),
            r["label"],
            f"{r['confidence']:.1%}",
            f"{ranked[1][0]} {ranked[1][1]:.1%}",
            ",".join(map(str, r["box"])),
        )
    keep_going_when_reader_gone()
    Console(width=None if sys.stdout.isatty() else 200).print(table)  # full rows in files and pipes


def write_csv(rows: list[dict], class_names: tuple[str, ...], annotated: bool = False) -> None:
    """One row per face (or per failed file, with its ``error``); ``annotated``: a last column with the face's
    annotated copy (``--annotate``)."""
    w = csv.writer(sys.stdout)
    w.writerow(
        ["file", "face", "label", "confidence", "x", "y", "w", "h", *class_names, "error"] + ["annotated"] * annotated
    )
    for r in rows:
        if "error" in r:
            row = [r["file"], "", "", "", "", "", "", "", *[""] * len(class_names), r["error"]]
        else:
            row = [
                r["file"],
                r["face"],
                r["label"],
                r["confidence"],
                *r["box"],
                *[r["probs"][c] for c in class_names],
                "",
            ]
        w.writerow(row + [r.get("annotated", "")] * annotated)


@quiet_if_reader_gone
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m emotion.predict", description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", help="image files, folders (searched recursively), URLs; - reads stdin")
    p.add_argument(
        "--model", help=".ckpt, .safetensors, .onnx or a shipped model's name (default: the shipped default)"
    )
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    p.add_argument("--annotate", type=Path, metavar="DIR", help="write annotated images into DIR")
    p.add_argument("--no-detect", action="store_true", help="images are pre-cropped faces (e.g. FER2013 48x48)")
    p.add_argument(
        "--detector",
        choices=("yunet", "haar"),
        default="yunet",
        help="yunet (default: finds tilted faces and aligns them as FER2013 frames its faces) or haar",
    )
    p.add_argument(
        "--min-face",
        type=int,
        default=MIN_FACE,
        help=f"smallest face to find, in the image's pixels (default {MIN_FACE}); a large photo is searched finely "
        "enough to find it, so a larger value is faster on large photos",
    )
    p.add_argument(
        "--face-check",
        type=float,
        help=f"yunet only: the P(face) a face needs from the face check, which turns away textures YuNet takes for "
        f"faces (0 = no check, and no faint face let in by it); default {CHECK_SCORE}; a faint face needs "
        f"{SURE_CHECK} or this, if higher",
    )
    p.add_argument(
        "--tta",
        choices=TTA_MODES,
        default="none",
        help="average over views of each face: flip (2x the cost) or tencrop (10x; the setting of the best "
        "PublicTest numbers in emotion/weights/models.json); default none",
    )
    args = p.parse_args(argv)
    if wrong := face_check_flag_error(args.face_check, args.detector):
        p.error(wrong)
    if args.paths.count(STDIN) > 1:
        p.error("- (standard input) can be read once")
    if STDIN in args.paths and sys.stdin.isatty():
        p.error("- reads an image piped in (cat photo.jpg | python -m emotion.predict -); nothing is piped")

    from emotion.errors import ModelFileError, report

    if args.annotate is not None and (why := unwritable_reason(args.annotate)):
        return report(f"--annotate {args.annotate}: {why}; write elsewhere (--annotate DIR)")
    try:
        predictor = load_predictor(
            args.model, not args.no_detect, args.tta, args.detector, args.min_face, args.face_check
        )
    except (ModelFileError, FileNotFoundError, ValueError) as exc:
        return report(exc)
    files, others = iter_images(args.paths)
    if not files:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        also = f"; {not_read_note(others)}" if others else ""
        return report(f"no image files in {', '.join(args.paths)} (looked for {exts}, recursively){also}")
    rows = predict_files(predictor, files, not args.no_detect, args.annotate)
    if args.json:
        print(json.dumps(rows, indent=1))
    elif args.csv:
        write_csv(rows, predictor.class_names, annotated=args.annotate is not None)
    else:
        print_table(rows)
    sys.stdout.flush()
    if others:
        print(not_read_note(others), file=sys.stderr)
    if copies := {r["annotated"] for r in rows if "annotated" in r}:
        print(f"{len(copies)} annotated {'copy' if len(copies) == 1 else 'copies'} in {args.annotate}", file=sys.stderr)
    failed = sorted({r["file"] for r in rows if "error" in r})
    if failed:
        print(f"{len(failed)} of {len({r['file'] for r in rows})} files failed", file=sys.stderr)
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    raise SystemExit(main())
