"""Fixtures of the fair-use tests."""

import pytest

from chat.models import Message
from chat.replies import services as reply_services


@pytest.fixture
def finish(django_capture_on_commit_callbacks):
    """End a reply as the worker does, running what it does on commit (the charge and the reservation's settlement, the
    done frame)."""

    def end(reply, prompt=0, completion=0):
        with django_capture_on_commit_callbacks(execute=True):
            reply_services.reply_finish(
                message_id=reply.id,
                content="ok",
                status=Message.Status.COMPLETE,
                finish_reason=Message.FinishReason.STOP,
                prompt_tokens=prompt,
                completion_tokens=completion,
            )

    return end
