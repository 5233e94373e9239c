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
