"""Running trainings: callbacks, the run report and figures, checkpoint I/O, calibration, Optuna studies and sweep
reports. May import ``emotion.models`` and ``emotion.data``; nothing below imports it."""
