"""The output layer's matrix multiply, pre-packed for the CPU kernel.

The output layer is the largest single matrix (49k x 576 for SmolLM2) and stays frozen. On the
CPU, MKL re-packs it on every call, so a 32-row multiply costs ~38 ms; oneDNN with the matrix
packed once takes ~17 ms. Sampling does this once per decoded token, training once per chunk.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _can_pack(weight: Tensor) -> bool:
    return (
        weight.device.type == "cpu"
        and weight.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    )


class OutputHead:
    def __init__(self, weight: Tensor) -> None:
        self.weight = weight.detach()
        self.packed = (
            torch.ops.mkldnn._reorder_linear_weight(self.weight, None)
            if _can_pack(self.weight)
            else None
        )

    def logits(self, hidden: Tensor) -> Tensor:
        """hidden [..., d] -> logits [..., vocab], without autograd through the weight."""
        if self.packed is not None and hidden.dtype == torch.float32:
            return torch.ops.mkldnn._linear_pointwise(hidden, self.packed, None, "none", [], "")
        return hidden @ self.weight.to(hidden.dtype).T
