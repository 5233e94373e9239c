"""The training worker: the Celery task that trains an adapter (``chat.names.TRAIN_ADAPTER_TASK`` on the
``training`` queue), its heartbeat, and the evaluation ``manage.py evaluate`` runs.

A training worker is its own process (``python -m chatsite.stack training``, or ``make run`` with
CHAT_TRAINING=true; ``CHAT_WORKER_ROLE=training``): it loads no served model at start, and for each run loads
the run's base model, trains, evaluates on the held-out gold answers and saves the adapter
(``inference.training``, ``inference.evaluation``). One run at a time (the solo pool). It heartbeats into its
own live set (``chat/training/liveness.py``); a run whose worker stops beating is failed by the sweep
(``chat/training/sweep.py``), which this worker also runs, at start and every ``CHAT_SWEEP_INTERVAL_S``.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
from pathlib import Path

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.utils.translation import gettext

from chat import names
from chat.errors import ChatError, ErrorCode
from chat.models import TrainingRun
from chat.replies import catalog
from chat.training import liveness, selectors, services
from chat.training.sweep import sweep_runs

log = logging.getLogger(__name__)
State = TrainingRun.State
REASON_CHARS = 600  # a failure's sentence, with the exception's own words, kept readable in the panel


class RunFailed(Exception):
    """A run cannot go on; the message is the reason stored on it, a sentence for the panel."""


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _training_role() -> bool:
    return settings.CHAT_WORKER_ROLE == "training"


# --- the process: heartbeat, sweep, runs left queued


class _Beat:
    """This process's heartbeat thread (started once): alive every ``CHAT_HEARTBEAT_S``, and a sweep of dead
    training workers' runs every ``CHAT_SWEEP_INTERVAL_S``."""

    _lock = threading.Lock()
    _thread: threading.Thread | None = None

    @classmethod
    def ensure(cls) -> None:
        with cls._lock:
            if cls._thread is None:
                cls._thread = threading.Thread(target=cls._loop, name="training-heartbeat", daemon=True)
                cls._thread.start()

    @staticmethod
    def _loop() -> None:
        name, last_sweep = worker_name(), 0.0
        while True:
            try:
                liveness.heartbeat(name)
                if time.monotonic() - last_sweep >= settings.CHAT_SWEEP_INTERVAL_S:
                    last_sweep = time.monotonic()
                    sweep_runs()
            except Exception:  # Redis or the database away: try again next beat
                log.warning("training heartbeat failed", exc_info=True)
            time.sleep(settings.CHAT_HEARTBEAT_S)


@worker_ready.connect
def _at_start(**kwargs):
    """The training worker is up: beat, fail the runs of a worker that died (this one before a restart, say), and
    queue again the runs still queued (a task lost with a broker's data: the claim is conditional, so a run
    queued twice is trained once)."""
    if not _training_role():
        return
    _Beat.ensure()
    try:
        liveness.heartbeat(worker_name())
        sweep_runs()
        for run_id in selectors.runs_queued().values_list("pk", flat=True):
            services.run_dispatch(run_id=run_id)
    except Exception:
        log.warning("training worker start-up chores failed", exc_info=True)


@worker_shutdown.connect
def _at_shutdown(**kwargs):
    if _training_role():
        try:
            liveness.gone(worker_name())
        except Exception:
            pass


# --- the task


@shared_task(name=names.TRAIN_ADAPTER_TASK, ignore_result=True)
def train_adapter(run_id: int) -> None:
    """Train, evaluate and save the adapter of one queued run; it ends ``done``, ``failed`` (with the reason) or
    ``cancelled``. A run no longer queued (cancelled meanwhile, or a task delivered twice) is left alone."""
    name = worker_name()
    if _training_role():  # not in a test that calls the task in its own process
        _Beat.ensure()
    liveness.heartbeat(name)  # alive before the run says it is running here: the sweep never sees it orphaned
    run = services.run_claim(run_id=run_id, worker=name)
    if run is None:
        return
    TrainingJob(run).execute()


def _base(run: TrainingRun):
    served = next((m for m in settings.CHAT_SERVED_MODELS if m.name == run.base_model), None)
    if served is None:
        raise RunFailed(f"The base model {run.base_model} is no longer served here (CHAT_MODELS).")
    return served


def load_base(model_name: str, spec: str):
    """The base model and its folder, loaded where training runs (``CHAT_TRAINING_DEVICE``); a failure is a
    ``RunFailed`` saying which weights could not be loaded."""
    from inference.loading import configure_threads, load_model, resolve_model_path

    configure_threads(settings.CHAT_TORCH_THREADS or None)
    try:
        path = resolve_model_path(spec, settings.CHAT_MODEL_CACHE)
        loaded = load_model(
            spec,
            device=settings.CHAT_TRAINING_DEVICE,
            precision=settings.CHAT_TRAINING_DTYPE,
            cache_dir=settings.CHAT_MODEL_CACHE,
            packed=False,  # trained with gradients, which a packed layer leaves to torch's path: no second copy
        )
    except Exception as exc:
        raise RunFailed(f"The weights of the base model {model_name} could not be loaded ({spec}): {exc}") from exc
    return loaded, path


class TrainingJob:
    """One run on this worker: read its examples, load the base, train, evaluate, save, end it."""

    def __init__(self, run: TrainingRun):
        self.run = run
        self._last_write = self._last_beat = 0.0

    def execute(self) -> None:
        from inference.training import Cancelled

        try:
            metrics, adapter_path, progress = self._train()
        except Cancelled:
            # The reason staff gave (run_cancel stored it) stays; only a cancel with none gets this one.
            reason = "" if TrainingRun.objects.filter(pk=self.run.pk).exclude(reason="").exists() else "Cancelled."
            services.run_finish(run_id=self.run.pk, state=State.CANCELLED, reason=reason)
        except RunFailed as exc:
            services.run_finish(run_id=self.run.pk, state=State.FAILED, reason=str(exc)[:REASON_CHARS])
        except Exception as exc:
            log.exception("training run %s failed", self.run.pk)
            reason = f"Training stopped with an error: {type(exc).__name__}: {exc}"
            services.run_finish(run_id=self.run.pk, state=State.FAILED, reason=reason[:REASON_CHARS])
        else:
            services.run_finish(
                run_id=self.run.pk, state=State.DONE, metrics=metrics, adapter_path=adapter_path, progress=progress
            )
        finally:
            gc.collect()

    # --- progress and cancel, between steps

    def _progress(self, progress) -> None:
        now = time.monotonic()
        if now - self._last_beat >= settings.CHAT_HEARTBEAT_S:  # the beat thread's job too; also without it
            self._last_beat = now
            liveness.heartbeat(worker_name())
        if progress.step >= progress.steps or now - self._last_write >= settings.CHAT_TRAINING_PROGRESS_S:
            self._last_write = now
            services.run_progress(run_id=self.run.pk, progress=_rounded(progress.as_dict()))

    def _cancelled(self) -> bool:
        return selectors.cancel_requested(run_id=self.run.pk)

    # --- the run

    def _train(self) -> tuple[dict, str, dict]:
        from inference.evaluation import HeldOut
        from inference.training import Hyperparameters, library_versions, train_lora, weights_sha256
        from inference.training_data import PreferencePair, SftExample

        run = self.run
        data = selectors.training_data(run_id=run.pk)
        if not data["train"]:
            raise RunFailed(
                "None of the run's gold answers to learn from is left: their conversations were deleted, or the "
                "answers removed, since it was started."
            )
        try:
            hp = Hyperparameters.from_dict(run.hyperparameters or {})
        except (TypeError, ValueError) as exc:
            raise RunFailed(f"The run's hyperparameters cannot be used: {exc}.") from exc
        served = _base(run)
        loaded, path = load_base(run.base_model, served.spec)
        services.run_record(
            run_id=run.pk,
            base_weights_sha256=weights_sha256(path),
            library_versions=library_versions(),
            hyperparameters=hp.as_dict(),
        )
        if self._cancelled():
            from inference.training import Cancelled

            raise Cancelled()
        out_dir = Path(settings.CHAT_ADAPTER_DIR) / run.name
        model, result = train_lora(
            loaded.model,
            loaded.tokenizer,
            examples=[SftExample(e["messages"], e["answer"]) for e in data["train"]],
            pairs=[PreferencePair(p["messages"], p["chosen"], p["rejected"]) for p in data["pairs"]],
            out_dir=out_dir,
            hp=hp,
            on_progress=self._progress,
            should_cancel=self._cancelled,
        )
        services.run_record(run_id=run.pk, hyperparameters={**hp.as_dict(), "target_modules": result.target_modules})
        heldout = [HeldOut(e["messages"], e["answer"], e["message"]) for e in data["heldout"]]
        conversations = {e["message"]: e["conversation"] for e in data["heldout"]}
        evaluation = evaluate_run(model, loaded.tokenizer, heldout, base=run.base_model, conversations=conversations)
        training = result.as_dict()
        training.pop("adapter_path")
        training["examples"] = {"train": len(data["train"]), "heldout": len(heldout), "pairs": len(data["pairs"])}
        progress = {
            "step": result.steps,
            "steps": result.steps,
            "loss": training["dpo_loss"] if result.dpo_ran else training["sft_loss"],
            "examples": training["sft_examples"] + training["pairs"],
            "seconds_left": 0,
        }
        return {"training": training, "evaluation": evaluation}, result.adapter_path, _rounded(progress)


def _rounded(progress: dict) -> dict:
    out = dict(progress)
    for key in ("loss", "seconds_left"):
        if isinstance(out.get(key), float):
            out[key] = round(out[key], 4 if key == "loss" else 1)
    return out


def _default_arm(base: str) -> tuple[str, str | None, str | None]:
    """The current default model as an arm of this base: (its name, the adapter folder to load or None for the
    base itself, why it cannot be compared)."""
    default = catalog.site_default()
    if default == base:
        return default, None, None
    model = catalog.get(default)
    if model is not None and model.adapter and model.base == base and model.adapter_path:
        return default, model.adapter_path, None
    return default, None, f"the default model {default} is not {base} or one of its adapters"


def evaluate_run(model, tokenizer, heldout, *, base: str, conversations: dict[int, int]) -> dict:
    """The held-out table of a trained run: the candidate (the adapter just trained, peft's "default"), the base
    (adapters disabled) and, when it is an adapter of the same base, the current default model; whether the
    candidate is ahead of the base, and whether it is worse than the current default. Rows keep the reply's and
    conversation's ids and each arm's figures and answer, never the prompt or the gold answer (the run page
    reads those from the conversation while it exists)."""
    from inference.evaluation import ahead, behind, evaluate_arms

    default, default_path, not_compared = _default_arm(base)
    arms = {"candidate": "default", "base": None}
    if default_path:
        model.load_adapter(default_path, adapter_name="current")
        model.set_adapter("default")
        arms["default"] = "current"
    table = evaluate_arms(model, tokenizer, heldout, arms, max_new_tokens=settings.CHAT_TRAINING_EVAL_TOKENS)
    means = table["means"]
    reference = means["base"] if default == base else means.get("default")
    for row in table["rows"]:
        row.pop("prompt", None)
        row.pop("gold", None)
        row["message"] = row.pop("ref")
        row["conversation"] = conversations.get(row["message"])
    return {
        **table,
        "candidate_ahead": bool(table["rows"]) and ahead(means["candidate"], means["base"]),
        "default": {"name": default, "means": reference, "unscored": not_compared},
        "worse_than_default": reference is not None and behind(means["candidate"], reference),
    }


# --- manage.py evaluate


def evaluate_models(*, candidate: str, against: str) -> dict:
    """``manage.py evaluate CANDIDATE --against BASE``: the candidate adapter (``<base>+<run>`` of a finished
    run) against its base or another adapter of the same base, on the candidate run's held-out gold answers,
    both arms of one loaded base. Rows carry ids, figures and answers; no prompt or gold text."""
    from inference.evaluation import HeldOut, compare, with_adapters

    cand = catalog.get(candidate)
    if cand is None or not cand.adapter:
        raise ChatError(
            ErrorCode.MODEL_NOT_FOUND,
            gettext("%(candidate)r is not an adapter of a finished training run.") % {"candidate": candidate},
        )
    other = catalog.get(against)
    if other is None or (other.name != cand.base and not (other.adapter and other.base == cand.base)):
        raise ChatError(
            ErrorCode.MODEL_NOT_FOUND,
            gettext("%(against)r is not %(base)s or another adapter of it: a candidate is compared on one loaded base.")
            % {"against": against, "base": cand.base},
        )
    run = TrainingRun.objects.get(name=cand.adapter, state=State.DONE)
    data = selectors.training_data(run_id=run.pk, pairs=False)["heldout"]
    if not data:
        raise ChatError(
            ErrorCode.NO_EXAMPLES,
            gettext("No held-out gold answer of %(candidate)s is left to evaluate on.") % {"candidate": candidate},
        )
    loaded, _ = load_base(cand.base, _base(run).spec)
    adapters = {"candidate": cand.adapter_path}
    if other.adapter:
        adapters["against"] = other.adapter_path
    model = with_adapters(loaded.model, adapters)
    table = compare(
        model,
        loaded.tokenizer,
        [HeldOut(e["messages"], e["answer"], e["message"]) for e in data],
        candidate="candidate",
        against="against" if other.adapter else None,
        max_new_tokens=settings.CHAT_TRAINING_EVAL_TOKENS,
    )
    conversations = {e["message"]: e["conversation"] for e in data}
    for row in table["rows"]:
        row.pop("prompt", None)
        row.pop("gold", None)
        row["message"] = row.pop("ref")
        row["conversation"] = conversations.get(row["message"])
    return {"candidate": candidate, "against": against, "base_model": cand.base, **table}
