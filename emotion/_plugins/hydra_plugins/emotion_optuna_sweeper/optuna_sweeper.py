"""The ``hydra/sweeper=optuna`` plugin: a Hydra multirun driven by a current Optuna (see :mod:`emotion.training.study`).

Hydra imports every plugin module at start-up, so this one imports neither Optuna nor the training stack.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> None:
        from emotion.training.study import run_study

        run_study(self.launcher, self.config, arguments, **self.settings)
