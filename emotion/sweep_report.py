"""``python -m emotion.sweep_report``: the sweep report (:mod:`emotion.training.sweep_report`)."""

from emotion.training.sweep_report import main

if __name__ == "__main__":
    raise SystemExit(main())
