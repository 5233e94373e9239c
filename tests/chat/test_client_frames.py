"""What a browser sends (chat/client_frames.py): every field of every frame has a refusal of its own."""

import typing

import pytest

from chat import client_frames
from chat.errors import ChatError, ErrorCode


@pytest.mark.parametrize("kind", sorted(client_frames.CLIENT_FRAMES))
def test_every_field_of_every_frame_is_refused_with_its_own_code_and_a_sentence(kind):
    """A field declared without its error code (a bare ``bool``) made a wrong value an ``internal`` error."""
    schema = client_frames.CLIENT_FRAMES[kind]
    for name, hint in typing.get_type_hints(schema, include_extras=True).items():
        if name == "type":
            continue
        with pytest.raises(ChatError) as refused:
            client_frames._refuse(name, hint)
        assert refused.value.code != ErrorCode.INTERNAL
        assert name in str(refused.value.detail) or refused.value.code == ErrorCode.INVALID_RATING


@pytest.mark.parametrize(
    "field, value, code, sentence",
    [
        ("blind", "yes", ErrorCode.INVALID_VALUE, "blind must be true or false."),
        ("model", 5, ErrorCode.MODEL_NOT_FOUND, "model must be a model's name (text)."),
        ("compare", ["a"], ErrorCode.MODEL_NOT_FOUND, "compare must be a model's name (text)."),
    ],
)
def test_a_send_with_a_value_of_the_wrong_kind_is_refused_with_a_sentence(field, value, code, sentence):
    with pytest.raises(ChatError) as refused:
        client_frames.parse_client_frame({"type": "send", "content": "hi", field: value})
    assert refused.value.code == code and str(refused.value.detail) == sentence
