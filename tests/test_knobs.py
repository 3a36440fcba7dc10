"""No dead knobs: every parameter of the shipped search spaces moves the weights in every experiment that has it.

A knob that another setting overrides (a one-cycle peak over the optimizer's lr) would give identical weights for
two values; a parameter that an experiment does not have must fail to compose, never be silently ignored.
"""

from __future__ import annotations

import re

import pytest
import torch
import yaml
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from tests.conftest import CONF, make_cfg, weights_after_fit

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
SEARCH_SPACES = sorted((CONF / "hparams_search").glob("*.yaml"))
SMALL = [
    "data=synthetic",
    "data.synthesize.n_train=10",
    "data.synthesize.n_val=2",
    "data.synthesize.n_test=2",
    "data.batch_size=16",
    "model.channels_last=false",
    "model.distill.teacher=null",
    "model.distill.drop_labels_below=0.0",  # no teacher, no labels to doubt (experiment=recipe drops below 0.2)
    "model.init_from=null",  # a fine-tune's start (experiment=field) fits the shipped widths, not the narrow ones
    "data.views=null",  # experiment=field's views are of FER2013's training faces, not of generated ones
]


def searched_params() -> list[tuple[str, str, str]]:
    """(parameter, low value, high value) of every search space: the ends of an interval, the first two choices."""
    out = []
    for path in SEARCH_SPACES:
        for name, spec in yaml.safe_load(path.read_text())["hydra"]["sweeper"]["params"].items():
            values = re.findall(r"[-+]?\d[\d.]*(?:e[-+]?\d+)?", spec)
            out.append((name, values[0], values[1]))
    return out


def small_overrides(experiment: str) -> list[str]:
    """Generated faces; VGG widths cut down (no searched knob is about width: a dead knob stays dead at any width)."""
    cfg = make_cfg(CONF.parent / "logs" / "unused", [f"experiment={experiment}"])
    narrow = ["model.net.widths=[8,16,16,16]", "model.net.fc=16"] if "widths" in cfg.model.net else []
    return [f"experiment={experiment}", *SMALL, *narrow]


def weights_after_steps(tmp_path, experiment: str, overrides: list[str], steps: int = 2) -> torch.Tensor:
    return weights_after_fit(make_cfg(tmp_path, [*small_overrides(experiment), *overrides]), steps)


def test_the_search_spaces_are_read():
    params = [p for p, _, _ in searched_params()]
    assert "model.optimizer.lr" in params and len(params) >= 5


#: the default suite moves every knob in a CNN and a VGG experiment; the others run in make test-slow
KNOB_EXPERIMENTS = [e if e in ("demo", "best") else pytest.param(e, marks=pytest.mark.slow) for e in EXPERIMENTS]


@pytest.mark.parametrize("experiment", KNOB_EXPERIMENTS)
def test_every_searched_knob_moves_the_weights(tmp_path, experiment):
    for param, low, high in searched_params():
        cfg = make_cfg(tmp_path, small_overrides(experiment))
        if OmegaConf.select(cfg, param) is None:
            with pytest.raises(ConfigCompositionException):  # e.g. a dropout the experiment's network lacks
                make_cfg(tmp_path, [*small_overrides(experiment), f"{param}={low}"])
            continue
        a = weights_after_steps(tmp_path, experiment, [f"{param}={low}"])
        b = weights_after_steps(tmp_path, experiment, [f"{param}={high}"])
        assert not torch.equal(a, b), f"{param}={low} and ={high} give the same weights in experiment={experiment}"


def test_one_cycle_peak_follows_the_optimizer_lr():
    """The one place the learning rate is set: every one-cycle experiment derives its peak from it."""
    for experiment in EXPERIMENTS:
        cfg = make_cfg(CONF.parent / "logs" / "unused", [f"experiment={experiment}", "model.optimizer.lr=0.0123"])
        sched = cfg.model.get("scheduler")
        if sched and sched._target_.endswith("OneCycleLR"):
            assert sched.max_lr == 0.0123, experiment


def test_mixing_moves_the_weights(tmp_path):
    """data.mix is off by default; turned on, the batches (and so the weights) change."""
    plain = weights_after_steps(tmp_path, "recipe", [])
    assert torch.equal(plain, weights_after_steps(tmp_path, "recipe", ["data.mix.mixup_alpha=0.0"]))
    assert not torch.equal(plain, weights_after_steps(tmp_path, "recipe", ["data.mix.mixup_alpha=0.4"]))


def leaves(node: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for key, value in node.items():
        out += leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", value)]
    return out


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_files_set_only_what_differs_from_their_defaults(tmp_path, experiment):
    """A value an experiment repeats hides which settings make it what it is (and goes stale when a default moves)."""
    raw = yaml.safe_load((CONF / "experiment" / f"{experiment}.yaml").read_text())
    groups = [
        f"{key.split()[1].lstrip('/')}={value}"
        for entry in raw.get("defaults", [])
        if isinstance(entry, dict)
        for key, value in entry.items()
        if key.startswith("override ")
    ]
    base = OmegaConf.to_container(make_cfg(tmp_path, groups), resolve=False)
    bases = {k: v for k, v in leaves(base)}
    if experiment == "fast":  # builds on best: compare with best
        bases.update(leaves(yaml.safe_load((CONF / "experiment" / "best.yaml").read_text())))
    repeated = [k for k, v in leaves({k: v for k, v in raw.items() if k != "defaults"}) if bases.get(k, object()) == v]
    assert repeated == [], f"experiment={experiment} repeats defaults: {repeated}"
