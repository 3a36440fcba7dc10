"""``python -m emotion.cam``: the webcam demo (:mod:`emotion.serve.cam`)."""

from emotion.serve.cam import main

if __name__ == "__main__":
    raise SystemExit(main())
