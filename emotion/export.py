"""Export a trained model: ``python -m emotion.export ckpt_path=… format=onnx|onnx-int8|pt2|safetensors``.

``ckpt_path=A,B,…`` (several model files) exports their ensemble (:mod:`emotion.models.ensemble`): one model that
averages their probabilities. ``format=onnx-int8`` also needs ``calib=DIR`` (a FER2013 root: its training faces
calibrate the quantization, see :mod:`emotion.serve.quantize`); ``out=PATH`` sets the file name.

The exported graph takes raw pixels (float32 in [0, 1], ``N×1×48×48``, dynamic batch) and outputs softmax
probabilities; class names and preprocessing travel in the ONNX metadata (``emotion_spec``). A parity check
against PyTorch runs as part of every export.
"""

from __future__ import annotations

import sys

USAGE = (
    "usage: python -m emotion.export ckpt_path=PATH[,PATH…]|pretrained=true|NAME "
    "[format=onnx|onnx-int8|pt2|safetensors] [out=PATH] [calib=FER2013_ROOT (onnx-int8)]"
)


def main(argv: list[str] | None = None) -> int:
    """Accepts Hydra-style ``key=value`` arguments, like the other entry points."""
    from emotion.errors import UserError

    argv = argv if argv is not None else sys.argv[1:]
    if {"-h", "--help"} & set(argv):
        print(USAGE + "\n\n" + __doc__.strip())
        return 0
    args = dict(a.split("=", 1) for a in argv if "=" in a)
    unknown = set(args) - {"ckpt_path", "pretrained", "format", "out", "calib"}
    if ("ckpt_path" in args) == ("pretrained" in args) or unknown:
        print(
            USAGE + (f"\nunknown arguments: {', '.join(sorted(unknown))}" if unknown else ""),
            file=sys.stderr,
        )
        return 2
    if "pretrained" in args:
        from emotion.models.pretrained import model_file

        try:
            args["ckpt_path"] = str(model_file(args["pretrained"]))
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if "out" not in args:
            print(
                "error: with pretrained=…, give out=PATH (the shipped weights folder is not written to)",
                file=sys.stderr,
            )
            return 2
    from emotion.serve.exporters import export  # torch only after the arguments are checked

    try:
        path, diff = export(args["ckpt_path"], args.get("format", "onnx"), args.get("out"), args.get("calib"))
    except (UserError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.get("format") == "onnx-int8":
        print(f"wrote {path} (top-1 class differs from the float model on {diff:.1%} of held-out training faces)")
    else:
        print(f"wrote {path} (parity with PyTorch: max abs diff {diff:.2e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
