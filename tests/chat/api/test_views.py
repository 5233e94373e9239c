"""How the API view answers a failed reply, from the done frame the worker's end produced (no server)."""

from types import SimpleNamespace

from chat.api.views import CompletionRun
from chat.frames import check_frame
from inference.prompt import TOO_LONG


def done(error: str, error_code: str) -> dict:
    frame = {
        "type": "done",
        "message": 7,
        "conversation": 3,
        "status": "failed",
        "finish_reason": "error",
        "content": "",
        "error": error,
        "error_code": error_code,
        "usage": {"prompt_tokens": 0, "completion_tokens": 0},
        "timing": {"ttft_ms": None, "tokens_per_s": None},
        "sources": [],
    }
    check_frame(frame)
    return frame


def test_the_status_and_code_come_from_the_stored_code_not_from_the_sentence():
    run = CompletionRun(SimpleNamespace(owner_id=1), None)
    too_long = run.failure(done("Any words at all.", "context_length_exceeded"))
    assert (too_long.status, too_long.code, too_long.param, too_long.message) == (
        400,
        "context_length_exceeded",
        "messages",
        "Any words at all.",
    )
    other = run.failure(done(f"{TOO_LONG}, says a sentence that only looks like it.", ""))
    assert (other.status, other.code, other.type) == (500, "generation_failed", "server_error")


def test_an_adapter_that_could_not_be_served_is_503_adapter_unavailable_naming_the_model_param():
    run = CompletionRun(SimpleNamespace(owner_id=1), None)
    sentence = "The model base+run is not available: its training run was removed or has not finished."
    failed = run.failure(done(sentence, "adapter_unavailable"))
    assert (failed.status, failed.code, failed.param, failed.type, failed.message) == (
        503,
        "adapter_unavailable",
        "model",
        "server_error",
        sentence,
    )


def test_an_unforeseen_failure_of_an_api_view_is_openais_error_shape_not_an_html_page(rf, caplog):
    """A /v1 client parses JSON: a bug is a logged 500 ``internal`` in the shape of every other refusal."""
    import json

    from asgiref.sync import async_to_sync

    from chat.api.errors import json_errors

    @json_errors
    async def broken(request):
        raise TypeError("unhashable type: 'list'")

    response = async_to_sync(broken)(rf.post("/v1/chat/completions"))
    assert response.status_code == 500 and response["Content-Type"] == "application/json"
    error = json.loads(response.content)["error"]
    assert (error["code"], error["type"]) == ("internal", "server_error")
    assert "unhashable" not in error["message"] and "unhashable" in caplog.text
