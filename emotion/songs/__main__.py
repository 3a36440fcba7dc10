"""``python -m emotion.songs --emotion happy`` | ``--from-image PHOTO`` | ``--from-cam [SOURCE]``."""

from __future__ import annotations

import argparse
import sys
import webbrowser
from pathlib import Path

import numpy as np

from emotion.errors import report
from emotion.labels import FER2013_CLASSES
from emotion.songs.recommender import STRATEGIES, CatalogError, load_catalog, print_recommendations, recommend


def mood_from_image(path: str, model: str | None) -> tuple[np.ndarray, tuple[str, ...]]:
    from emotion.serve.predict import load_predictor, read_image

    try:
        image = read_image(Path(path))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    predictor = load_predictor(model, True)
    faces = predictor.predict(image)
    if not faces:
        raise ValueError(f"no face detected in {path}")
    return faces[0].probs, predictor.class_names


def mood_from_cam(source: str, model: str | None, frames: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """Run ``python -m emotion.cam --headless`` on the source and read the mood file it hands over."""
    import json
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        mood_file = Path(tmp) / "mood.json"
        cmd = [sys.executable, "-m", "emotion.cam", "--source", source, "--headless", "--max-frames", str(frames)]
        cmd += ["--mood-out", str(mood_file), *(["--model", model] if model else [])]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            last = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
            raise ValueError(f"the webcam app failed: {last.removeprefix('error: ')}")
        mood = json.loads(mood_file.read_text())
    if mood["probs"] is None:
        raise ValueError(f"no face seen in the first {frames} frames of source {source}")
    return np.array(mood["probs"]), tuple(mood["class_names"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m emotion.songs", description="Songs for an emotion or a face.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--emotion", choices=FER2013_CLASSES)
    src.add_argument("--from-image", metavar="PATH", help="detect the emotion of the largest face in a photo")
    src.add_argument("--from-cam", metavar="SOURCE", nargs="?", const="0", help="webcam index or video (default 0)")
    p.add_argument("-n", type=int, default=5, help="number of songs (default 5)")
    p.add_argument("--strategy", choices=STRATEGIES, default="match", help="match the mood, or lift it (iso principle)")
    p.add_argument("--catalog", help="your own CSV (title/track_name, artist/artists, valence, energy[, tempo])")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", help="model for --from-image/--from-cam (default: the shipped model)")
    p.add_argument("--frames", type=int, default=75, help="frames to watch with --from-cam")
    p.add_argument("--open", type=int, metavar="K", help="open song K's Spotify search in the browser")
    args = p.parse_args(argv)

    from emotion.errors import ModelFileError

    try:
        catalog = load_catalog(args.catalog)
        if args.emotion:
            mood, names, label = args.emotion, FER2013_CLASSES, args.emotion
        else:
            probs, names = (
                mood_from_image(args.from_image, args.model)
                if args.from_image
                else mood_from_cam(args.from_cam, args.model, args.frames)
            )
            mood, label = probs, f"{names[int(np.argmax(probs))]} ({float(np.max(probs)):.0%})"
        songs = recommend(mood, names, n=args.n, strategy=args.strategy, catalog=catalog, seed=args.seed)
    except (CatalogError, ValueError, ModelFileError, FileNotFoundError) as exc:
        return report(exc)
    print_recommendations(songs, f"{label} [{args.strategy}]")
    if len(songs) < args.n:
        print(f"(only {len(songs)} songs with distinct artists in the catalog)", file=sys.stderr)
    if args.open:
        if not 1 <= args.open <= len(songs):
            return report(f"--open {args.open} is not in 1..{len(songs)}")
        webbrowser.open(songs[args.open - 1].spotify_url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
