"""Calibrate a model's probabilities by temperature scaling (Guo et al. 2017): ``python -m emotion.calibrate``.

The temperature is fitted (minimum negative log-likelihood) on one seeded half of the split and reported — expected
calibration error (ECE), NLL and a reliability diagram, before and after — on the other half, so the reported
figures come from faces the fit never saw. It is written into the model's spec: every consumer (evaluate, predict,
cam, songs, ONNX export) divides the logits by it before the softmax. Accuracy cannot change (the ranking of the
classes is the same at any temperature). The table of confidence thresholds justifies the cam's "uncertain" label.
"""

from __future__ import annotations

import sys

import emotion.stack  # noqa: F401  (first: a one-line error in a serving install)

import hydra
from omegaconf import DictConfig

from emotion.cli import CONF_DIR, check_config, fail_cleanly, preflight


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="calibrate")
def main(cfg: DictConfig) -> None:
    with fail_cleanly():
        check_config(cfg)  # a bad value or a missing data set: one line, before torch is imported
        from emotion.evaluation.calibration import calibrate  # torch only after Hydra has parsed the command line

        calibrate(cfg)


def cli() -> None:
    """``python -m emotion.calibrate`` / ``emotion-calibrate``: the checks Hydra cannot make, then Hydra's app."""
    preflight(sys.argv[1:], "calibrate")
    main()


if __name__ == "__main__":
    cli()
