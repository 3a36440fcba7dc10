"""Sharpness-aware minimisation (Foret et al. 2021, "Sharpness-Aware Minimization for Efficiently Improving
Generalization") around any optimizer. PyTorch ships none; this follows the paper's first-order update:
w_adv = w + rho·g/‖g‖, then the base optimizer steps from w with the gradient taken at w_adv. Each step costs two
forward/backward passes of the same batch."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from emotion.ranges import check


class SAM(torch.optim.Optimizer):
    """``base``: a factory taking ``params`` (a Hydra partial such as ``model.optimizer``); its param groups are this
    optimizer's, so learning-rate schedulers and checkpoints see the base optimizer's state. ``step`` needs the
    closure (Lightning always passes one): it is run twice, at the weights and at the perturbed weights."""

    def __init__(self, params: Iterable[Any], base: Callable[..., torch.optim.Optimizer], rho: float = 0.05) -> None:
        check("model.sam_rho", rho)
        super().__init__(params, {"rho": rho})
        self.base = base(params=self.param_groups)
        self.param_groups = self.base.param_groups
        self.defaults.update(self.base.defaults)
        self.rho = rho

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        if closure is None:
            raise ValueError("SAM.step needs the closure that recomputes the loss and its gradients")
        with torch.enable_grad():
            loss = closure()
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not params:
            return loss
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        scale = self.rho / (norm + 1e-12)
        moves = [p.grad * scale for p in params]
        torch._foreach_add_(params, moves)  # uphill, to w + rho·g/‖g‖
        with torch.enable_grad():
            closure()  # the gradient there
        torch._foreach_sub_(params, moves)  # back to w
        self.base.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base.load_state_dict(state_dict)
        self.param_groups = self.base.param_groups
