"""``python -m emotion.predict``: the predict CLI (:mod:`emotion.serve.predict`)."""

from emotion.serve.predict import main

if __name__ == "__main__":
    raise SystemExit(main())
