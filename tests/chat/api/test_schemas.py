"""The request checks of chat/api/schemas.py, without a server: each refusal names its parameter in a sentence."""

import pytest

from chat.api.errors import ApiError
from chat.api.schemas import parse_completion_request

MODEL = "m"


def refusal(**extra) -> dict:
    with pytest.raises(ApiError) as refused:
        parse_completion_request({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **extra})
    return refused.value.body()["error"]


@pytest.mark.parametrize("seed", [2**63, -(2**63) - 1, 10**30])
def test_a_seed_outside_64_bits_is_refused_in_words_not_in_rounded_floats(seed):
    body = refusal(seed=seed)
    assert (body["param"], body["message"]) == ("seed", "'seed' must be a 64-bit integer.")


def test_the_64_bit_bounds_themselves_are_seeds():
    for seed in (2**63 - 1, -(2**63)):
        assert (
            parse_completion_request(
                {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "seed": seed}
            ).params["seed"]
            == seed
        )


@pytest.mark.parametrize("role", [["user"], {"a": 1}, 5, None])
def test_a_role_that_is_not_a_string_is_refused_naming_it(role):
    with pytest.raises(ApiError) as refused:
        parse_completion_request({"model": MODEL, "messages": [{"role": role, "content": "hi"}]})
    body = refused.value.body()["error"]
    assert (refused.value.status, body["param"], body["code"]) == (400, "messages[0].role", "invalid_value")
