"""CI (`.ci/run`) never passes with the browser or proxy tests skipped: it sets CHAT_REQUIRE_E2E_TOOLS=1, under
which a missing Chromium or nginx fails those tests; a plain `make test` still skips them, saying why."""

import subprocess

import pytest

from chatsite import stack
from tests.browser.chromium import skip_without_chromium
from tests.e2e.test_nginx import require_nginx
from tests.helpers import tools

MISSING = "/nonexistent/program"


def test_ci_runs_make_test_with_the_tools_required(tmp_path):
    fake_make = tmp_path / "make"  # stands in for `make test`, saying what it was given
    fake_make.write_text('#!/bin/sh\necho "make $* CHAT_REQUIRE_E2E_TOOLS=$CHAT_REQUIRE_E2E_TOOLS"\n')
    fake_make.chmod(0o755)
    out = subprocess.run(
        [str(stack.ROOT / ".ci" / "run")],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
    )
    assert out.returncode == 0 and out.stdout.strip() == "make test CHAT_REQUIRE_E2E_TOOLS=1", out.stderr


def outcome_of(call) -> BaseException | None:
    """What ``call`` raised (a skip or a failure is an exception): caught here, so a skip where a failure is
    expected fails this test instead of skipping it."""
    try:
        call()
    except BaseException as exc:  # noqa: BLE001  (pytest's outcomes are BaseExceptions)
        return exc
    return None


@pytest.mark.parametrize(
    "missing",
    [lambda: skip_without_chromium(MISSING), lambda: require_nginx(None), lambda: require_nginx(MISSING)],
    ids=["chromium", "nginx", "nginx-path"],
)
def test_a_missing_tool_skips_with_its_reason_unless_required(monkeypatch, missing):
    monkeypatch.delenv(tools.REQUIRE_VARIABLE, raising=False)
    skipped = outcome_of(missing)
    assert isinstance(skipped, pytest.skip.Exception) and "make test installs Debian's" in str(skipped)
    monkeypatch.setenv(tools.REQUIRE_VARIABLE, "1")
    failed = outcome_of(missing)
    assert isinstance(failed, pytest.fail.Exception), repr(failed)
    assert "make test installs Debian's" in str(failed) and "CHAT_REQUIRE_E2E_TOOLS=1" in str(failed)


def test_installed_tools_neither_skip_nor_fail(monkeypatch):
    monkeypatch.setenv(tools.REQUIRE_VARIABLE, "1")
    assert outcome_of(lambda: skip_without_chromium("/bin/sh")) is None  # any program that exists
    assert outcome_of(lambda: require_nginx("/bin/sh")) is None
