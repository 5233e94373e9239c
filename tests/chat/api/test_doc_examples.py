"""The curl and openai examples of docs/api.md, run exactly as written (only the port differs) on the live stack."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chat.models import Conversation

pytestmark = pytest.mark.e2e
API_DOC = Path(__file__).resolve().parents[3] / "docs" / "api.md"


def _block(language: str, needle: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", API_DOC.read_text(), flags=re.S)
    return next(b for b in blocks if needle in b)


def _run(args, api_key, port, **kw):
    env = {**os.environ, "CHAT_API_KEY": api_key}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=240, check=True, **kw)


def test_the_curl_example_streams_server_sent_events(api, live_stack):
    user, new, _ = api()
    script = _block("sh", "/v1/chat/completions").replace("127.0.0.1:8000", f"127.0.0.1:{live_stack.port}")
    out = _run(["bash", "-c", script], new.plaintext, live_stack.port).stdout
    events = [line.removeprefix("data: ") for line in out.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text.strip() and chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert Conversation.objects.get(owner=user).source == "api"


def test_the_openai_example_prints_the_reply(api, live_stack):
    user, new, _ = api()
    script = _block("python", "from openai import OpenAI").replace("127.0.0.1:8000", f"127.0.0.1:{live_stack.port}")
    out = _run([sys.executable, "-c", script], new.plaintext, live_stack.port).stdout
    stored = Conversation.objects.get(owner=user).messages.get(role="assistant")
    assert out.strip() and out == stored.content + "\n"
