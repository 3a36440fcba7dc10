"""Live emotion demo: ``python -m emotion.cam [--source 0|VIDEO|FOLDER|URL] [--headless --output OUT]``.

Faces are found by :class:`emotion.serve.faces.VideoFaceDetector`: a search of the whole frame every ``--scan-every``
frames (YuNet by default, its turned searches for tilted faces taking turns; or ``--detector haar``), and between
those a cheap re-search in a small window around each known face. YuNet's landmarks align each face onto FER2013's
framing, as ``predict`` does. Each tracked face's probabilities are smoothed with an exponential moving average so
labels do not flicker, and all faces of a frame are classified in one batch. Keys in the window: ``s``
the mood of the last seconds to ``on_mood`` (songs: ``python -m emotion.songs --from-cam --live``), ``q``/Esc quit.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from emotion.data.decode import IMAGE_EXTENSIONS
from emotion.errors import UserError, quiet_if_reader_gone, report
from emotion.serve.faces import (
    CHECK_SCORE,
    FaceDetector,
    StreamDetector,
    VideoFaceDetector,
    YuNetDetector,
    face_check_flag_error,
    haar_scanner,
    iou,
    stream_scanner,
)
from emotion.serve.images import images_in, not_read_note, read_image
from emotion.serve.predictor import Face, Predictor

#: Below this calibrated top probability a face is shown as "uncertain": how often the shipped models are right
#: below and above it is measured in experiments/best/ and experiments/recipe/ (calibration).
UNCERTAIN_BELOW = 0.4


class SourceError(UserError, RuntimeError):
    """A camera or video that cannot be opened."""


@contextmanager
def opencv_silent() -> Iterator[None]:
    """OpenCV's own log lines held back for the block (the caller reports what went wrong)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


#: network cameras and streams (an IP camera's ``rtsp://user:pass@host/…``), read by OpenCV's FFmpeg
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


def open_source(source: str) -> Iterator[np.ndarray]:
    """Frames of a webcam index, a stream URL, a video file or a folder of images (sorted by name)."""
    path = Path(source)
    if path.is_dir():
        files, others = images_in(path, recursive=False)
        if not files:
            also = f"; {not_read_note(others)}" if others else ""
            raise SourceError(f"folder {path} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))}){also}")
        if others:
            print(f"warning: {not_read_note(others)}", file=sys.stderr, flush=True)
        return _images(files)
    if source.isdigit():
        with opencv_silent():  # OpenCV logs its own "Camera index out of range" line before the message below
            cap = cv2.VideoCapture(int(source))
        if not cap.isOpened():
            raise SourceError(
                f"no camera at index {source}: none is connected, it is in use, or access was denied. "
                "Try another --source index, a video file, or a folder of images."
            )
    elif source.lower().startswith(STREAM_SCHEMES):
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own "connection refused" lines: ours says it
        cap = cv2.VideoCapture(source)
        if not cap.isOpened():
            raise SourceError(
                f"cannot open stream {source}: the camera or server is offline or unreachable, the address or its "
                "credentials are wrong, or OpenCV's FFmpeg does not read its format"
            )
    else:
        if not path.is_file():
            raise SourceError(f"video {path} does not exist")
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise SourceError(f"cannot open video {path} (unsupported format or damaged file)")

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield frame
        finally:
            cap.release()

    return frames()


def _images(files: list[Path]) -> Iterator[np.ndarray]:
    """A folder's images as frames, upright; an unreadable one is skipped with a warning, and counted at the end."""
    skipped = 0
    for f in files:
        try:
            yield read_image(f)
        except ValueError as exc:
            skipped += 1
            print(f"warning: skipped {f}: {exc}", file=sys.stderr, flush=True)
    if skipped:
        print(f"warning: skipped {skipped} of {len(files)} images (unreadable)", file=sys.stderr, flush=True)


@dataclass
class Track:
    box: tuple[int, int, int, int]
    probs: np.ndarray
    id: int = 0
    missed: int = 0


@dataclass
class FaceTracker:
    """Greedy IoU matching of faces across frames, with an EMA of each track's probabilities."""

    alpha: float = 0.3  # weight of the newest frame
    min_iou: float = 0.3
    max_missed: int = 5
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 1

    def update(self, faces: list[Face]) -> list[Face]:
        unmatched = list(range(len(self.tracks)))
        smoothed: list[Face] = []
        for face in faces:
            best = max(unmatched, key=lambda i: iou(self.tracks[i].box, face.box), default=None)
            if best is not None and iou(self.tracks[best].box, face.box) >= self.min_iou:
                track = self.tracks[best]
                unmatched.remove(best)
                track.probs = (1 - self.alpha) * track.probs + self.alpha * face.probs
                track.box, track.missed = face.box, 0
            else:
                track = Track(face.box, face.probs.copy(), self.next_id)
                self.next_id += 1
                self.tracks.append(track)
            smoothed.append(Face(face.box, track.probs.copy(), face.class_names, track.id))
        for i in unmatched:
            self.tracks[i].missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return smoothed


@dataclass
class MoodWindow:
    """Mean probabilities of the largest face over the last ``seconds``: the mood songs are chosen for."""

    seconds: float = 5.0
    samples: deque = field(default_factory=deque)

    def add(self, probs: np.ndarray, t: float) -> None:
        self.samples.append((t, probs))
        while self.samples and self.samples[0][0] < t - self.seconds:
            self.samples.popleft()

    def mean(self) -> np.ndarray | None:
        return np.mean([p for _, p in self.samples], axis=0) if self.samples else None


@dataclass
class CamStats:
    frames: int = 0
    frames_with_faces: int = 0
    faces: int = 0
    labels: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def run(
    predictor: Predictor,
    source: str = "0",
    headless: bool = False,
    output: Path | None = None,
    detector: StreamDetector | None = None,
    max_frames: int | None = None,
    draw: bool = True,
    on_mood=None,
    uncertain_below: float = 0.0,
    on_frame=None,
    table: FrameTable | None = None,
) -> tuple[CamStats, np.ndarray | None]:
    """Process a source; returns statistics and the mean probabilities of the last seconds.

    ``on_frame(index, faces)`` (optional) sees every frame's faces, e.g. to score detection in a benchmark;
    ``table`` (optional) records every face of every frame.
    """
    from emotion.serve.draw import draw_faces

    frames = open_source(source)
    tracker, mood, stats = FaceTracker(), MoodWindow(), CamStats()
    detector = detector or VideoFaceDetector()
    detector.reset()
    writer = None
    t0 = last = time.perf_counter()
    fps = 0.0
    for i, frame in enumerate(frames):
        if max_frames is not None and i >= max_frames:
            break
        if i == 0 and (note := small_faces_note(detector, frame.shape[1])):
            print(note, file=sys.stderr, flush=True)
        boxes, landmarks = detector.detect(frame)
        raw = predictor.predict(frame, boxes, landmarks=landmarks)
        faces = tracker.update(raw)
        if on_frame is not None:
            on_frame(i, faces)
        if table is not None:
            table.add(i, raw, faces)
        now = time.perf_counter()
        stats.frames += 1
        stats.faces += len(faces)
        stats.frames_with_faces += bool(faces)
        stats.labels.update(f.label for f in faces)
        if faces:
            mood.add(faces[0].probs, now)
        instant = 1.0 / max(now - last, 1e-6)
        fps, last = (0.9 * fps + 0.1 * instant if fps else instant), now
        stats.seconds = now - t0
        if headless and stats.frames % 250 == 0:  # no window to watch: a line of progress now and then
            print(f"{stats.frames} frames, {stats.fps:.1f} FPS, {stats.faces} faces", file=sys.stderr, flush=True)
        if draw or not headless:
            annotated = draw_faces(frame, faces, fps, uncertain_below)
            if headless and output is not None:
                writer = writer or _writer(output, annotated.shape)
                writer(annotated, i)
            if not headless:
                cv2.imshow("emotion (s: songs, q: quit)", annotated)
                key = cv2.waitKey(1) & 0xFF
                if key in (ord("q"), 27):
                    break
                if key == ord("s") and on_mood is not None and mood.mean() is not None:
                    on_mood(mood.mean())
    if not headless:
        cv2.destroyAllWindows()
    return stats, mood.mean()


@dataclass
class FrameTable:
    """Every face of every frame: frame, time (s), track id, box, the frame's own probabilities and the track's
    smoothed label. Time is the frame's place in the video (``fps`` of the file) or, for a camera, the clock."""

    class_names: tuple[str, ...]
    fps: float = 0.0
    rows: list[dict] = field(default_factory=list)
    t0: float = field(default_factory=time.perf_counter)

    def add(self, index: int, raw: list[Face], smoothed: list[Face]) -> None:
        t = index / self.fps if self.fps > 0 else time.perf_counter() - self.t0
        for face, track in zip(raw, smoothed):
            self.rows.append(
                {
                    "frame": index,
                    "time_s": round(t, 4),
                    "track": track.track,
                    "box": [int(v) for v in face.box],
                    "probs": {c: round(float(p), 4) for c, p in zip(self.class_names, face.probs)},
                    "smoothed_label": track.label,
                }
            )

    def write(self, path: Path) -> None:
        """``.json`` (a list of rows) or ``.csv`` (one column per class); written whole, atomically."""
        import csv
        import io
        import json

        from emotion.atomic import atomic_write_text

        if path.suffix.lower() == ".json":
            atomic_write_text(path, json.dumps(self.rows, indent=1))
            return
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["frame", "time_s", "track", "x", "y", "w", "h", *self.class_names, "smoothed_label"])
        for r in self.rows:
            probs = [r["probs"][c] for c in self.class_names]
            w.writerow([r["frame"], r["time_s"], r["track"], *r["box"], *probs, r["smoothed_label"]])
        atomic_write_text(path, out.getvalue())

    def plot(self, path: Path) -> None:
        """Each track's probabilities over time, one panel per track (the 5 longest)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from emotion.atomic import save_figure

        tracks: dict[int, list[dict]] = {}
        for r in self.rows:
            tracks.setdefault(r["track"], []).append(r)
        shown = sorted(tracks, key=lambda k: -len(tracks[k]))[:5]
        fig, axes = plt.subplots(max(1, len(shown)), 1, figsize=(9, 2.4 * max(1, len(shown))), squeeze=False)
        for ax, track in zip(axes[:, 0], shown):
            rows = tracks[track]
            t = [r["time_s"] for r in rows]
            ax.stackplot(t, *[[r["probs"][c] for r in rows] for c in self.class_names], labels=self.class_names)
            ax.set_ylim(0, 1)
            ax.set_ylabel(f"track {track}")
        if not shown:
            axes[0, 0].set_title("no faces")
        axes[-1, 0].set_xlabel("time (s)")
        axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
        fig.tight_layout()
        save_figure(fig, path)
        plt.close(fig)


def source_fps(source: str) -> float:
    """A video file's frame rate (0 for a camera, a folder or a file that does not say)."""
    if source.isdigit() or not Path(source).is_file():
        return 0.0
    cap = cv2.VideoCapture(source)
    try:
        return float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()


def _writer(output: Path, shape: tuple[int, ...]):
    """A video writer for ``*.mp4``/``*.avi`` outputs, else numbered PNG frames in the ``output`` folder."""
    if output.suffix.lower() in (".mp4", ".avi"):
        output.parent.mkdir(parents=True, exist_ok=True)
        fourcc = cv2.VideoWriter_fourcc(*("mp4v" if output.suffix.lower() == ".mp4" else "MJPG"))
        vw = cv2.VideoWriter(str(output), fourcc, 25.0, (shape[1], shape[0]))
        if not vw.isOpened():
            raise SourceError(f"cannot write video {output}")
        return lambda frame, i: vw.write(_fit(frame, shape))  # a frame of another size would be dropped silently
    output.mkdir(parents=True, exist_ok=True)

    def write_png(frame: np.ndarray, i: int) -> None:
        if not cv2.imwrite(str(output / f"frame_{i:06d}.png"), frame):
            raise SourceError(f"cannot write {output / f'frame_{i:06d}.png'} (read-only folder or full disk?)")

    return write_png


def _fit(frame: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An annotated (BGR) ``frame`` letterboxed into a video's frame size (a folder's images may differ in size)."""
    h, w = shape[:2]
    if frame.shape[:2] == (h, w):
        return frame
    scale = min(w / frame.shape[1], h / frame.shape[0])
    small = cv2.resize(frame, (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale))))
    out = np.zeros((h, w, 3), np.uint8)
    y, x = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    out[y : y + small.shape[0], x : x + small.shape[1]] = small
    return out


#: The narrowest face the video scans find in every frame, in pixels of their 640-px copy: 100-px faces of a 4K
#: frame (17 px there) are, 60-px ones (10 px) are not (``experiments/faces_in_the_field/hd_video.py``).
SCAN_FINDS_PX = 17


def small_faces_note(detector: StreamDetector, width: int) -> str | None:
    """For a source wider than 1080p whose YuNet scans search a downscaled copy only: which faces they miss, and the
    flag that finds them; None otherwise."""
    scanner = getattr(detector, "scanner", None)
    if width <= 1920 or not isinstance(scanner, YuNetDetector) or scanner.min_face:
        return None
    if not 0 < scanner.detect_width < width:
        return None
    smallest = round(SCAN_FINDS_PX * width / scanner.detect_width)
    return (
        f"note: the scans search this {width}-px-wide source at {scanner.detect_width} px: faces narrower than about "
        f"{smallest} px are missed; --min-face 48 finds them with a finer search (slower: 12-14 FPS in 4K on 2 cores)"
    )


def video_scanner(
    kind: str,
    detect_width: int | None,
    min_face: int | None,
    scale_factor: float | None,
    face_check: float | None = None,
) -> FaceDetector | YuNetDetector:
    """The whole-frame search of the cam: ``yunet`` (photo settings) or ``haar``, with the flags that were given."""
    base = haar_scanner() if kind == "haar" else stream_scanner()
    given = {"detect_width": detect_width, "min_face": min_face, "scale_factor": scale_factor, "check": face_check}
    return replace(base, **{k: v for k, v in given.items() if v is not None})


@quiet_if_reader_gone
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m emotion.cam", description=__doc__.splitlines()[0])
    p.add_argument(
        "--source", default="0", help="webcam index, video file, image folder or stream URL (rtsp://…; default 0)"
    )
    p.add_argument(
        "--model", help=".ckpt, .safetensors, .onnx or a shipped model's name (default: the shipped default)"
    )
    p.add_argument("--headless", action="store_true", help="no window; write annotated output instead")
    p.add_argument("--output", type=Path, help="with --headless: OUT.mp4/OUT.avi, or a folder for PNG frames")
    p.add_argument(
        "--detector",
        choices=("yunet", "haar"),
        default="yunet",
        help="yunet (default: finds tilted faces, aligns them as FER2013 frames its faces) or haar (the old cascade)",
    )
    defaults, photo, haar = VideoFaceDetector(), stream_scanner(), haar_scanner()
    for flag, kind, default, text in (
        ("--scan-every", int, defaults.scan_every, "search the whole frame for new faces every N frames"),
        ("--track-every", int, defaults.track_every, "re-find known faces near their last box every N frames"),
        (
            "--detect-width",
            int,
            None,
            f"width of the whole-frame search (0 = full frame); default {photo.detect_width}, haar {haar.detect_width}",
        ),
        (
            "--min-face",
            int,
            None,
            f"smallest face to find, in frame pixels (yunet: an HD frame is then also searched finer, slower); "
            f"default {photo.min_face}/haar {haar.min_face}",
        ),
        ("--scale-factor", float, None, f"haar only: its search's scale step (smaller = slower); {haar.scale_factor}"),
        (
            "--confirm-below",
            float,
            None,
            "yunet only: a new face the scan scores below this is followed once a closer look confirms it "
            f"(fewer false faces on textures; 0 = follow every face found); default {defaults.confirm_below}",
        ),
        (
            "--face-check",
            float,
            None,
            "yunet only: the P(face) a face needs from the face check, which turns away textures YuNet takes for "
            f"faces (0 = no check); default {CHECK_SCORE}",
        ),
    ):
        p.add_argument(flag, type=kind, default=default, help=text if default is None else f"{text}; default {default}")
    p.add_argument(
        "--uncertain-below",
        type=float,
        default=UNCERTAIN_BELOW,
        help="show 'uncertain' when the top (calibrated) probability is below this (0 = never; see README)",
    )
    p.add_argument("--max-frames", type=int)
    p.add_argument(
        "--mood-out",
        type=Path,
        metavar="FILE.json",
        help="at the end, write the mood of the last seconds (class names + mean probabilities) as JSON",
    )
    p.add_argument(
        "--table",
        type=Path,
        metavar="FILE.csv|FILE.json",
        help="write every face of every frame: frame, time, track id, box, probabilities, smoothed label",
    )
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="write each track's emotions over time")
    args = p.parse_args(argv)
    if args.scan_every < 1 or args.track_every < 1:
        p.error("--scan-every and --track-every must be >= 1")
    if args.table is not None and args.table.suffix.lower() not in (".csv", ".json"):
        p.error(f"--table {args.table}: give a .csv or a .json file")
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        p.error(f"--plot {args.plot}: give a .png file")
    if args.mood_out is not None and args.mood_out.suffix.lower() != ".json":
        p.error(f"--mood-out {args.mood_out}: give a .json file")
    from emotion.atomic import unwritable_reason

    for flag, path in (("--table", args.table), ("--plot", args.plot), ("--mood-out", args.mood_out)):
        if path is not None and (why := unwritable_reason(path.parent)):  # now, not after the session they record
            p.error(f"{flag} {path}: cannot write in {path.parent} ({why}); give a place you can write to")
    if args.output is not None and args.output.suffix and args.output.suffix.lower() not in (".mp4", ".avi"):
        p.error(f"--output {args.output}: give OUT.mp4 or OUT.avi (a video), or a folder name without a suffix (PNGs)")
    if args.output is not None and not args.headless:
        p.error("--output is written with --headless (the window shows the video otherwise); add --headless")
    if args.scale_factor is not None and args.detector != "haar":
        p.error("--scale-factor sets the Haar cascade's search; add --detector haar, or leave it out")
    if args.confirm_below is not None and args.detector == "haar":
        p.error("--confirm-below weighs YuNet's scores (the cascade gives none); leave it out with --detector haar")
    if args.confirm_below is not None and not 0 <= args.confirm_below <= 1:
        p.error(f"--confirm-below {args.confirm_below}: give a score from 0 to 1")
    if wrong := face_check_flag_error(args.face_check, args.detector):
        p.error(wrong)
    too_small = [
        args.scale_factor is not None and args.scale_factor <= 1,
        args.min_face is not None and args.min_face < 1,
        args.detect_width is not None and args.detect_width < 0,
    ]
    if any(too_small):
        p.error("--scale-factor must be > 1, --min-face >= 1 and --detect-width >= 0 (0 = full resolution)")
    if (
        not args.headless
        and sys.platform.startswith("linux")
        and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    ):
        return report(
            "no display to show the video in (DISPLAY is not set); run with --headless --output out.mp4 "
            "(or a folder for PNG frames), or from a desktop session"
        )

    from emotion.errors import ModelFileError
    from emotion.serve.predict import load_predictor

    try:
        predictor = load_predictor(args.model, False)
        table = FrameTable(predictor.class_names, source_fps(args.source)) if args.table or args.plot else None
        detector = VideoFaceDetector(
            video_scanner(args.detector, args.detect_width, args.min_face, args.scale_factor, args.face_check),
            scan_every=args.scan_every,
            track_every=args.track_every,
            **({} if args.confirm_below is None else {"confirm_below": args.confirm_below}),
        )
        stats, mood = run(
            predictor,
            args.source,
            args.headless,
            args.output,
            detector,
            args.max_frames,
            draw=not args.headless or args.output is not None,
            uncertain_below=args.uncertain_below,
            table=table,
        )
    except (SourceError, ModelFileError, FileNotFoundError) as exc:
        return report(exc)
    top = ", ".join(f"{k} {v}" for k, v in stats.labels.most_common())
    print(
        f"{stats.frames} frames, {stats.frames_with_faces} with faces, {stats.faces} faces, {stats.fps:.1f} FPS"
        + (f"; labels: {top}" if top else "")
    )
    if args.table is not None:
        table.write(args.table)
        print(f"wrote {len(table.rows)} rows to {args.table}")
    if args.plot is not None:
        table.plot(args.plot)
        print(f"wrote {args.plot}")
    if args.mood_out is not None:
        write_mood(args.mood_out, predictor.class_names, mood)
    return 0


def write_mood(path: Path, class_names: tuple[str, ...], mood: np.ndarray | None) -> None:
    """The mood of the last seconds as JSON (class names, mean probabilities; null probabilities when no face was
    seen), for other programs."""
    import json

    from emotion.atomic import atomic_write_text

    probs = None if mood is None else [round(float(p), 6) for p in mood]
    atomic_write_text(path, json.dumps({"class_names": list(class_names), "probs": probs}))


if __name__ == "__main__":
    raise SystemExit(main())
