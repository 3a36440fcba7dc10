"""Using a trained model: the one inference API (:class:`~emotion.serve.predictor.Predictor`), face detection,
the predict CLI, the webcam demo, export and int8 quantization. May import ``emotion.models`` and ``emotion.data``
(never ``emotion.training``); importing the predictor loads none of Lightning, torchmetrics, Hydra or matplotlib."""
