"""The variables the launcher (``chatsite/stack.py``) reads itself, and their checks: like it, free of Django,
since it reads them before any settings exist."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from chat import served
from chat.served import ServedModel
from inference import precision

ROOT = Path(__file__).resolve().parent.parent
# What CUDA_VISIBLE_DEVICES takes for one device: its index, or its UUID as `nvidia-smi -L` lists it (a GPU's,
# GPU-…, or a MIG instance's, MIG-…; a unique prefix is enough).
GPU_ENTRY = re.compile(r"\d+|GPU-[0-9A-Fa-f-]+|MIG-[0-9A-Za-z/-]+")


class LauncherSettingsError(ValueError):
    """A launcher variable whose value cannot work; the message says which and what to write."""


def worker_gpus(env: Mapping[str, str]) -> tuple[str, ...]:
    """CHAT_WORKER_GPUS as one CUDA_VISIBLE_DEVICES value per worker, checked: an entry CUDA does not know
    (``cuda:1``) would leave its worker seeing no GPU, and with ``CHAT_DEVICE=auto`` running on the CPU unsaid."""
    gpus = tuple(g.strip() for g in (env.get("CHAT_WORKER_GPUS") or "").split(",") if g.strip())
    bad = [g for g in gpus if not GPU_ENTRY.fullmatch(g)]
    if bad:
        raise LauncherSettingsError(
            f"CHAT_WORKER_GPUS={env['CHAT_WORKER_GPUS']!r}: {', '.join(map(repr, bad))} "
            f"{'is not a GPU' if len(bad) == 1 else 'are not GPUs'}. Give each "
            "worker's GPU as an index (0,1) or a UUID as `nvidia-smi -L` lists it (GPU-…, MIG-…), separated by "
            "commas; each worker then sees its GPU as cuda:0."
        )
    device = (env.get("CHAT_DEVICE") or "").strip()
    if gpus and re.fullmatch(r"cuda:\d+", device) and device != "cuda:0":
        raise LauncherSettingsError(
            f"CHAT_DEVICE={device} cannot work beside CHAT_WORKER_GPUS: each worker sees only its own GPU, as "
            "cuda:0. Set CHAT_DEVICE to auto, cuda or cuda:0."
        )
    return gpus


# What 0 means for each delta-pacing setting: negative is a typo, not one of these.
_PACING = {
    "CHAT_STREAM_FLUSH_MS": (40, "no wait between a reply's deltas"),
    "CHAT_STREAM_DELTAS_PER_S": (None, "no bound"),
}


def stream_pacing(env: Mapping[str, str]) -> tuple[int, int | None]:
    """CHAT_STREAM_FLUSH_MS and CHAT_STREAM_DELTAS_PER_S (unset: its default, None for the bound: the worker's
    device decides), each a whole number not below 0; read here for both the launcher and settings, so a typo is
    one sentence before anything starts rather than a traceback from every process."""
    values = []
    for name, (default, zero) in _PACING.items():
        raw = (env.get(name) or "").strip()
        if not raw:
            values.append(default)
            continue
        try:
            value = int(raw)
        except ValueError:
            raise LauncherSettingsError(f"{name}={raw!r} is not a whole number.") from None
        if value < 0:
            raise LauncherSettingsError(f"{name}={value} cannot be negative: 0 means {zero}.")
        values.append(value)
    return values[0], values[1]


def model_precision(env: Mapping[str, str], models: tuple[ServedModel, ...]) -> str:
    """CHAT_MODEL_PRECISION, or its older name CHAT_DTYPE while it is unset (default ``auto``), checked with each
    model's ``precision`` option against what ``load_model`` takes (inference/precision.py). A value it cannot
    load raises ``precision.PrecisionError``, a sentence naming where the value came from: both the launcher and
    the settings call this, so ``make run`` and every process a service manager starts refuse it at start."""
    variable = "CHAT_MODEL_PRECISION" if env.get("CHAT_MODEL_PRECISION") else "CHAT_DTYPE"
    site = precision.check(env.get(variable) or precision.AUTO, variable)
    for m in models:
        if m.precision is not None:
            precision.check(m.precision, f"CHAT_MODEL_OPTIONS: {m.name}.precision")
    return site


def _flag(value: str | None) -> bool:
    """A yes/no variable as Django's settings read it (django-environ's true words)."""
    return (value or "").strip().lower() in ("1", "true", "yes", "on", "y")


@dataclass(frozen=True)
class LauncherSettings:
    """The variables the launcher reads itself, read here and nowhere else in the launcher.

    The launcher starts processes before Django reads its settings and imports no Django, so it cannot use
    ``chatsite.settings``. They are documented with the others in the settings table, docs/settings.md; the children get
    the same environment (``TRUSTED_PROXY`` and ``WORKERS`` mean the same to Django's settings).
    """

    port: int
    bind_address: str  # the address Daphne listens on
    trusted_proxy: bool  # Daphne takes the client address and scheme from X-Forwarded-For / -Proto
    workers: int  # worker processes `make run` starts per model (a model's `workers` option overrides it)
    worker_gpus: tuple[str, ...]  # CUDA_VISIBLE_DEVICES of worker i: entry i (wrapping round); empty: inherited
    redis_url: str  # empty: start the embedded redis-server
    redis_dir: Path  # the embedded redis-server's append-only file lives here
    worker_concurrency: int
    log_level: str
    json_logs: bool
    ws_ping_interval_s: str
    ws_ping_timeout_s: str
    models: tuple[ServedModel, ...] = ()  # CHAT_MODELS (chat/served.py)
    default_model: str = ""  # CHAT_DEFAULT_MODEL
    worker_model: str = ""  # CHAT_WORKER_MODEL: the model `python -m chatsite.stack worker` holds
    training: bool = False  # CHAT_TRAINING: `make run` starts a training worker too

    def worker_plan(self) -> list[str]:
        """The model of each worker `make run` starts, in order: every model's workers, model by model."""
        return [m.name for m in self.models for _ in range(m.host_workers(self.workers))]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "LauncherSettings":
        """Read them from ``env`` (the environment the children will get), with their defaults; a value that
        cannot work raises ``LauncherSettingsError``, a sentence naming the variable."""
        try:
            models = served.parse(
                env.get("CHAT_MODELS"),
                env.get("CHAT_MODEL") or "bundled:smollm2-135m-instruct",
                env.get("CHAT_MODEL_OPTIONS"),
            )
            default_model = served.default_name(models, env.get("CHAT_DEFAULT_MODEL"))
            worker_model = served.default_name(
                models, env.get("CHAT_WORKER_MODEL") or default_model, "CHAT_WORKER_MODEL"
            )
            model_precision(env, models)
            stream_pacing(env)
        except (served.ServedModelsError, precision.PrecisionError) as exc:
            raise LauncherSettingsError(str(exc)) from None
        gpus = worker_gpus(env)
        for m in models:  # a model's own device, like CHAT_DEVICE: each worker sees only its GPU, as cuda:0
            if gpus and m.device and re.fullmatch(r"cuda:\d+", m.device) and m.device != "cuda:0":
                raise LauncherSettingsError(
                    f"CHAT_MODEL_OPTIONS: {m.name}.device={m.device} cannot work beside CHAT_WORKER_GPUS: each "
                    "worker sees only its own GPU, as cuda:0. Set it to cuda or cuda:0, or leave CHAT_WORKER_GPUS "
                    "unset and give each model its GPU with its device option."
                )
        return cls(
            models=models,
            default_model=default_model,
            worker_model=worker_model,
            port=int(env.get("PORT") or 8000),
            bind_address=env.get("BIND_ADDRESS") or "127.0.0.1",
            trusted_proxy=_flag(env.get("TRUSTED_PROXY")),
            workers=max(1, int(env.get("WORKERS") or 1)),
            worker_gpus=gpus,
            redis_url=env.get("REDIS_URL") or "",
            redis_dir=Path(env.get("CHAT_REDIS_DIR") or ROOT / "var" / "redis"),
            worker_concurrency=int(env.get("WORKER_CONCURRENCY") or 32),
            log_level=env.get("LOG_LEVEL") or "INFO",
            json_logs=(env.get("LOG_FORMAT") or "text") == "json",
            ws_ping_interval_s=env.get("WS_PING_INTERVAL_S") or "20",
            ws_ping_timeout_s=env.get("WS_PING_TIMEOUT_S") or "30",
            training=_flag(env.get("CHAT_TRAINING")),
        )
