"""``python -m emotion.songs --emotion happy`` | ``--from-image PHOTO`` | ``--from-cam [SOURCE]``."""

from __future__ import annotations

import argparse
import sys
import webbrowser
from typing import TYPE_CHECKING

from emotion.errors import UserError, quiet_if_reader_gone, report
from emotion.labels import FER2013_CLASSES
from emotion.songs.recommender import STRATEGIES, CatalogError, load_catalog, print_recommendations, recommend

if TYPE_CHECKING:
    from emotion.serve.mood import Mood


@quiet_if_reader_gone
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m emotion.songs", description="Songs for an emotion or a face.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--emotion", type=str.lower, choices=FER2013_CLASSES, help="e.g. happy (any case)")
    src.add_argument("--from-image", metavar="PATH", help="the emotion of the largest face in a photo (file or URL)")
    src.add_argument(
        "--from-cam", metavar="SOURCE", nargs="?", const="0", help="webcam index, video or stream URL (default 0)"
    )
    p.add_argument("-n", type=int, default=5, help="number of songs (default 5)")
    p.add_argument("--strategy", choices=STRATEGIES, default="match", help="match the mood, or lift it (iso principle)")
    p.add_argument("--catalog", help="your own CSV (title/track_name, artist/artists, valence, energy[, tempo])")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--all-faces", action="store_true", help="with --from-image: the mean mood of every face found")
    p.add_argument("--model", help="model for --from-image/--from-cam (default: the shipped model)")
    p.add_argument("--frames", type=int, default=75, help="frames to watch with --from-cam (without --live)")
    p.add_argument(
        "--live", action="store_true", help="with --from-cam: open the cam's window; s prints songs, q quits"
    )
    p.add_argument("--open", type=int, metavar="K", help="open song K's Spotify search in the browser")
    args = p.parse_args(argv)

    if args.live and not args.from_cam:
        p.error("--live goes with --from-cam")
    if args.all_faces and not args.from_image:
        p.error("--all-faces goes with --from-image")

    def songs_for(found: Mood) -> list:
        return recommend(
            found.probs, found.class_names, n=args.n, strategy=args.strategy, catalog=catalog, seed=args.seed
        )

    try:
        catalog = load_catalog(args.catalog)
        if args.emotion:
            songs = recommend(
                args.emotion, FER2013_CLASSES, n=args.n, strategy=args.strategy, catalog=catalog, seed=args.seed
            )
            label = args.emotion
        else:
            from emotion.serve.mood import mood_of_image, mood_of_stream

            if args.from_image:
                found = mood_of_image(args.from_image, args.model, args.all_faces)
            else:
                live = (
                    (lambda m: print_recommendations(songs_for(m), f"{m.label} [{args.strategy}]"))
                    if args.live
                    else None
                )
                found = mood_of_stream(args.from_cam, args.model, None if args.live else args.frames, live)
            songs, label = songs_for(found), found.label
    except (UserError, CatalogError, ValueError, OSError) as exc:  # UserError: a bad model file or camera
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
