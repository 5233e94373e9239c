"""``inference/`` is the Django-free bottom layer: importing all of it must never pull in Django or ``chat``."""

import json
import subprocess
import sys
from pathlib import Path

import inference

ROOT = Path(__file__).resolve().parents[2]

# Imports every module of inference/ in a fresh interpreter (this test process has Django loaded already) and
# prints the forbidden modules that came with them.
PROBE = """
import importlib, json, pkgutil, sys
import inference

names = sorted(m.name for m in pkgutil.walk_packages(inference.__path__, "inference."))
for name in names:
    importlib.import_module(name)
bad = sorted(m for m in sys.modules if m.startswith(("django", "chat")))  # chatsite too
print(json.dumps({"imported": names, "forbidden": bad}))
"""


def test_inference_never_imports_django_or_chat():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"inference.engine", "inference.serial", "inference.bench"} <= set(result["imported"])
    assert result["forbidden"] == []
    assert Path(inference.__file__).parent == ROOT / "inference"  # the tree under test, not an installed copy
