"""Which numeric precision trains fastest here: bf16 where the hardware computes it natively, float32 elsewhere.

On a CPU without AVX512-BF16 or AMX, oneDNN emulates bf16: an EmotionCNN training step measured ~11x slower than
float32 on a 2-core AVX2 EPYC, while native bf16 is ~1.8x faster than float32 (``experiments/throughput/``). The
configs that want bf16 say ``trainer.precision: ${bf16_where_native:${trainer.accelerator}}`` (registered by
:mod:`emotion.cli`); an explicit ``trainer.precision=bf16-mixed`` is kept as given and warned about where emulated.
"""

from __future__ import annotations


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slower."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def bf16_where_native(accelerator: str) -> str:
    """Lightning's ``trainer.precision`` for ``accelerator``: ``bf16-mixed`` on a GPU with bf16 or a CPU with native
    bf16, ``32-true`` elsewhere. Resolved when the trainer is built (it imports torch), not when a config is checked."""
    import torch

    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if on_cpu:
        return "bf16-mixed" if cpu_has_native_bf16() else "32-true"
    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported(including_emulation=False):
        return "32-true"  # a GPU older than Ampere (V100, T4)
    return "bf16-mixed"
