"""The dataset export by model: every SFT record and pair names the model that wrote each reply, and a person's
Compare pick is a preference pair (the picked reply over the other, its prompt the conversation up to and
including the compared message), never reversed by a rating, none before the pick, and not repeated."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.conversations import services
from chat.models import Conversation, Feedback, GoldAnswer, Message
from chat.review import dataset
from tests.chat.review.conftest import BIG, SMALL, answered, compared, written

pytestmark = pytest.mark.django_db


def user(text):
    return {"role": "user", "content": text}


def bot(text):
    return {"role": "assistant", "content": text}


def pairs_of(*conversations) -> list[dict]:
    return dataset.pair_records(conversation_ids=[c.pk for c in conversations])


def test_a_compare_pick_is_a_pair_of_the_picked_reply_over_the_other_with_the_prompt_up_to_the_compared_message(
    make_user, two_models
):
    alice = make_user()
    first = answered(alice, "Capital of France?", "Paris.")
    comparison = compared(
        alice, "And of Italy?", ("Rome.", "Milan, I think."), conversation_id=first.conversation_id, pick=0
    )
    assert comparison.chosen_id == comparison.first_id  # stored by compare_pick
    assert pairs_of(first.conversation) == [
        {
            "prompt": [user("Capital of France?"), bot("Paris."), user("And of Italy?")],
            "chosen": [bot("Rome.")],
            "rejected": [bot("Milan, I think.")],
            "source": "compare",
            "conversation": first.conversation_id,
            "message": comparison.second_id,
            "chosen_message": comparison.first_id,
            "chosen_model": BIG,
            "rejected_model": SMALL,
            "blind": False,
        }
    ]


def test_the_other_models_pick_and_a_blind_one_say_so(make_user, two_models):
    alice = make_user()
    comparison = compared(alice, "Hello?", ("Hi.", "Hello there!"), blind=True, pick=1)
    [pair] = pairs_of(comparison.prompt.conversation)
    assert (pair["chosen"], pair["rejected"]) == ([bot("Hello there!")], [bot("Hi.")])
    assert (pair["chosen_message"], pair["message"]) == (comparison.second_id, comparison.first_id)
    assert (pair["chosen_model"], pair["rejected_model"], pair["blind"]) == (SMALL, BIG, True)
    assert pair["prompt"] == [user("Hello?")]


def test_an_unpicked_comparison_yields_no_pair(make_user, two_models):
    alice = make_user()
    comparison = compared(alice, "Hello?", ("Hi.", "Hello there!"))
    assert comparison.chosen_id is None
    assert pairs_of(comparison.prompt.conversation) == []


def test_a_rating_never_reverses_a_pick_and_one_agreeing_with_it_is_not_a_second_pair(make_user, two_models):
    alice = make_user()
    reversed_ = compared(alice, "Reversed?", ("picked text", "other text"), pick=0)
    Feedback.objects.create(message=reversed_.first, user=alice, rating=-1)  # 👎 on the reply picked …
    Feedback.objects.create(message=reversed_.second, user=alice, rating=1)  # … 👍 on the other: a "rating" pair
    agreeing = compared(alice, "Agreeing?", ("picked too", "other too"), pick=0)
    Feedback.objects.create(message=agreeing.first, user=alice, rating=1)
    Feedback.objects.create(message=agreeing.second, user=alice, rating=-1)
    pairs = pairs_of(reversed_.prompt.conversation, agreeing.prompt.conversation)
    assert [(p["source"], p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs] == [
        ("compare", "picked text", "other text"),  # and never "other text" over "picked text"
        ("compare", "picked too", "other too"),  # the 👍/👎 pair repeats it: left out
    ]


def test_a_pick_stands_beside_gold_answers_and_alternatives_of_the_same_message(make_user, two_models):
    """A regenerated reply after a Compare is a third sibling: the ratings' pairs with it still come, after the
    pick; a gold answer over the rejected reply comes first. No pair repeats another."""
    alice = make_user()
    comparison = compared(alice, "Why?", ("Because.", "No idea."), pick=0)
    regenerated = services.message_regenerate(user=alice, message_id=comparison.first_id)
    third = written(regenerated, "Because it is.")
    Feedback.objects.create(message=third, user=alice, rating=1)
    GoldAnswer.objects.create(message=comparison.second, content="Here is why.")
    pairs = pairs_of(comparison.prompt.conversation)
    assert [(p["source"], p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs] == [
        ("gold", "Here is why.", "No idea."),
        ("compare", "Because.", "No idea."),
        ("alternatives", "Because it is.", "Because."),
        ("alternatives", "Because it is.", "No idea."),
    ]
    assert [(p["chosen_model"], p["rejected_model"]) for p in pairs] == [
        (None, SMALL),
        (BIG, SMALL),
        (BIG, BIG),
        (BIG, SMALL),
    ]
    assert len({json.dumps([p["prompt"], p["chosen"], p["rejected"]]) for p in pairs}) == len(pairs)


def test_sft_records_name_the_model_of_each_reply(make_user, two_models):
    alice = make_user()
    one = answered(alice, "Hi?", "Hello.")
    answered(alice, "More?", "Sure.", conversation_id=one.conversation_id)
    mixed = compared(alice, "Which?", ("Big says.", "Small says."), pick=1)  # the small reply becomes shown
    answered(alice, "Then?", "Then this.", conversation_id=mixed.prompt.conversation_id)
    records = dataset.sft_records(conversation_ids=[one.conversation_id, mixed.prompt.conversation_id])
    assert [(r["model"], r["models"]) for r in records] == [(BIG, [BIG, BIG]), (None, [SMALL, BIG])]
    assert records[1]["messages"] == [user("Which?"), bot("Small says."), user("Then?"), bot("Then this.")]


def test_a_reply_without_a_model_name_takes_its_conversations(make_user):
    """Rows written before replies named their model: the conversation's model is the best known."""
    alice = make_user()
    conversation = Conversation.objects.create(owner=alice, model_name="old-model")
    question = Message.objects.create(conversation=conversation, role="user", content="q")
    Message.objects.create(conversation=conversation, parent=question, role="assistant", content="a")
    [record] = dataset.sft_records(conversation_ids=[conversation.pk])
    assert (record["model"], record["models"]) == ("old-model", ["old-model"])


def test_comparisons_cost_no_query_more(make_user, two_models, django_user_model):
    """The comparisons come joined to the messages: pairs of any number of Compares cost the same queries."""

    def cost(conversations) -> int:
        with CaptureQueriesContext(connection) as captured:
            pairs_of(*conversations)
        return len(captured)

    def chats(n: int, tag: str) -> list[Conversation]:
        out = []
        for i in range(n):
            person = django_user_model.objects.create_user(username=f"{tag}{i}")
            out.append(compared(person, f"q {i}", (f"a {i}", f"b {i}"), pick=i % 2).prompt.conversation)
        return out

    few = chats(2, "few")
    many = few + chats(8, "many")
    assert len(pairs_of(*many)) == 10
    assert cost(few) == cost(many) == 3  # messages (with their comparisons), feedback, conversations
