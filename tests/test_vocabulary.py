"""One vocabulary: every error code is in ``ErrorCode`` and documented, none is spelled as a bare string in
``chat/``; the engine, the model and the frames agree on finish reasons and statuses; every browser frame type
has a schema, a handler and a row in docs/protocol.md."""

import ast
import typing
from pathlib import Path

from chat import client_frames, frames
from chat.errors import ErrorCode
from chat.models import Message
from chat.realtime.consumers import ChatConsumer
from inference.request import FinishReason

ROOT = Path(__file__).resolve().parent.parent
DOCS = {name: (ROOT / "docs" / name).read_text() for name in ("protocol.md", "api.md")}


def test_every_error_code_is_documented_in_the_protocol_or_the_api():
    undocumented = [code.value for code in ErrorCode if not any(f"`{code.value}`" in doc for doc in DOCS.values())]
    assert undocumented == []


def _string_constants(tree: ast.AST):
    """String literals that are not docstrings or parts of f-strings."""
    skip = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            skip.add(id(body[0].value))
        if isinstance(node, ast.JoinedStr):
            skip.update(id(part) for part in ast.walk(node))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node


def test_no_error_code_is_a_bare_string_outside_the_enum():
    codes = {code.value for code in ErrorCode}
    bare = []
    for path in sorted((ROOT / "chat").rglob("*.py")):
        if "migrations" in path.parts or path == ROOT / "chat" / "errors.py":
            continue
        for node in _string_constants(ast.parse(path.read_text())):
            if node.value in codes:
                bare.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert bare == []


def test_the_engine_the_model_and_the_frames_agree_on_finish_reasons_and_statuses():
    engine = {reason.value for reason in FinishReason}
    assert engine == set(Message.FinishReason.values)
    assert set(typing.get_args(frames.FinishReason)) == engine | {""}  # "" while a reply has not ended
    assert set(typing.get_args(frames.Status)) == set(Message.Status.values)
    done_statuses = set(typing.get_args(typing.get_type_hints(frames.DoneFrame)["status"]))
    assert done_statuses == {Message.STATUS_FOR_REASON[reason] for reason in Message.FinishReason}


def test_every_browser_frame_type_has_a_schema_a_handler_and_a_protocol_row():
    assert set(client_frames.CLIENT_FRAMES) == set(ChatConsumer.HANDLERS)
    for type_, schema in client_frames.CLIENT_FRAMES.items():
        assert typing.get_type_hints(schema)["type"] == typing.Literal[type_]
        assert f'{{"type": "{type_}"' in DOCS["protocol.md"], type_
