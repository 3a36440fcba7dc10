"""Optuna studies over Hydra multiruns: ``python -m emotion.train -m hparams_search=optuna experiment=recipe``.

The sweeper asks Optuna for a trial, launches it as an ordinary Hydra job (its directory is named after the trial
number, so a study's job folders line up with its trials) and tells Optuna the job's ``optimized_metric``. The
study lives in a storage (SQLite in the sweep directory by default), so it survives a crash: run the same command
again and it continues up to ``n_trials`` finished trials; a trial that was running when the process died is
marked failed and queued again with the same parameters. Pruning happens inside the job
(:class:`emotion.training.callbacks.OptunaPruning`), which reports each epoch's metric to the same storage. The
search space uses Hydra's sweep grammar: ``choice(32, 64)``, ``interval(0, 0.2)``,
``tag(log, interval(1e-4, 1e-2))``, ``range(1, 5)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra.core.utils import JobStatus
from omegaconf import DictConfig, OmegaConf

from emotion.errors import UserError

log = logging.getLogger(__name__)

#: Set on a trial that was still running when its sweeper died; such trials do not count towards ``n_trials``.
INTERRUPTED = "interrupted"


def distribution(override: Override) -> optuna.distributions.BaseDistribution | str:
    """One override of the search space → an Optuna distribution (or its fixed value, as a string)."""
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return optuna.distributions.CategoricalDistribution(list(override.sweep_iterator(Transformer.encode)))
    if override.is_range_sweep():
        if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
            return optuna.distributions.FloatDistribution(value.start, value.stop - value.step, step=value.step)
        return optuna.distributions.IntDistribution(int(value.start), int(value.stop) - 1, step=int(value.step))
    log_scale = "log" in value.tags
    if isinstance(value.start, int) and isinstance(value.end, int):
        return optuna.distributions.IntDistribution(value.start, value.end, log=log_scale)
    return optuna.distributions.FloatDistribution(float(value.start), float(value.end), log=log_scale)


def search_space(overrides: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Overrides in Hydra's grammar → (distributions of the swept keys, fixed ``key=value`` pairs)."""
    space, fixed = {}, {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        d = distribution(override)
        (space if isinstance(d, optuna.distributions.BaseDistribution) else fixed)[override.get_key_element()] = d
    for key in fixed:
        space.pop(key, None)  # a command-line value pins a searched key
    return space, fixed


def open_study(storage: str | None, study_name: str, direction: str, sampler: Any = None) -> optuna.Study:
    if storage and storage.startswith("sqlite:///"):
        Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return optuna.create_study(
        storage=storage, study_name=study_name, direction=direction, sampler=sampler, load_if_exists=True
    )


def recover_interrupted(study: optuna.Study) -> int:
    """Trials left running by a dead sweeper → failed (marked :data:`INTERRUPTED`) and queued again."""
    stale = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in stale:
        study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)  # no public setter for a frozen trial
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params, skip_if_exists=False)
        log.warning("trial %d was interrupted; queued again with the same parameters", trial.number)
    return len(stale)


def finished(study: optuna.Study) -> int:
    """Trials that count towards ``n_trials``: complete, pruned, or failed for a reason of their own."""
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return sum(1 for t in study.get_trials(deepcopy=False, states=done) if not t.user_attrs.get(INTERRUPTED))


def job_value(ret: Any) -> float | None:
    """A finished job's metric, or None when it failed (raised, returned NaN or nothing)."""
    if ret.status != JobStatus.COMPLETED:
        return None
    try:
        value = float(ret.return_value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def composed_values(config: DictConfig, space: Mapping[str, Any]) -> dict[str, Any]:
    """The composed config's values of the searched keys, where the search space contains them."""
    values = {}
    for key, dist in space.items():
        value = OmegaConf.select(config, key, default=None)
        if value is None:
            continue
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            if value in dist.choices:
                values[key] = value
        elif dist.low <= value <= dist.high:
            values[key] = value
    return values


def run_study(
    launcher: Any,
    config: DictConfig,
    arguments: Sequence[str],
    *,
    storage: str | None,
    study_name: str,
    direction: str = "maximize",
    n_trials: int = 20,
    n_jobs: int = 1,
    max_failure_rate: float = 0.5,
    sampler: Any = None,
    params: Mapping[str, Any] | None = None,
    baseline_first: bool = True,
) -> optuna.Study:
    """Run (or continue) the study until ``n_trials`` trials have finished. ``baseline_first``: unless a trial already
    ran them, the next trial takes the composed configuration's values of the searched keys — every study has its
    baseline."""
    space, fixed = search_space([f"{k}={v}" for k, v in (params or {}).items()] + list(arguments))
    if not space:
        raise UserError("hparams_search: nothing to search; give hydra.sweeper.params or a sweep override")
    study = open_study(storage, study_name, direction, sampler)
    recover_interrupted(study)
    baseline = composed_values(config, space) if baseline_first else {}
    if baseline and not any(all(t.params.get(k) == v for k, v in baseline.items()) for t in study.trials):
        study.enqueue_trial(baseline)  # also when continuing a study that never ran it
        log.info("next trial: the composed configuration %s (the study's baseline)", baseline)

    def link(trial: optuna.Trial) -> tuple[str, ...]:
        """What the job needs to report to this trial (pruning): nothing for an in-memory study."""
        if not storage:
            return ()
        return (f"optuna.storage='{storage}'", f"optuna.study_name='{study_name}'", f"optuna.trial={trial.number}")

    log.info("study %r in %s: %d of %d trials done", study_name, storage or "memory", finished(study), n_trials)
    failures = 0
    while (todo := n_trials - finished(study)) > 0:
        trials = [study.ask(space) for _ in range(min(n_jobs, todo))]
        overrides = [tuple(f"{k}={v}" for k, v in {**trial.params, **fixed}.items()) + link(trial) for trial in trials]
        returns = launcher.launch(overrides, initial_job_idx=trials[0].number)
        for trial, ret in zip(trials, returns):
            state = study._storage.get_trial(trial._trial_id).state  # the job may have pruned it itself
            if state != optuna.trial.TrialState.RUNNING:
                continue
            value = job_value(ret)
            if value is None:
                failures += 1
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, value)
        if failures > max_failure_rate * max(n_trials, 1):
            raise RuntimeError(f"{failures} trials failed (more than max_failure_rate={max_failure_rate}); stopping")
    write_results(study, Path(config.hydra.sweep.dir))
    return study


def write_results(study: optuna.Study, sweep_dir: Path) -> None:
    """``optimization_results.yaml`` (best parameters and value), as Hydra's own Optuna sweeper writes it."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        log.warning("no trial of study %r completed", study.study_name)
        return
    best = study.best_trial
    results = {"name": "optuna", "best_trial": best.number, "best_params": best.params, "best_value": best.value}
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
    log.info("best trial %d: %s = %.4f with %s", best.number, "value", best.value, best.params)
