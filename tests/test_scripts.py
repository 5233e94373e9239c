"""Every page script parses as the ES module the templates load it as.

The browser tests would see a broken module too (the page fixture fails on any script error), but only in the
slow loop; a merge that declared ``t`` twice in one module once left the whole chat page dead while the fast loop
stayed green. Node's own parser answers in milliseconds and runs nothing (``--check``)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "static" / "chat").rglob("*.js"))


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed: the browser tests check instead")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_script_parses_as_a_module(script):
    done = subprocess.run(
        ["node", "--check", "--input-type=module"],
        stdin=script.open("rb"),
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr.decode()


def test_there_are_scripts_to_check():
    assert len(SCRIPTS) > 20
