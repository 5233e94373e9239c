"""A frame fuzzer: Hypothesis-generated frames against the consumer. Whatever arrives, the socket answers
with protocol frames only and keeps serving."""

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.helpers.support import communicator

pytestmark = pytest.mark.django_db(transaction=True)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
frames = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["send", "stop", "regenerate", "subscribe"])},
        optional={
            "conversation": json_values,
            "message": json_values,
            "content": json_values,
            "params": json_values,
            "client_id": json_values,
        },
    ).map(json.dumps),
    json_values.map(lambda v: json.dumps(v)),
    st.text(min_size=1, max_size=200),
    st.binary(min_size=1, max_size=100),
)


def test_fuzzed_frames_never_break_the_socket(make_user, session_cookie, settings):
    settings.CHAT_FRAME_RATE = "100000/second"
    cookie = session_cookie(make_user())
    answered = []

    @hsettings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(frame=frames)
    def check(frame):
        async def go():
            comm = communicator(cookie)  # every frame it receives is checked against its schema
            assert (await comm.connect())[0]
            if isinstance(frame, bytes):
                await comm.send_to(bytes_data=frame)
            else:
                await comm.send_to(text_data=frame)
            await comm.send_to(text_data='{"type": "probe"}')
            while True:
                out = await comm.receive_output(timeout=10)
                assert out["type"] == "websocket.send", out  # never closed, never crashed
                reply = json.loads(out["text"])
                if reply["type"] == "error":
                    assert reply["code"] and reply["detail"]
                    if "probe" in reply["detail"]:
                        break
            await comm.disconnect()

        asyncio.run(go())
        answered.append(frame)

    check()
    assert len(answered) >= 100
