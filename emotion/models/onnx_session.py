"""Open an exported model in ONNX Runtime with its spec: shared by the predictor (serving, no torch) and by
:class:`~emotion.models.onnx_net.OnnxNet` (evaluation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emotion.errors import ModelFileError
from emotion.models.input_norm import input_norm_of


def open_onnx(path: str | Path, threads: int | None = None, key: str = "emotion_spec") -> tuple[Any, dict[str, Any]]:
    """``(session, spec)`` of an ``.onnx`` export whose spec is the JSON metadata ``key`` (an emotion model's, or
    ``face_check_spec`` for the face check); ModelFileError for a damaged file or one without that metadata."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelFileError(f"{path} is not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
    meta = session.get_modelmeta().custom_metadata_map
    if key not in meta:
        how = "python -m emotion.export" if key == "emotion_spec" else "the script that trained it"
        raise ModelFileError(f"{path} has no {key!r} metadata: export it with {how}")
    spec = json.loads(meta[key])
    if key == "emotion_spec":  # an export written before the option carries no input_norm
        spec["input_norm"] = input_norm_of(spec)
    return session, spec
