"""What an engine counts for monitoring (``BatchEngine.stats``): its decode steps, how many rows each carried, and
which adapters those rows took. Written by the engine's thread only, read from others: plain ints, replaced or
bumped in place, so a reader sees a figure at most a step old."""

from __future__ import annotations

from inference.adapters import Adapter
from inference.kv import KVCounts


class StepCounts:
    def __init__(self, max_batch_size: int, kv: KVCounts | None = None):
        self.steps = 0  # decode steps run
        self.rows = 0  # rows over all decode steps: rows / steps is the mean batch size
        # decode steps run at each batch size (index: rows): how full the batch was, step by step, which a gauge
        # read once a heartbeat cannot tell
        self.at = [0] * (max_batch_size + 1)
        # decode steps whose rows took different adapters (the base model counts as one): the proof that base
        # and adapter replies share forward passes
        self.mixed = 0
        self.adapter_rows: dict[str, int] = {}  # rows over all decode steps, per adapter (the base's: the rest)
        self.chunks = 0  # chunks of a long prompt computed (prefill.py), in a forward of their own or fused
        self.fused = 0  # of them, those computed in a decode step's forward (fused.py)
        self.direct = 0  # decode steps without a chunk through fused.py's forward rather than transformers'
        self.peak_rows = 0  # the most rows a decode step carried
        self.preemptions = 0  # rows given back for a person who had none running (preemption.py)
        # the running batch's key/value cache and mask: reallocations and bytes copied (kv.py), which the
        # engine's batch counts into
        self.kv = kv if kv is not None else KVCounts()

    def count(self, adapters: list[Adapter | None], with_adapters: bool) -> None:
        """One decode step over rows taking ``adapters``; ``with_adapters``: any adapter is loaded (otherwise
        every row is the base's, and looking at them would only cost time)."""
        self.steps += 1
        self.rows += len(adapters)
        self.at[len(adapters)] += 1
        self.peak_rows = max(self.peak_rows, len(adapters))
        if with_adapters:
            self.mixed += len(set(adapters)) > 1
            for adapter in adapters:
                if adapter is not None:
                    self.adapter_rows[adapter.name] = self.adapter_rows.get(adapter.name, 0) + 1

    def figures(self) -> dict:
        return {
            "decode_steps": self.steps,
            "decode_rows": self.rows,
            "decode_steps_at_batch_size": list(self.at),
            "mixed_adapter_steps": self.mixed,
            "decode_rows_by_adapter": dict(self.adapter_rows),
            "prefill_chunks": self.chunks,
            "fused_chunks": self.fused,
            "direct_decode_steps": self.direct,
            "preemptions": self.preemptions,
            **self.kv.figures(),
        }
