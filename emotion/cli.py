"""What every Hydra entry point needs before its first heavy import (torch, Lightning): the config folder, quiet
libraries, one clean error path, and the checks of config values that need no library. ``--help`` and a bad value
answer in about a second because nothing here imports torch."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf

from emotion.atomic import atomic_write_text
from emotion.errors import UserError, fail, file_system_message, keep_going_when_reader_gone, reader_gone
from emotion.training.precision import bf16_where_native

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override

log = logging.getLogger(__name__)

# Absolute, so the entry points find it however they are invoked (python -m, imported, on Modal).
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
# trainer.precision: ${bf16_where_native:${trainer.accelerator}} in the configs that train in bf16 where it is fast
OmegaConf.register_new_resolver("bf16_where_native", bf16_where_native, replace=True)


#: Library messages that are noise for a user of this project (each is handled or irrelevant here): Lightning's
#: product tips, the note that our own model-summary callback replaces its default one, its own deprecation of
#: LeafSpec, and the non-empty checkpoint folder on resume (a fresh start there is refused before Lightning sees it).
NOISE_MESSAGES = ("💡 Tip:", "Trainer already configured with model summary callbacks")
NOISE_WARNINGS = (r".*isinstance\(treespec, LeafSpec\)", r"Checkpoint directory .* exists and is not empty")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(NOISE_MESSAGES)


def quiet_libraries() -> None:
    """Drop the library messages in :data:`NOISE_MESSAGES` / :data:`NOISE_WARNINGS`; every other message stays."""
    import warnings

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
    for pattern in NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    if "lightning" in sys.modules:
        route_lightning_logs()


def to_log_files(level: int, message: str) -> None:
    """A record for the run's log files (Hydra's ``<job>.log``) only, not for the console."""
    record = log.makeRecord(log.name, level, __file__, 0, "%s", (message,), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def route_lightning_logs() -> None:
    """Lightning prints its messages with a console handler of its own (``INFO: …``) and also passes them to the
    root logger, whose Hydra handlers print and file them: under Hydra, leave them to Hydra's handlers alone, so each
    line is printed once and still reaches the run's log file. Call after importing lightning."""
    if not logging.getLogger().handlers:
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
            logger.removeHandler(handler)
        logger.propagate = True


def is_multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


@contextlib.contextmanager
def fail_cleanly(out_dir: str | Path | None = None) -> Iterator[None]:
    """Turn configuration and data errors into one readable line and exit status 2 (:mod:`emotion.errors`), not a
    traceback.

    In a multirun (sweep) a failed job — bad values, divergence, any error — is logged and recorded as
    ``failed.json`` in its directory instead, so the sweep goes on; the job returns NaN to the sweeper.
    """
    quiet_libraries()
    keep_going_when_reader_gone()
    logging.raiseExceptions = False  # a log line to an output whose reader is gone: dropped, not a traceback
    try:
        if out_dir is not None:
            from emotion.run_lock import hold

            hold(out_dir)  # held already by a single run (preflight); a sweep's job takes its own here
        yield
    except BrokenPipeError:  # the reader of the output stopped early (`| head`)
        raise SystemExit(reader_gone()) from None
    except Exception as exc:
        if isinstance(exc, InstantiationException):
            message = f"invalid configuration: {exc.__cause__ or exc}"
        elif isinstance(exc, UserError):
            message = str(exc)
        elif file_system_message(exc):  # files written before it are whole: each is written atomically
            message = f"{file_system_message(exc)}; files written before it are complete"
        elif is_multirun():
            message = f"{type(exc).__name__}: {exc}"
        else:
            raise
        if is_multirun():  # the sweep goes on: the job's error is logged (console and its log file) and recorded
            log.error("%s", message)
            if out_dir is not None:
                atomic_write_text(Path(out_dir) / "failed.json", json.dumps({"status": "failed", "error": message}))
            return
        to_log_files(logging.ERROR, message)  # the console gets it once, from fail()
        fail(message)


#: Trainer settings that must be whole numbers (or null): checked before anything is built or read.
TRAINER_INTS = ("max_epochs", "min_epochs", "max_steps", "check_val_every_n_epoch", "log_every_n_steps")


def check_trainer(trainer_cfg: DictConfig) -> None:
    for key in TRAINER_INTS:
        value = trainer_cfg.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise UserError(f"trainer.{key} must be a whole number, got {value!r}; e.g. trainer.{key}=30")
    max_epochs = trainer_cfg.get("max_epochs")
    if max_epochs is not None and (max_epochs < -1 or max_epochs == 0):
        raise UserError(
            f"trainer.max_epochs must be >= 1 (or -1: no limit), got {max_epochs}; to score a model without "
            "training it, use python -m emotion.evaluate"
        )


def check_numbers(cfg: DictConfig) -> None:
    """Every setting of :data:`emotion.ranges.RANGES` that the config has, before torch is imported."""
    from emotion.ranges import RANGES, check

    for key in RANGES:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            try:
                check(key, value)
            except ValueError as exc:
                raise UserError(str(exc)) from None


#: Settings that name a model file or a shipped model (resolved without torch).
MODEL_FILE_SETTINGS = ("model.init_from", "model.distill.teacher")
#: Of those, the ones that may also list several (a teacher of averaged probabilities).
MODEL_LIST_SETTINGS = ("model.distill.teacher",)


def check_model_files(cfg: DictConfig) -> None:
    from emotion.models.pretrained import model_file

    for key in MODEL_FILE_SETTINGS:
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, ListConfig) and key not in MODEL_LIST_SETTINGS:
            raise UserError(f"{key}: one model, not a list ({list(value)}); give one file or shipped model's name")
        names = list(value) if isinstance(value, ListConfig) else [value] if value else []
        for name in names:
            try:
                model_file(str(name))
            except FileNotFoundError as exc:
                raise UserError(f"{key}: {exc}") from None


#: Data settings that must be whole numbers >= 1.
DATA_INTS = ("batch_size", "eval_batch_size", "image_size")


def check_data_numbers(cfg: DictConfig) -> None:
    data = cfg.get("data")
    if not isinstance(data, DictConfig):
        return
    for key in DATA_INTS:
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UserError(f"data.{key} must be a whole number >= 1, got {value!r}; e.g. data.{key}=64")


def check_data(cfg: DictConfig) -> None:
    """A missing data set that nothing can download fails now (generated data sets are made later)."""
    data = cfg.get("data")
    if not isinstance(data, DictConfig) or data.get("synthesize") is not None or data.get("root") is None:
        return
    from emotion.data.locate import check_root

    check_root(data.root, bool(data.get("download", False)))


def check_config(cfg: DictConfig, data: bool = True) -> None:
    """Every check that needs no heavy library: wrong types and ranges and (with ``data``) a missing data set fail
    before torch is imported."""
    if "trainer" in cfg:
        check_trainer(cfg.trainer)
    check_numbers(cfg)
    check_data_numbers(cfg)
    check_model_files(cfg)
    if data:
        check_data(cfg)


def preflight(argv: list[str], config_name: str) -> None:
    """Before Hydra sees the command line: values Hydra cannot read, in one line; then the run folder's lock
    (:mod:`emotion.run_lock`), before Hydra writes its own files into the folder."""
    if not (Path(CONF_DIR) / f"{config_name}.yaml").is_file():
        fail(
            f"python -m emotion.{config_name if config_name != 'eval' else 'evaluate'} needs the project's configs "
            f"({CONF_DIR}/{config_name}.yaml), which an installed wheel does not carry (it serves models: "
            "emotion-predict, emotion-cam, emotion-songs); run it from a clone of the project (make install)"
        )
    check_overrides(argv)
    try:
        if {"-m", "--multirun"} & set(argv) and not INFO_FLAGS & set(argv):
            compose_checked(first_job(argv), config_name)  # a sweep's settings, before any job starts
        run_dir = single_run_dir(argv, config_name)
    except UserError as exc:
        fail(exc)
    except Exception:  # a config Hydra will refuse itself a moment later, with its own message
        return
    if run_dir is None:
        return
    from emotion.atomic import writable_folder
    from emotion.run_lock import hold

    try:
        writable_folder(run_dir.parent)  # Hydra makes the run folder in there before any code of ours runs
        if any(arg.startswith("run_name=") for arg in argv):  # a default name is time-stamped: locked in the task
            hold(run_dir)
    except UserError as exc:
        fail(exc)
    except OSError as exc:
        fail(file_system_message(exc) or exc)


def single_run_dir(argv: list[str], config_name: str) -> Path | None:
    """The folder ``python -m emotion.<app> ARGV`` will write into (with a default run_name: one like it, since the
    time stamp moves on); None for a sweep or an info flag (``-m``, ``--help``, ``--cfg``)."""
    if any(arg.startswith("-") for arg in argv):
        return None
    return Path(str(compose_checked(list(argv), config_name).hydra.run.dir))


#: Hydra's flags that print instead of running.
INFO_FLAGS = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--resolve", "--package", "-p"}


def first_job(argv: list[str]) -> list[str]:
    """A sweep's overrides with each swept value replaced by its first: what its first job composes (a swept range
    that only a sampler draws from, ``interval(…)``, is left to Hydra)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    job = []
    for arg in argv:
        if arg.startswith("-"):
            continue
        (override,) = parser.parse_overrides([arg])
        if not override.is_sweep_override():
            job.append(arg)
            continue
        with contextlib.suppress(Exception):
            job.append(f"{override.get_key_element()}={next(iter(override.sweep_string_iterator()))}")
    return job


def compose_checked(overrides: list[str], config_name: str, hydra_node: bool = True) -> DictConfig:
    """The config Hydra will compose; a setting it does not have (``data.bach_size=8``) is a UserError in one line
    with the nearest name — Hydra would answer with six lines, exit status 1 and the advice to add the key with
    ``+``, which a typo would then silently become. Hydra's other composition errors (``+`` of a setting there is,
    ``~`` of one there is not) become one line too."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            return compose(config_name, overrides=overrides, return_hydra_config=hydra_node)
    except ConfigCompositionException as exc:
        cause = exc.__cause__
        if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and getattr(cause, "full_key", None):
            raise UserError(unknown_setting(str(cause.full_key), overrides, config_name)) from None
        raise UserError(" ".join(line.strip() for line in str(exc).splitlines() if line.strip())) from None  # +/~
    finally:
        GlobalHydra.instance().clear()


def unknown_setting(key: str, overrides: list[str], config_name: str) -> str:
    import difflib

    from hydra import compose, initialize_config_dir

    parent, _, leaf = key.rpartition(".")
    others = [o for o in overrides if not f"{o.split('=', 1)[0].lstrip('+~')}.".startswith(f"{key}.")]
    try:
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            cfg = compose(config_name, overrides=others)
        node = OmegaConf.select(cfg, parent) if parent else cfg
    except Exception:  # another problem in the same command: Hydra names it once this one is mended
        node = None
    keys = [str(k) for k in node if not str(k).startswith("_")] if isinstance(node, DictConfig) else []
    close = difflib.get_close_matches(leaf, keys, n=1, cutoff=0.75)
    where = f"{parent}'s" if parent else "the top-level"
    return (
        f"{key}: no such setting"
        + (f"; did you mean {parent + '.' if parent else ''}{close[0]}?" if close else "")
        + (f" ({where} settings: {', '.join(keys)})" if keys else "")
        + f"; +{key}=… would add it as a new setting (read only where the code or Lightning takes it)"
    )


def check_overrides(argv: list[str]) -> None:
    """Hydra's override grammar reads unquoted values of a limited alphabet; anything else (``ü``, ``é``, spaces
    kept by the shell) would be a bare lexer error. Say which override and how to quote it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            (override,) = parser.parse_overrides([arg])
        except OverrideParseException as exc:
            key, value = arg.split("=", 1)
            odd = sorted({c for c in value if not (c.isascii() and (c.isalnum() or c in "/._-:+*@,[]{}()~%$"))})
            why = f"characters Hydra reads only inside quotes ({' '.join(odd)})" if odd else str(exc).splitlines()[0]
            fail(f"cannot read the override {arg}: {why}; quote the value, e.g. '{key}=\"{value}\"'")
        check_group_choice(override)


def check_group_choice(override: Override) -> None:
    """A config group's option that has no file (``experiment=recpie``): Hydra would answer with a traceback's
    worth of lines and exit status 1; say it in one line with the options there are. Hydra's own groups
    (``hydra/…``, plugins) are left to Hydra."""
    from hydra.core.override_parser.types import Glob

    group = override.key_or_group
    folder = Path(CONF_DIR) / group
    if override.is_delete() or group.startswith("hydra") or not folder.is_dir() or isinstance(override.value(), Glob):
        return
    if override.is_sweep_override():
        options = list(override.sweep_string_iterator())
    else:
        options = override.value() if isinstance(override.value(), list) else [override.value()]
    for option in options:
        if option is not None and not (folder / f"{option}.yaml").is_file():
            choices = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
            fail(f"{group}={option}: there is no conf/{group}/{option}.yaml; choose from {choices}")


def model_path(cfg: DictConfig) -> str:
    """``pretrained=NAME|true`` or ``ckpt_path=PATH`` → the model file (one resolver: :func:`pretrained.model_file`)."""
    if cfg.get("pretrained") not in (None, False) and cfg.get("ckpt_path") is not None:
        raise UserError(
            f"two models given: pretrained={cfg.pretrained} and ckpt_path={cfg.ckpt_path}; give one of them"
        )
    name = cfg.get("pretrained") or cfg.get("ckpt_path")
    if name in (None, "", "???"):
        raise UserError("give a model: ckpt_path=PATH (.ckpt, .safetensors or .onnx) or pretrained=true|NAME")
    return resolve_model(str(name))


def resolve_model(name_or_path: str) -> str:
    """A model file's path or a shipped model's name → the file; a UserError that lists the names otherwise."""
    from emotion.models.pretrained import model_file

    try:
        return str(model_file(name_or_path))
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
