"""LoRA adapters served by their base model's engine: loaded by name on first use, applied per row, unloaded
when idle or beyond a budget.

An adapter is a few megabytes of low-rank weights beside a base model of hundreds; serving it as its own model
would hold a second copy of the base. Instead the engine's one model is wrapped with peft once an adapter is
first asked for, every adapter is loaded into it under its own name, and each forward pass says, row by row,
which adapter applies (peft's mixed-adapter batch inference: ``adapter_names``, ``"__base__"`` for none). Every
row goes through the base weights together; each adapter's low-rank update is added to its own rows only. So
base replies and any number of adapters' replies share one batch and one forward pass per step.

With no adapter asked for, nothing here runs: peft is not even imported, the model is the plain base. When the
last adapter is unloaded the wrapping is undone too, so the base runs at its own speed again. Only the engine's
thread calls ``AdapterSet``'s methods (the model's modules change under a load); other threads read ``names``
and the counters.
"""

from __future__ import annotations

import itertools
import logging
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

BASE = "__base__"  # peft's name for a row that takes no adapter
# ``Finished.code`` of a request whose adapter could not be loaded; the chat app's ErrorCode of the same value.
ADAPTER_UNAVAILABLE = "adapter_unavailable"


@dataclass(frozen=True)
class Adapter:
    """What a request asks for: an adapter by the name it is served under, and the folder peft saved it to.
    Hashable: it also names the prefix cache's space for its rows (states computed with one adapter's weights
    are another model's, never to be reused by another adapter or the base)."""

    name: str
    path: str


class AdapterError(Exception):
    """An adapter that cannot be loaded; the message is a sentence a person can read (no server path)."""


@dataclass
class _Loaded:
    adapter: Adapter
    key: str  # its name inside the peft model: ours, so no served name can clash with peft's own names
    nbytes: int
    last_used: float = field(default_factory=time.monotonic)


class AdapterSet:
    """The adapters loaded into one engine's model, least recently used first, within a budget: at most
    ``max_adapters`` and ``budget_bytes`` (0: no byte limit) — passed only while every loaded adapter has rows
    running, and restored as soon as one has none. An adapter with no rows for ``idle_s`` seconds is unloaded."""

    def __init__(
        self,
        model,
        *,
        max_adapters: int = 4,
        budget_bytes: int = 0,
        idle_s: float = 600.0,
        on_unload: Callable[[Adapter], None] | None = None,
    ):
        self.base = model
        self.peft = None  # the PeftModel wrapping ``base``, from the first load until the last unload
        self.max_adapters = max(1, max_adapters)
        self.budget_bytes = budget_bytes
        self.idle_s = idle_s
        self.on_unload = on_unload  # the engine's prefix cache forgets the adapter's states
        self._loaded: OrderedDict[Adapter, _Loaded] = OrderedDict()
        self._keys = itertools.count()
        self.names: tuple[str, ...] = ()  # the loaded adapters' names, replaced whole: read by other threads
        self.bytes = 0
        self.loads = 0
        self.unloads = 0

    def __len__(self) -> int:
        return len(self._loaded)

    # -- which adapter each row takes -------------------------------------------------------------------------
    def call(self, adapters: list[Adapter | None], **inputs):
        """Run the model on ``inputs`` whose rows take ``adapters`` (None: the base alone). With nothing loaded
        this is the plain model call."""
        if self.peft is None:
            return self.base(**inputs)
        names = [self._loaded[a].key if a is not None else BASE for a in adapters]
        return self.peft(**inputs, adapter_names=names)

    # -- load, evict, unload ----------------------------------------------------------------------------------
    def admit(self, newcomers: list, running: list) -> tuple[list, list[tuple]]:
        """Load the adapters the newcomers take (on first use), then keep the budget, never unloading one that
        a running row or a newcomer takes. Both are engine requests (``request.Request``, which imports this
        module: not named here). Returns the newcomers that may run, and ``(request, sentence)`` for each whose
        adapter could not be loaded (to fail it: the others run on)."""
        admitted, refused = [], []
        for req in newcomers:
            adapter = req.generation.adapter
            if adapter is not None:
                try:
                    self.ensure(adapter)
                except AdapterError as exc:
                    refused.append((req, str(exc)))
                    continue
            admitted.append(req)
        self.trim(running + admitted)
        return admitted, refused

    def ensure(self, adapter: Adapter) -> None:
        """Load ``adapter`` unless it is loaded (raises ``AdapterError``); either way it is now the most recently
        used. Call ``trim`` afterwards to keep the budget."""
        held = self._loaded.get(adapter)
        if held is None:
            held = self._load(adapter)
        held.last_used = time.monotonic()
        self._loaded.move_to_end(adapter)

    def trim(self, busy: Iterable) -> None:
        """Unload adapters beyond the budget, least recently used first, and those idle for ``idle_s``; never
        one that a request in ``busy`` takes (its rows are running or about to), whose use is refreshed instead.
        With nothing loaded, nothing to do (the engine calls this every round)."""
        if not self._loaded:
            return
        taken = {req.generation.adapter for req in busy}
        now = time.monotonic()
        for adapter, held in list(self._loaded.items()):
            if adapter in taken:
                held.last_used = now
                self._loaded.move_to_end(adapter)  # in use now: the last to leave once idle
            elif now - held.last_used >= self.idle_s or self._over_budget():
                self._unload(adapter)

    def unload_all(self) -> None:
        """Unload every adapter: the model is the plain base again."""
        for adapter in list(self._loaded):
            self._unload(adapter)

    def _over_budget(self) -> bool:
        return len(self._loaded) > self.max_adapters or bool(self.budget_bytes and self.bytes > self.budget_bytes)

    def _load(self, adapter: Adapter) -> _Loaded:
        from peft import PeftConfig, PeftModel

        started = time.monotonic()
        key = f"adapter_{next(self._keys)}"
        try:
            # A local folder only: peft would take any other name for a hub repository and go looking for it.
            if not (Path(adapter.path) / "adapter_config.json").is_file():
                raise FileNotFoundError(f"no adapter_config.json in {adapter.path}")
            config = PeftConfig.from_pretrained(adapter.path)
        except Exception as exc:
            log.warning("adapter %s: no adapter at %s", adapter.name, adapter.path, exc_info=True)
            raise AdapterError(
                f"The model {adapter.name} could not be served: its adapter's files are missing or unreadable "
                f"({type(exc).__name__})."
            ) from exc
        config.inference_mode = True
        try:
            # Two steps, as PeftModel.from_pretrained takes them, so a failure after the injection can be undone.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # peft's own use of transformers' deprecated names
                # On an int8 base (precision.py) peft warns that it could not merge the adapter into the weights:
                # never done here, each row takes its adapter in the forward pass.
                warnings.filterwarnings("ignore", message=".*get_apply_tensor_subclass", category=UserWarning)
                if self.peft is None:
                    self.peft = PeftModel(self.base, config, adapter_name=key)
                else:
                    self.peft.add_adapter(key, config)
                self.peft.load_adapter(adapter.path, adapter_name=key, is_trainable=False)
        except Exception as exc:
            log.warning("adapter %s: could not load %s", adapter.name, adapter.path, exc_info=True)
            self._remove(key)
            raise AdapterError(
                f"The model {adapter.name} could not be served: its adapter does not fit the base model "
                f"({type(exc).__name__})."
            ) from exc
        self.peft.eval()
        nbytes = sum(p.numel() * p.element_size() for n, p in self.peft.named_parameters() if f".{key}." in n)
        held = self._loaded[adapter] = _Loaded(adapter, key, nbytes)
        self.bytes += nbytes
        self.loads += 1
        self.names = tuple(a.name for a in self._loaded)
        log.info("adapter %s loaded (%.2f MB) in %.2f s", adapter.name, nbytes / 2**20, time.monotonic() - started)
        return held

    def _unload(self, adapter: Adapter) -> None:
        held = self._loaded.pop(adapter)
        self._remove(held.key)
        if self.on_unload is not None:
            self.on_unload(adapter)
        self.bytes -= held.nbytes
        self.unloads += 1
        self.names = tuple(a.name for a in self._loaded)  # last: a reader seeing it gone finds it gone
        log.info("adapter %s unloaded", adapter.name)

    def _remove(self, key: str) -> None:
        """Take ``key``'s modules out of the model; the last one out undoes the wrapping, restoring the plain
        base modules (and forgetting peft's config on it, which a later wrapping would otherwise inherit)."""
        if self.peft is None:
            return
        if key in self.peft.peft_config and len(self.peft.peft_config) > 1:
            with warnings.catch_warnings():
                # peft says which adapter it made "active" instead: rows name theirs, none is active here.
                warnings.simplefilter("ignore", UserWarning)
                self.peft.delete_adapter(key)
            return
        if self._loaded:
            return  # a failed load that never got in, beside adapters that stay
        self.peft.unload()
        if hasattr(self.base, "peft_config"):
            del self.base.peft_config
        self.peft = None
