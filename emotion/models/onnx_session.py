"""Open an exported model in ONNX Runtime with its spec: shared by the predictor (serving, no torch) and by
:class:`~emotion.models.onnx_net.OnnxNet` (evaluation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emotion.errors import ModelFileError


def open_onnx(path: str | Path, threads: int | None = None) -> tuple[Any, dict[str, Any]]:
    """``(session, spec)`` of an ``.onnx`` export; ModelFileError for a damaged file or one without our metadata."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelFileError(f"{path} is not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
    meta = session.get_modelmeta().custom_metadata_map
    if "emotion_spec" not in meta:
        raise ModelFileError(f"{path} has no 'emotion_spec' metadata: export it with python -m emotion.export")
    return session, json.loads(meta["emotion_spec"])
