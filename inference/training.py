"""Train a LoRA adapter of a loaded model on reviewers' gold answers (SFT) and, when there are enough, on
preference pairs (DPO), with the field's libraries: peft for the adapter, trl's ``SFTTrainer`` and
``DPOTrainer`` for the training.

Django-free like the rest of ``inference/``: the caller (``chat/worker/training.py``) reads the examples from
the database, passes them here as plain data, and is told of progress through a callback; it may stop the run
between two steps (``should_cancel``), which raises ``Cancelled``.

An SFT example is a prompt (the conversation up to the reply, OpenAI-style messages) and the gold answer in
place of the reply: trl renders the prompt through the model's own chat template with the generation prompt
and the answer after it, and the loss counts the answer's tokens only (``completion_only_loss``). A
preference pair is a prompt, the chosen answer and the rejected one; DPO's reference is the adapter as SFT
left it (trl copies it into a frozen "ref" adapter of the same model: no second copy of the base), and the
copy is dropped before saving.

Everything random is seeded (``Hyperparameters.seed``: the adapter's initial weights, the order of the
examples), so the same examples, base weights, hyperparameters and library versions give the same adapter
on the same machine.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from inference.prompt import has_chat_template
from inference.training_data import PreferencePair, SftExample, fit, pair_rows, sft_rows

log = logging.getLogger(__name__)

# The libraries whose versions a run records (what reproducing an adapter needs besides its data).
LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "tokenizers", "safetensors")
# Weight files hashed for ``weights_sha256``: what from_pretrained reads.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
# Kinds of layer a LoRA adapter may target: the linear projections inside the model's blocks (attention and
# MLP), never the embeddings or the output head, which an adapter that is served beside the base must share.
_NEVER_TARGETED = ("lm_head", "embed_tokens", "wte", "wpe", "embed_out", "output")


class Cancelled(Exception):
    """``should_cancel`` said yes between two steps: the run stops and no adapter is saved."""


@dataclass(frozen=True)
class Hyperparameters:
    """How a run trains. The defaults teach the bundled 135M model a short fact in a couple of minutes of CPU:
    a small rank, a learning rate high for LoRA, short sequences. ``target_modules`` empty: every linear
    projection of the model's blocks (``lora_targets``)."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ()
    learning_rate: float = 2e-3
    epochs: int = 4
    batch_size: int = 4
    max_length: int = 192
    seed: int = 0
    dpo_min_pairs: int = 16  # DPO runs when the training set holds at least this many preference pairs
    dpo_beta: float = 0.1
    dpo_learning_rate: float = 5e-5  # 5e-4 collapsed the codeword adapter into "The cod cod cod…" in six steps
    dpo_epochs: int = 1

    @classmethod
    def from_dict(cls, values: dict) -> "Hyperparameters":
        """From a run's stored or requested values: unknown keys refused, lists of targets read back as tuples."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown hyperparameters: {', '.join(unknown)}")
        values = dict(values)
        if "target_modules" in values:
            values["target_modules"] = tuple(values["target_modules"] or ())
        return cls(**values)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["target_modules"] = list(self.target_modules)
        return out


@dataclass(frozen=True)
class Progress:
    """Where a run is: ``step`` of ``steps`` (SFT's then DPO's, counted together), the last logged loss, the
    examples it trains on (SFT examples plus pairs used) and an estimate of the seconds left."""

    step: int
    steps: int
    loss: float | None
    examples: int
    seconds_left: float | None
    phase: str = "sft"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """What a finished training did: where the adapter is, its targets, the steps and losses of each phase, the
    time it took and the peak memory it reached."""

    adapter_path: str
    target_modules: list[str]
    steps: int
    sft_examples: int
    sft_loss: float | None
    pairs: int
    dpo_loss: float | None
    dpo_ran: bool
    seconds: float
    peak_rss_bytes: int
    peak_gpu_bytes: int | None = None
    losses: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def library_versions() -> dict[str, str]:
    """The installed version of every library a run depends on (``LIBRARIES``), plus Python's."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def weights_sha256(path: str | Path) -> str:
    """One SHA-256 over a model folder's weight files (names and bytes, in name order): two folders with the
    same weights give the same hash, whatever else (a README, a config's formatting) differs. Empty when
    ``path`` is no folder (a hub id): nothing here says which bytes it meant."""
    folder = Path(path)
    if not folder.is_dir():
        return ""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    for file in files:
        digest.update(str(file.relative_to(folder)).encode() + b"\0")
        with open(file, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest() if files else ""


def lora_targets(model) -> list[str]:
    """The names (last part) of the linear layers inside the model's blocks: attention's and the MLP's
    projections (q_proj, k_proj, …, down_proj for Llama; c_attn, c_proj, c_fc for GPT-2). Read from the model,
    so any architecture transformers loads gets its own."""
    import torch

    names = set()
    for full, module in model.named_modules():
        leaf = full.rsplit(".", 1)[-1]
        if leaf in _NEVER_TARGETED or not full:
            continue
        is_linear = isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"  # GPT-2's linears
        if is_linear and any(part.isdigit() for part in full.split(".")):  # inside a numbered block
            names.add(leaf)
    return sorted(names)


def _steps(n: int, batch_size: int, epochs: int) -> int:
    return math.ceil(n / batch_size) * epochs if n else 0


def _peak_rss_bytes() -> int:
    """This process's peak resident memory so far (Linux reports kibibytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _Watch:
    """The trainers' callback: reports progress after every step (both phases counted as one run), asks
    ``should_cancel`` between steps, and keeps the losses."""

    def __init__(self, *, steps: int, examples: int, on_progress, should_cancel):
        self.steps, self.examples = steps, examples
        self.on_progress, self.should_cancel = on_progress, should_cancel
        self.offset, self.phase = 0, "sft"
        self.started = time.monotonic()
        self.loss: float | None = None
        self.losses: list[float] = []
        self.cancelled = False

    def callback(self):
        from transformers import TrainerCallback

        watch = self

        class Callback(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    watch.loss = float(logs["loss"])
                    watch.losses.append(watch.loss)

            def on_step_end(self, args, state, control, **kwargs):
                step = watch.offset + state.global_step
                if watch.on_progress is not None:
                    watch.on_progress(watch.progress(step))
                if watch.should_cancel is not None and watch.should_cancel():
                    watch.cancelled = True
                    control.should_training_stop = True
                return control

        return Callback()

    def progress(self, step: int) -> Progress:
        elapsed = time.monotonic() - self.started
        left = elapsed / step * (self.steps - step) if step else None
        return Progress(step, self.steps, self.loss, self.examples, left, self.phase)


def _training_args(hp: Hyperparameters, *, output_dir: str, device: str, learning_rate: float, epochs: int):
    """The arguments both trainers share: seeded, no checkpoints, no reports, a log line per step, full
    precision on the CPU (trl turns bf16 and gradient checkpointing on by default: slower on a CPU, and a
    small model needs neither)."""
    on_cpu = not device.startswith("cuda")
    return dict(
        output_dir=output_dir,
        per_device_train_batch_size=hp.batch_size,
        gradient_accumulation_steps=1,
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_length=hp.max_length,
        logging_steps=1,
        logging_strategy="steps",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=hp.seed,
        data_seed=hp.seed,
        bf16=False if on_cpu else None,
        fp16=False,
        gradient_checkpointing=False,
        use_cpu=on_cpu,
        dataloader_num_workers=0,
    )


def train_lora(
    model,
    tokenizer,
    *,
    examples: Sequence[SftExample],
    pairs: Sequence[PreferencePair] = (),
    out_dir: str | Path,
    hp: Hyperparameters | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
):
    """Train a LoRA adapter of ``model`` (a loaded transformers model, left in place: the adapter wraps it)
    on ``examples`` (SFT) and then, when ``pairs`` holds at least ``hp.dpo_min_pairs``, on the pairs (DPO),
    save it to ``out_dir`` (peft's ``save_pretrained``: adapter_config.json and the adapter's weights) and
    return ``(peft_model, TrainResult)``: the wrapped model, adapter active, for the evaluation.

    ``on_progress`` is called after every step; ``should_cancel`` is asked after every step and, when it says
    yes, the run stops there and ``Cancelled`` is raised (nothing is saved)."""
    import torch
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar
    from peft import LoraConfig, get_peft_model
    from transformers import PrinterCallback, set_seed
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    hp = hp or Hyperparameters()
    disable_progress_bar()  # datasets' bars are text redrawn in place: noise in a worker's log
    chat = has_chat_template(tokenizer)
    examples = [
        SftExample(fitted, e.answer)
        for e in examples
        if (fitted := fit(tokenizer, list(e.messages), e.answer, hp.max_length, chat)) is not None
    ]
    pairs = [
        PreferencePair(fitted, p.chosen, p.rejected)
        for p in pairs
        if (fitted := fit(tokenizer, list(p.messages), max(p.chosen, p.rejected, key=len), hp.max_length, chat))
        is not None
    ]
    if not examples:
        raise ValueError(
            f"no training example fits max_length ({hp.max_length} tokens): a run needs at least one gold answer "
            "whose question and answer fit"
        )
    device = str(next(model.parameters()).device)
    use_dpo = len(pairs) >= hp.dpo_min_pairs
    sft_steps = _steps(len(examples), hp.batch_size, hp.epochs)
    dpo_steps = _steps(len(pairs), hp.batch_size, hp.dpo_epochs) if use_dpo else 0
    watch = _Watch(
        steps=sft_steps + dpo_steps,
        examples=len(examples) + (len(pairs) if use_dpo else 0),
        on_progress=on_progress,
        should_cancel=should_cancel,
    )
    if tokenizer.pad_token is None:  # the collators pad; a model without a pad token pads with its end token
        tokenizer.pad_token = tokenizer.eos_token
    targets = list(hp.target_modules) or lora_targets(model)
    set_seed(hp.seed)  # before the adapter exists: its initial weights are random
    lora = LoraConfig(
        r=hp.rank, lora_alpha=hp.alpha, lora_dropout=hp.dropout, target_modules=targets, task_type="CAUSAL_LM"
    )
    peft_model = get_peft_model(model, lora)
    started = time.monotonic()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    sft_loss = dpo_loss = None
    with tempfile.TemporaryDirectory(prefix="chat-train-") as scratch:
        sft = SFTTrainer(
            model=peft_model,
            args=SFTConfig(
                **_training_args(
                    hp, output_dir=scratch, device=device, learning_rate=hp.learning_rate, epochs=hp.epochs
                ),
                completion_only_loss=True,
                packing=False,
                dataset_num_proc=None,
            ),
            train_dataset=Dataset.from_list(sft_rows(examples, chat)),
            processing_class=tokenizer,
            callbacks=[watch.callback()],
        )
        sft.remove_callback(PrinterCallback)  # its print() of every step's figures: the progress callback has them
        sft.train()
        sft_loss = watch.loss
        if watch.cancelled:
            raise Cancelled()
        if use_dpo:
            watch.offset, watch.phase = sft_steps, "dpo"
            dpo = DPOTrainer(
                model=peft_model,
                args=DPOConfig(
                    **_training_args(
                        hp,
                        output_dir=scratch,
                        device=device,
                        learning_rate=hp.dpo_learning_rate,
                        epochs=hp.dpo_epochs,
                    ),
                    beta=hp.dpo_beta,
                ),
                train_dataset=Dataset.from_list(pair_rows(pairs, chat)),
                processing_class=tokenizer,
                callbacks=[watch.callback()],
            )
            dpo.remove_callback(PrinterCallback)
            dpo.train()
            dpo_loss = watch.loss
            if watch.cancelled:
                raise Cancelled()
            if "ref" in peft_model.peft_config:  # DPO's frozen reference copy: not part of the adapter
                peft_model.set_adapter("default")
                peft_model.delete_adapter("ref")
    peft_model.eval()
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    peft_model.save_pretrained(tmp)
    if out.exists():  # a run name is unique; a folder left by an older database's run of the same name goes
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)  # atomic: a reader sees the whole adapter or none
    result = TrainResult(
        adapter_path=str(out),
        target_modules=targets,
        steps=watch.steps,
        sft_examples=len(examples),
        sft_loss=sft_loss,
        pairs=len(pairs) if use_dpo else 0,
        dpo_loss=dpo_loss,
        dpo_ran=use_dpo,
        seconds=round(time.monotonic() - started, 1),
        peak_rss_bytes=_peak_rss_bytes(),
        peak_gpu_bytes=torch.cuda.max_memory_allocated() if device.startswith("cuda") else None,
        losses=watch.losses,
    )
    log.info("adapter saved to %s: %s steps in %.1f s", out, result.steps, result.seconds)
    return peft_model, result
