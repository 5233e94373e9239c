"""Programs some tests need beyond Python packages (Debian's Chromium, nginx). Without one, its tests are
skipped with the reason printed, so `make test` runs anywhere; with CHAT_REQUIRE_E2E_TOOLS=1 (`.ci/run` sets it)
a missing one fails the run instead, so CI can never pass without the browser and proxy tests."""

import os

import pytest

REQUIRE_VARIABLE = "CHAT_REQUIRE_E2E_TOOLS"


def tools_required() -> bool:
    return os.environ.get(REQUIRE_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")


def missing_tool(reason: str, *, module: bool = False) -> None:
    """Skip the calling test (``module``: the calling test module) for ``reason``, or fail it where required."""
    if tools_required():
        pytest.fail(f"{reason}; {REQUIRE_VARIABLE}=1 (CI) makes that a failure, not a skip", pytrace=False)
    pytest.skip(reason, allow_module_level=module)
