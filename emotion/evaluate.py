"""``python -m emotion.evaluate`` / ``emotion-evaluate``: the Hydra app of :mod:`emotion.evaluation.evaluate`
(what it scores and writes is said there)."""

from __future__ import annotations

import sys

import emotion.stack  # noqa: F401  (first: a one-line error in a serving install)

import hydra
from omegaconf import DictConfig

from emotion.cli import CONF_DIR, fail_cleanly, preflight
from emotion.evaluation.evaluate import evaluate, print_result

__all__ = ["evaluate", "main", "print_result"]


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def main(cfg: DictConfig) -> float:
    with fail_cleanly():
        return evaluate(cfg)["accuracy"]


def cli() -> None:
    """``python -m emotion.evaluate`` / ``emotion-evaluate``: the checks Hydra cannot make, then Hydra's app."""
    preflight(sys.argv[1:], "eval")
    main()


if __name__ == "__main__":
    cli()
