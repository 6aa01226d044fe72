"""Matrix multiplies by frozen weights, pre-packed for the CPU kernel where that kernel is there.

On the CPU, MKL re-packs the weight matrix on every call, which dominates the small multiplies
of decoding: a 32-row multiply by the output layer (49k x 576 for SmolLM2) costs ~38 ms, by a
576 -> 3072 projection ~2.9 ms. oneDNN with the matrix packed once takes ~17 ms and ~1.3 ms.
Packing pays off for weights that stay fixed across many calls: the output layer for the whole
run, the decoder's (LoRA-merged) projections for one sampling call.

Packing happens only for fp32 weights on a CPU with oneDNN; on CUDA (where the base weights
load in bf16) and elsewhere this is a plain F.linear.

Under autocast the same holds for the cast: autocast casts a weight that needs no gradient
afresh on every call, so decoding a token re-read and re-wrote every weight of the model. A
frozen weight keeps its copy in the autocast dtype instead (2 more bytes per parameter).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _can_pack(weight: Tensor) -> bool:
    return (
        weight.device.type == "cpu"
        and weight.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    )


class FrozenLinear:
    """y = x @ weight.T without autograd through the weight."""

    def __init__(self, weight: Tensor, autocast_dtype: torch.dtype | None = None) -> None:
        self.weight = weight.detach()
        self.low = (
            self.weight.to(autocast_dtype)
            if autocast_dtype is not None and autocast_dtype != weight.dtype
            else None
        )
        self.packed = (
            torch.ops.mkldnn._reorder_linear_weight(self.weight, None)
            if _can_pack(self.weight)
            else None
        )

    def active_weight(self, device_type: str) -> Tensor:
        """The weight a multiply uses now: the kept copy under autocast to its dtype, else
        the weight itself."""
        if (
            self.low is not None
            and torch.is_autocast_enabled(device_type)
            and torch.get_autocast_dtype(device_type) == self.low.dtype
        ):
            return self.low
        return self.weight

    def __call__(self, x: Tensor) -> Tensor:
        """x [..., in] -> [..., out], differentiable with respect to x. The packed kernel has
        no backward: where x needs a gradient, or for other dtypes, this is a plain F.linear
        (by the kept copy under autocast to its dtype)."""
        weight = self.active_weight(x.device.type)
        if weight is self.low:
            return F.linear(x.to(weight.dtype), weight)
        if (
            self.packed is not None
            and x.dtype == torch.float32
            and not (x.requires_grad and torch.is_grad_enabled())
            and not torch.is_autocast_enabled("cpu")
        ):
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")
        if torch.is_autocast_enabled(x.device.type):
            # autocast casts both sides itself (a weight already in its dtype, as on CUDA
            # where the base loads in bf16, not at all); casting here would copy the weight
            return F.linear(x, weight)
        return F.linear(x, weight.to(x.dtype))
