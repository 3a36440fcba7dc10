"""The Optuna sweeper's bookkeeping (fake launcher, real Optuna storage) and the pruning callback."""

from types import SimpleNamespace

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from emotion.errors import UserError
from emotion.training.callbacks import OptunaPruning
from emotion.training.study import INTERRUPTED, run_study, search_space

PARAMS = {"model.optimizer.lr": "tag(log, interval(1e-4, 1e-2))", "data.batch_size": "choice(32, 64)"}
State = optuna.trial.TrialState


def test_search_space_reads_hydra_sweep_grammar_and_pins_command_line_values():
    space, fixed = search_space(
        ["a=tag(log, interval(1e-4, 1e-2))", "b=choice(32, 64)", "c=range(1, 4)", "d=interval(0, 0.5)", "b=16", "e=x"]
    )
    assert space["a"] == optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    assert space["c"] == optuna.distributions.IntDistribution(1, 3)
    assert space["d"] == optuna.distributions.FloatDistribution(0.0, 0.5)
    assert "b" not in space and fixed == {"b": "16", "e": "x"}


class FakeLauncher:
    """Runs each trial as a 'job' that returns 0.5 (+ lr), prunes itself, or fails, by a rule per call."""

    def __init__(self, storage: str, outcomes: list[str]) -> None:
        self.storage, self.outcomes, self.calls = storage, outcomes, []

    def launch(self, overrides, initial_job_idx):
        returns = []
        for i, job in enumerate(overrides):
            self.calls.append((initial_job_idx + i, job))
            kv = dict(o.split("=", 1) for o in job)
            outcome = self.outcomes.pop(0)
            ret = JobReturn(status=JobStatus.COMPLETED, _return_value=0.5 + float(kv["model.optimizer.lr"]))
            if outcome == "prune":  # as OptunaPruning does from inside the job
                study = optuna.load_study(study_name=kv["optuna.study_name"].strip("'"), storage=self.storage)
                study.tell(int(kv["optuna.trial"]), state=State.PRUNED)
            elif outcome == "fail":
                ret = JobReturn(status=JobStatus.FAILED, _return_value=RuntimeError("diverged"))
            elif outcome == "nan":
                ret = JobReturn(status=JobStatus.COMPLETED, _return_value=float("nan"))
            returns.append(ret)
        return returns


def study_in(tmp_path, launcher_outcomes, n_trials, composed=None, **kwargs):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    launcher = FakeLauncher(storage, launcher_outcomes)
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}, **(composed or {})})
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = run_study(
        launcher,
        config,
        [],
        storage=storage,
        study_name="s",
        n_trials=n_trials,
        sampler=sampler,
        params=PARAMS,
        **kwargs,
    )
    return study, launcher


def test_trials_are_told_their_values_pruned_and_failed_states_kept(tmp_path):
    study, launcher = study_in(tmp_path, ["ok", "prune", "fail", "nan", "ok"], 5)
    assert [t.state for t in study.trials] == [State.COMPLETE, State.PRUNED, State.FAIL, State.FAIL, State.COMPLETE]
    assert [idx for idx, _ in launcher.calls] == [0, 1, 2, 3, 4]  # job folders named after the trials
    assert all(f"optuna.trial={i}" in job for i, job in launcher.calls)
    assert study.best_value == pytest.approx(0.5 + study.best_params["model.optimizer.lr"])
    assert (tmp_path / "optimization_results.yaml").is_file()


def test_a_study_continues_where_it_stopped_and_reruns_an_interrupted_trial(tmp_path):
    study, _ = study_in(tmp_path, ["ok", "ok"], 2)
    crashed = study.ask({k: v for k, v in search_space([f"{k}={v}" for k, v in PARAMS.items()])[0].items()})
    assert crashed.number == 2  # left RUNNING, as when the sweeper's process is killed mid-trial
    study, launcher = study_in(tmp_path, ["ok", "ok"], 4)
    states = [t.state for t in study.trials]
    assert states == [State.COMPLETE, State.COMPLETE, State.FAIL, State.COMPLETE, State.COMPLETE]
    assert study.trials[2].user_attrs[INTERRUPTED] and study.trials[3].params == crashed.params  # re-run
    assert [idx for idx, _ in launcher.calls] == [3, 4]  # 2 done + 2 new = 4; the interrupted one not counted


def test_too_many_failures_stop_the_study_and_an_empty_space_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="max_failure_rate"):
        study_in(tmp_path, ["fail", "fail", "fail"], 4, max_failure_rate=0.5)
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    with pytest.raises(UserError, match="nothing to search"):
        run_study(FakeLauncher("", []), config, ["a=1"], storage=None, study_name="e")


def fake_trainer(value: float, epoch: int, fn: str = "fit"):
    return SimpleNamespace(
        sanity_checking=False,
        callback_metrics={"val/acc": value},
        current_epoch=epoch,
        should_stop=False,
        state=SimpleNamespace(fn=fn),
    )


def test_pruning_callback_reports_each_epoch_and_stops_a_bad_trial(tmp_path):
    storage = f"sqlite:///{tmp_path}/p.db"
    study = optuna.create_study(study_name="p", storage=storage, direction="maximize")
    good, bad = study.ask(), study.ask()
    pruner = optuna.pruners.ThresholdPruner(lower=0.5)
    for trial, value, pruned in ((good, 0.7, False), (bad, 0.3, True)):
        callback, trainer = OptunaPruning(storage, "p", trial.number, pruner=pruner), fake_trainer(value, 0)
        callback.on_validation_end(trainer, None)
        frozen = study.trials[trial.number]
        assert frozen.intermediate_values == {0: value}
        assert trainer.should_stop is pruned and (frozen.state == State.PRUNED) is pruned


def test_pruning_callback_is_inert_outside_a_study_and_after_fitting(tmp_path):
    trainer = fake_trainer(0.1, 0)
    OptunaPruning(None, "x", None, pruner=optuna.pruners.ThresholdPruner(lower=0.5)).on_validation_end(trainer, None)
    assert trainer.should_stop is False
    storage = f"sqlite:///{tmp_path}/p.db"
    study = optuna.create_study(study_name="p", storage=storage)
    trial = study.ask()
    callback = OptunaPruning(storage, "p", trial.number, pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    callback.on_validation_end(fake_trainer(0.1, 3, fn="validate"), None)  # the best checkpoint's final check
    assert study.trials[0].intermediate_values == {} and study.trials[0].state == State.RUNNING


def test_the_composed_configuration_runs_first_even_in_a_continued_study(tmp_path):
    """The experiment's own values (where the space holds them) run as a trial: the study's baseline."""
    composed = {"model": {"optimizer": {"lr": 0.001}}, "data": {"batch_size": 48}}  # 48 is not a choice
    study, _ = study_in(tmp_path, ["ok"], 1, baseline_first=False)  # a study that never ran it
    study, launcher = study_in(tmp_path, ["ok", "ok"], 3, composed=composed)
    assert (
        study.trials[1].params["model.optimizer.lr"] == 0.001 and study.trials[0].params["model.optimizer.lr"] != 0.001
    )
    assert study.trials[1].params["data.batch_size"] in (32, 64)  # sampled: the composed value is outside the space
    assert "model.optimizer.lr=0.001" in launcher.calls[0][1]
    study, launcher = study_in(tmp_path, ["ok"], 4, composed=composed)  # ran once already: not again
    assert [t.params["model.optimizer.lr"] for t in study.trials].count(0.001) == 1
