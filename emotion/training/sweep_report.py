"""One table for a sweep: ``python -m emotion.sweep_report logs/train/multiruns/RUN [--metric val/acc]``.

Reads every job of a Hydra multirun directory (its ``.hydra/overrides.yaml`` and, when it finished,
``metrics.json``), and writes ``sweep.md`` and ``sweep.csv`` (best first; failed jobs listed as failed, a cut-short
``metrics.json`` named) and ``sweep.png`` (the metric against each swept parameter) into the directory, or into
``--out DIR``. For an Optuna study (``optuna.db`` in the directory) it adds each trial's state (pruned trials are
marked), the parameter importances (PED-ANOVA) and the best trial as a ready command.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any

import yaml

from emotion.atomic import atomic_open, atomic_write_text, save_figure, unwritable_reason
from emotion.errors import UserError, quiet_if_reader_gone
from emotion.errors import report as report_error


def read_runs(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One row per Hydra job below ``sweep_dir``; a job whose ``metrics.json`` cannot be read is a row that says so."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        what = "is a file" if sweep_dir.exists() else "does not exist"
        raise UserError(f"{sweep_dir} {what}: give a sweep's folder, e.g. logs/train/multiruns/<run_name>")
    rows = []
    for job in sorted(sweep_dir.iterdir(), key=lambda p: (len(p.name), p.name)):
        overrides_file = job / ".hydra" / "overrides.yaml"
        if not overrides_file.is_file():
            continue
        overrides = yaml.safe_load(overrides_file.read_text()) or []
        metrics_file = job / "metrics.json"
        try:
            metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
        except (OSError, ValueError) as exc:  # cut short (a full disk, a copy interrupted) or unreadable
            rows.append(job_row(job.name, overrides, None, f"{metrics_file} unreadable ({exc})"))
            continue
        rows.append(job_row(job.name, overrides, metrics))
    if not rows:
        raise UserError(f"{sweep_dir} holds no Hydra jobs (no */.hydra/overrides.yaml)")
    return rows


def job_row(run: str, overrides: list[str], report: dict[str, Any] | None, error: str | None = None) -> dict[str, Any]:
    """One job of a sweep, local (its folder) or on Modal (what the training returned): its swept settings, its
    metrics (the run report's ``metrics``) or why it failed, and its minutes."""
    params = {k: v for k, v in (o.split("=", 1) for o in overrides if "=" in o) if not k.startswith(BOOKKEEPING)}
    if report is None:
        return {
            "run": run,
            "params": params,
            "status": f"failed: {error}" if error else "failed",
            "metrics": {},
            "minutes": None,
        }
    minutes = round(report["wall_time_s"] / 60, 1) if report.get("wall_time_s") else None
    return {"run": run, "params": params, "status": "ok", "metrics": report["metrics"], "minutes": minutes}


#: Overrides that tie a job to its sweep rather than describe the run.
BOOKKEEPING = ("optuna.", "hparams_search", "run_name", "hydra.", "paths.")


def optuna_study(sweep_dir: Path) -> Any:
    """The Optuna study stored in ``sweep_dir/optuna.db`` (the newest, if several), or None."""
    db = sweep_dir / "optuna.db"
    if not db.is_file():
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{db}"
    names = optuna.study.get_all_study_names(storage)
    return optuna.load_study(study_name=names[-1], storage=storage) if names else None


def mark_trial_states(rows: list[dict[str, Any]], study: Any) -> None:
    """A job's status from its trial: pruned trials ran shorter and are not comparable with complete ones."""
    states = {str(t.number): t.state.name.lower() for t in study.trials}
    for r in rows:
        if states.get(r["run"]) == "pruned":
            r["status"] = "pruned"


def importances(study: Any) -> dict[str, float]:
    """PED-ANOVA importance of each parameter (Optuna's own; no scikit-learn). Needs two or more complete trials."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}
    return optuna.importance.get_param_importances(study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())


def best_command(sweep_dir: Path, study: Any) -> str:
    """The best trial's job as a plain training command (the sweep's bookkeeping overrides left out)."""
    overrides = yaml.safe_load((sweep_dir / str(study.best_trial.number) / ".hydra" / "overrides.yaml").read_text())
    kept = [o for o in overrides if not o.split("=", 1)[0].lstrip("+~").startswith(BOOKKEEPING)]
    return " ".join(["python -m emotion.train", *kept, f"run_name={study.study_name}-best"])


def optuna_section(sweep_dir: Path, study: Any, metric: str) -> str:
    counts = {}
    for t in study.trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    lines = [
        f"Optuna study `{study.study_name}`: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())),
        "",
    ]
    imp = importances(study)
    if imp:
        lines += ["| parameter | importance (PED-ANOVA) |", "|---|---|"]
        lines += [f"| {name} | {value:.2f} |" for name, value in imp.items()]
        lines.append("")
    if any(t.state.name == "COMPLETE" for t in study.trials):
        lines += [
            f"Best trial {study.best_trial.number}: {metric} {study.best_value:.4f}. Again, as a plain run:",
            "",
            "```",
            best_command(sweep_dir, study),
            "```",
            "",
        ]
    return "\n".join(lines)


def rank(rows: list[dict[str, Any]], metric: str, mode: str = "max") -> list[dict[str, Any]]:
    def key(r: dict[str, Any]) -> float:
        v = r["metrics"].get(metric)
        if v is None or not math.isfinite(v):
            return math.inf
        return -v if mode == "max" else v

    return sorted(rows, key=key)


def swept_params(rows: list[dict[str, Any]]) -> list[str]:
    names = sorted({k for r in rows for k in r["params"]})
    return [n for n in names if len({r["params"].get(n) for r in rows}) > 1]


def _fmt(value: Any) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


def markdown(rows: list[dict[str, Any]], metric: str) -> str:
    params = swept_params(rows) or sorted({k for r in rows for k in r["params"]})
    head = ["rank", "run", *params, metric, "status", "minutes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in enumerate(rows, 1):
        value = r["metrics"].get(metric)
        cells = [
            str(i),
            r["run"],
            *[_fmt(r["params"].get(p, "")) for p in params],
            f"{value:.4f}" if value is not None else "—",
            r["status"],
            str(r["minutes"] or ""),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    params = sorted({k for r in rows for k in r["params"]})
    metrics = sorted({k for r in rows for k in r["metrics"]})
    with atomic_open(path, "w") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "status", "minutes", *params, *metrics])
        for r in rows:
            w.writerow(
                [
                    r["run"],
                    r["status"],
                    r["minutes"],
                    *[r["params"].get(p, "") for p in params],
                    *[r["metrics"].get(m, "") for m in metrics],
                ]
            )


def plot(rows: list[dict[str, Any]], metric: str, path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    params = swept_params(rows)
    ok = [r for r in rows if r["metrics"].get(metric) is not None]
    if not params or not ok:
        return None
    fig, axes = plt.subplots(1, len(params), figsize=(4 * len(params), 3.4), squeeze=False)
    for ax, p in zip(axes[0], params):
        xs = [r["params"].get(p) for r in ok]
        try:
            xs = [float(x) for x in xs]
            log = min(xs) > 0 and max(xs) / min(xs) >= 20
        except (TypeError, ValueError):
            log = False
        ax.scatter(xs, [r["metrics"][metric] for r in ok])
        if log:
            ax.set_xscale("log")
        ax.set(xlabel=p, ylabel=metric)
    fig.tight_layout()
    return save_figure(fig, path)


def check_metric(rows: list[dict[str, Any]], metric: str) -> None:
    """A metric no job recorded (``--metric val/accuracy``) would rank every job level and show dashes: say so."""
    recorded = sorted({k for r in rows for k in r["metrics"]})
    if recorded and metric not in recorded:
        raise UserError(f"--metric {metric}: no job of this sweep recorded it; its jobs recorded {', '.join(recorded)}")


def report(
    sweep_dir: str | Path, metric: str = "val/acc", mode: str = "max", out: str | Path | None = None
) -> tuple[str, list[dict[str, Any]], list[str]]:
    """The sweep's table (markdown), its rows best first, and the files written into ``out`` (default: the sweep's
    folder): ``sweep.md``, ``sweep.csv``, and ``sweep.png`` where there is something to plot."""
    sweep_dir = Path(sweep_dir)
    out = Path(out) if out is not None else sweep_dir
    rows = rank(read_runs(sweep_dir), metric, mode)
    check_metric(rows, metric)
    if why := unwritable_reason(out):
        raise UserError(f"cannot write the report into {out} ({why}); give --out DIR")
    study = optuna_study(sweep_dir)
    if study is not None:
        mark_trial_states(rows, study)
    md = markdown(rows, metric) + ("\n" + optuna_section(sweep_dir, study, metric) if study is not None else "")
    atomic_write_text(out / "sweep.md", md)
    write_csv(rows, out / "sweep.csv")
    written = ["sweep.md", "sweep.csv"] + ["sweep.png"] * (plot(rows, metric, out / "sweep.png") is not None)
    return md, rows, written


@quiet_if_reader_gone
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m emotion.sweep_report", description=__doc__.splitlines()[0])
    p.add_argument("sweep_dir")
    p.add_argument("--metric", default="val/acc")
    p.add_argument("--mode", choices=["max", "min"], default="max")
    p.add_argument("--out", type=Path, metavar="DIR", help="where the report's files go (default: the sweep's folder)")
    args = p.parse_args(argv)
    try:
        md, rows, written = report(args.sweep_dir, args.metric, args.mode, args.out)
    except UserError as exc:
        return report_error(exc)
    print(md)
    failed = sum(r["status"].startswith("failed") for r in rows)
    print(f"{len(rows)} runs, {failed} failed; wrote {', '.join(written)} in {args.out or args.sweep_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
