"""Standalone defaults: inference reads the environment in one place, and only as a fallback."""

from pathlib import Path

from inference.loading import BUNDLED, default_cache_dir, default_model, env_default


def test_env_default_uses_a_set_value_and_falls_back_when_unset_or_empty(monkeypatch):
    monkeypatch.setenv("CHAT_TEST_VALUE", "set")
    assert env_default("CHAT_TEST_VALUE", "fallback") == "set"
    monkeypatch.setenv("CHAT_TEST_VALUE", "")
    assert env_default("CHAT_TEST_VALUE", "fallback") == "fallback"
    monkeypatch.delenv("CHAT_TEST_VALUE")
    assert env_default("CHAT_TEST_VALUE", "fallback") == "fallback"


def test_model_and_cache_defaults_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("CHAT_MODEL", raising=False)
    monkeypatch.delenv("CHAT_MODEL_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_model() == BUNDLED and default_cache_dir() == tmp_path / "var" / "models"
    monkeypatch.setenv("CHAT_MODEL", "/models/other")
    monkeypatch.setenv("CHAT_MODEL_CACHE", str(tmp_path / "cache"))
    assert default_model() == "/models/other" and default_cache_dir() == Path(tmp_path / "cache")


def test_in_passing_thread_runs_the_work_in_a_thread_that_has_ended_and_gives_back_its_result_or_error():
    import threading

    import pytest

    from inference.loading import in_passing_thread

    seen = []

    def work(a, b=0):
        seen.append(threading.current_thread())
        if b < 0:
            raise ValueError("negative")
        return a + b

    assert in_passing_thread(work, 2, b=3) == 5
    with pytest.raises(ValueError, match="negative"):
        in_passing_thread(work, 1, b=-1)
    assert all(t is not threading.current_thread() and not t.is_alive() for t in seen) and len(seen) == 2


def test_a_model_is_loaded_and_converted_in_a_thread_that_ends(monkeypatch):
    """The weights' loading and conversion run parallel torch operators; the thread that runs them keeps an OpenMP
    team for life, which slowed the engine's own thread 1.6× (docs/benchmarks.md). So the caller's thread runs
    none of them: they run in a thread that has ended when ``load_model`` returns."""
    import threading

    from inference import loading

    threads = []

    def loaded(name, **options):
        threads.append(threading.current_thread())
        return (name, options)

    monkeypatch.setattr(loading, "_load_model", loaded)
    assert loading.load_model("m", precision="bfloat16") == (
        "m",
        {"device": "auto", "precision": "bfloat16", "cache_dir": None, "packed": True},
    )
    assert threads[0] is not threading.current_thread() and not threads[0].is_alive()
