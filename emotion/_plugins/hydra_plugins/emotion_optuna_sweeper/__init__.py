"""Hydra finds plugins only in the ``hydra_plugins`` namespace package: :mod:`emotion.train` puts
``emotion/_plugins`` on ``sys.path`` so this folder joins it. A thin shim; the study itself is
:mod:`emotion.training.study`."""
