"""``python -m emotion.audit``: the data-set audit (:mod:`emotion.data.audit`)."""

from emotion.data.audit import main

if __name__ == "__main__":
    raise SystemExit(main())
