"""The precision a served model runs at: which dtype its weights and activations have, and whether its linear
layers' weights are quantised to int8.

``auto``
    bfloat16 on a GPU that has it (float16 on one that does not), float32 on the CPU: whether bfloat16 pays on a
    CPU depends on the CPU (native with AVX512-BF16 or AMX, emulated and slower without), so a deployment that
    has measured its own asks for it (docs/benchmarks.md, "Precision and its quality cost").
``float32``, ``bfloat16``, ``float16``
    every weight and activation in that dtype, wherever the model runs.
``int8``
    int8 weight-only quantisation (torchao's ``Int8WeightOnlyConfig``): every ``nn.Linear``'s weight is kept as
    int8 with one scale per output row and de-quantised inside the matmul; activations, embeddings and norms
    stay in ``auto``'s dtype. A quarter of float32's bytes to read per decode step for those layers.

The choice is applied by ``load_model`` before anything else sees the model, so the engine, the prefix cache
and adapters are built over the final weights. Nothing here imports torch or torchao until a model is loaded:
the settings check a value with ``check`` in every process, the web server's too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

AUTO = "auto"
INT8 = "int8"
PRECISIONS = (AUTO, "float32", "bfloat16", "float16", INT8)


class PrecisionError(ValueError):
    """A precision that is not one of ``PRECISIONS``; the message is a sentence for the operator."""


def check(value: str, variable: str = "CHAT_MODEL_PRECISION") -> str:
    """``value`` when it names a precision (``""`` counts as ``auto``), else ``PrecisionError`` naming
    ``variable`` — the setting or option it came from — and the values it takes."""
    value = (value or AUTO).strip().lower()
    if value not in PRECISIONS:
        raise PrecisionError(f"{variable} is {value!r}: use one of {', '.join(PRECISIONS)}.")
    return value


@dataclass(frozen=True)
class Precision:
    """A checked precision on a device: its name, the dtype of the model's tensors (the int8 model's activations
    and unquantised weights) and whether the linear weights are int8."""

    name: str
    dtype: object  # torch.dtype
    int8_weights: bool = False

    def __str__(self) -> str:
        dtype = str(self.dtype).replace("torch.", "")
        return f"int8 weights, {dtype} activations" if self.int8_weights else dtype


def resolve(requested: str, device: str) -> Precision:
    """The precision ``requested`` (a ``PRECISIONS`` value) means on ``device``."""
    import torch

    name = check(requested)
    if name in (AUTO, INT8):
        if str(device).startswith("cuda"):
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.float32
        return Precision(name, dtype, int8_weights=name == INT8)
    return Precision(name, getattr(torch, name))


def apply(model, precision: Precision):
    """Quantise ``model``'s linear weights in place when ``precision`` says int8 (the model must already be on
    its device and in ``precision.dtype``); returns the model. A no-op for the float precisions."""
    if not precision.int8_weights:
        return model
    quantize_, config = _torchao_int8()
    quantize_(model, config)
    return model


def _torchao_int8():
    """torchao's ``quantize_`` and its int8 weight-only config."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    return quantize_, Int8WeightOnlyConfig()


class _KnownNoise(logging.Filter):
    """Drops two warnings logged whenever torchao is imported — by transformers too, at every model load once it
    is installed, whatever the precision — that say nothing to whoever reads a worker's log: torchao failing to
    load its CUDA-only kernel libraries on a CPU-only torch (on a CUDA torch the warning stays: worth seeing
    there), and torch noting an enum torchao registers the old way."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.name == "torchao" and message.startswith("Failed to load "):
            import torch

            return torch.version.cuda is not None
        return "is an Enum subclass and is now natively supported" not in message


for _name in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_name).addFilter(_KnownNoise())


def int8_linears(model) -> tuple[int, int]:
    """(linear layers whose weight is int8-quantised, all linear layers) of ``model``: what ``apply`` did."""
    import torch

    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    quantised = sum(1 for m in linears if _is_int8(m.weight))
    return quantised, len(linears)


def _is_int8(weight) -> bool:
    """A torchao int8 tensor subclass: its stored data (``qdata``) is int8, whatever dtype it reports."""
    data = getattr(weight, "qdata", None)
    return data is not None and str(data.dtype) == "torch.int8"


def weight_bytes(model) -> int:
    """Bytes of ``model``'s parameters as stored: an int8 weight counts its int8 data and its scales, not the
    dtype it reports (a torchao tensor says float32 though it holds a quarter of that). Tied weights once."""
    total, seen = 0, set()
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if _is_int8(p):
            total += sum(getattr(p, name).nbytes for name in p.tensor_data_names if getattr(p, name, None) is not None)
        else:
            total += p.numel() * p.element_size()
    return total
