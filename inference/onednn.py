"""Linear layers that multiply through oneDNN with their weights packed once, on the CPU.

Why: on the CPU torch sends a float ``nn.Linear`` to MKL's ``sgemm``, and a decode step is almost all such
products with a handful of rows (one per running reply). Measured on this project's 2-core machines
(docs/benchmarks.md, "Linear layers through oneDNN"): MKL reads the weights at 10 GB/s on an AMD EPYC whose memory
gives 50, where oneDNN's kernels — the library torch itself ships for its fused CPU paths — with the weight
reordered once into their blocked layout do the same products 2–2.6× faster at 8 and 16 rows, at the same
precision (float32 in, float32 out; only the order of the additions differs, ~1e-6 relative).

``pack_linears(model)`` turns each plain float32/bfloat16 ``nn.Linear`` of a CPU model into a ``PackedLinear``
(same module, same ``weight`` parameter, one more field: the packed copy), so transformers' modelling code, peft's
LoRA layers (which wrap a linear and call it) and everything that reads ``weight`` work unchanged. The cost is
memory: the packed copy is a second copy of each linear weight (``packed_bytes``), which is why it is a setting
(``CHAT_CPU_PACKED_LINEARS``).

Where oneDNN must not be used, a ``PackedLinear`` is a plain ``nn.Linear``: with gradients on (oneDNN's op has no
backward: a LoRA trained over a packed base would get wrong gradients silently), for an input of another dtype
or device. It packs again if its weight was changed in place or replaced (``_identity``).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

PACKABLE_DTYPES = (torch.float32, torch.bfloat16)
# oneDNN's reorder takes a batch-size hint for the layout; measured with hints 4–64 the products at 1, 8, 16 and
# 64 rows took the same time within noise, so one hint in the engine's usual range.
_BATCH_HINT = 16


def available() -> bool:
    """Whether this torch has oneDNN's linear operators on the CPU."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _packable(dtype) -> bool:
    """oneDNN packs bfloat16 only where the CPU has its instructions (AVX-512 BW/VL/DQ or AVX-NE-CONVERT); on
    another CPU a bfloat16 model stays on torch's path rather than failing to load."""
    if dtype == torch.bfloat16:
        return torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return dtype in PACKABLE_DTYPES


class PackedLinear(torch.nn.Linear):
    """An ``nn.Linear`` holding its weight twice: as the parameter everyone reads, and packed for oneDNN (made on
    first use, and again whenever the weight is another tensor or was changed in place since)."""

    _packed: torch.Tensor | None = None
    _key: tuple | None = None

    def pack(self) -> None:
        weight = self.weight.detach()
        self._packed = torch.ops.mkldnn._reorder_linear_weight(weight, _BATCH_HINT)
        self._key = _identity(self.weight)

    def packed_for(self, x: torch.Tensor) -> torch.Tensor | None:
        """The packed weight to multiply ``x`` by through oneDNN (packed again first if the weight changed), or
        None where torch's own path must run: gradients on, ``x`` of another dtype or device."""
        weight = self.weight
        if torch.is_grad_enabled() or x.dtype != weight.dtype or x.device.type != "cpu" or weight.device != x.device:
            return None
        if self._key != _identity(weight):
            self.pack()
        return self._packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = self.packed_for(x)
        if packed is None:
            return F.linear(x, self.weight, self.bias)
        return torch.ops.mkldnn._linear_pointwise(x, packed, self.bias, "none", [], "")

    def __getstate__(self):
        """Copies (``copy.deepcopy``, pickling) leave the packed tensor out — oneDNN's opaque tensors cannot be
        copied that way — and pack again on first use."""
        state = dict(super().__getstate__())
        state.pop("_packed", None)
        state.pop("_key", None)
        return state


def _identity(weight: torch.Tensor) -> tuple:
    """What changes when a weight's values may have: its storage, its in-place version, its shape. Not a change
    made through ``weight.data`` (a fresh version counter), as peft's ``merge_adapter`` makes: this project
    never merges an adapter into a served base (``adapters.py`` adds LoRA products at each call); whoever does
    must ``unpack_linears`` first."""
    return weight.data_ptr(), weight._version, tuple(weight.shape)


def pack_linears(model) -> int:
    """Pack every plain float32/bfloat16 ``nn.Linear`` of ``model`` (on the CPU) for oneDNN; returns how many.
    Quantised weights (torchao's int8 tensors), other devices and other dtypes are left as they are."""
    if not available():
        log.info("oneDNN's linear operators are not in this torch: linear layers stay on the default path")
        return 0
    packed = 0
    for module in model.modules():
        if type(module) is not torch.nn.Linear:  # PackedLinear already, peft's wrappers, anything else
            continue
        weight = module.weight
        if type(weight.data) is not torch.Tensor or weight.device.type != "cpu" or not _packable(weight.dtype):
            continue
        if module.bias is not None and module.bias.dtype != weight.dtype:
            continue
        module.__class__ = PackedLinear  # the same object: parents, peft and hooks keep pointing at it
        module.pack()
        packed += 1
    return packed


def unpack_linears(model) -> None:
    """Make every ``PackedLinear`` of ``model`` a plain ``nn.Linear`` again (its packed copy dropped): the
    profile compares both on the same model (``stepprof``)."""
    for module in model.modules():
        if type(module) is PackedLinear:
            module.__dict__.pop("_packed", None)
            module.__dict__.pop("_key", None)
            module.__class__ = torch.nn.Linear


def packed_bytes(model) -> int:
    """Bytes the packed copies hold (beside the parameters ``precision.weight_bytes`` counts)."""
    return sum(
        m.weight.numel() * m.weight.element_size()
        for m in model.modules()
        if isinstance(m, PackedLinear) and m._packed is not None
    )
