"""A/B experiments and promotion (chat/experiments/), over the real database and Redis: the split sends the
configured share, blind to the person; the arms' figures; ending and promoting; every action audited and
refused to staff without ``chat.train_model``."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from chat import served
from chat.conversations import conversation_settings, selectors, services
from chat.errors import ChatError, ErrorCode
from chat.experiments import selectors as experiment_selectors
from chat.experiments import services as experiment_services
from chat.models import AuditEvent, Conversation, Experiment, Feedback, Message, TrainingRun
from chat.names import experiment_counter_key
from chat.replies import catalog
from chat.store import client

pytestmark = pytest.mark.django_db

DEFAULT = "bundled:smollm2-135m-instruct"
CANDIDATE = f"{DEFAULT}+codeword"  # an adapter: served by the default model's (stand-in) worker


@pytest.fixture
def two_models(settings):
    """The default model and a finished adapter of it (the candidate), and room to send many messages."""
    settings.CHAT_SERVED_MODELS = served.parse("", DEFAULT)
    settings.CHAT_DEFAULT_MODEL = DEFAULT
    settings.CHAT_MAX_ACTIVE_PER_USER = 100
    settings.CHAT_MESSAGES_PER_MINUTE = 0
    TrainingRun.objects.create(name="codeword", base_model=DEFAULT, state="done", adapter_path="/adapters/codeword")


@pytest.fixture
def trainer(django_user_model):
    user = django_user_model.objects.create_user(username="trainer", password="a-long-test-password", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="train_model"))
    return django_user_model.objects.get(pk=user.pk)  # permissions are cached per object


def start(trainer, share):
    experiment = experiment_services.experiment_start(actor=trainer, candidate=CANDIDATE, share=share)
    client().delete(experiment_counter_key(experiment.pk))
    return experiment


def test_the_split_sends_the_configured_share_blind_to_the_person(two_models, trainer, make_user):
    experiment = start(trainer, 0.25)
    people = [make_user(f"p{i}") for i in range(4)]
    sent = [
        services.message_send(user=people[i % 4], conversation_id=None, content=f"hi {i}", model=DEFAULT)
        for i in range(20)
    ]
    arms = [s.conversation.experiment_arm for s in sent]
    assert arms.count("candidate") == 5 and arms.count("control") == 15  # exactly a quarter, in any 20
    assert all(s.conversation.experiment_id == experiment.pk for s in sent)
    blind = next(s for s in sent if s.conversation.experiment_arm == "candidate")
    assert (blind.conversation.model_name, blind.assistant_message.model_name) == (CANDIDATE, CANDIDATE)
    # What the person is shown says the control's name: the frame's payload, the thread, the conversation.
    from chat.events import message_payload

    assert message_payload(blind.assistant_message)["model"] == DEFAULT
    thread = selectors.thread_for_user(user=blind.conversation.owner, conversation=blind.conversation)
    assert thread[-1]["model"] == DEFAULT
    Message.objects.filter(pk=blind.assistant_message.pk).update(status="complete", content="ok")
    # The person may not pick the candidate, but their conversation keeps it for its next reply.
    owner = blind.conversation.owner
    with pytest.raises(ChatError) as picked:
        services.message_send(user=owner, conversation_id=None, content="x", model=CANDIDATE)
    assert picked.value.code == ErrorCode.MODEL_NOT_FOUND
    nxt = services.message_send(user=owner, conversation_id=blind.conversation.pk, content="and?")
    assert nxt.assistant_message.model_name == CANDIDATE and nxt.assistant_message.shown_model_name == DEFAULT
    # Staff who may try adapters pick it themselves: no part in the experiment.
    other = services.message_send(user=trainer, conversation_id=None, content="x", model=CANDIDATE)
    assert other.conversation.experiment_id is None and other.conversation.model_name == CANDIDATE


def test_the_arms_are_compared_on_what_people_did_with_intervals(two_models, trainer, make_user):
    experiment = start(trainer, 0.5)
    alice = make_user("alice")
    for i in range(6):
        sent = services.message_send(user=alice, conversation_id=None, content=f"q{i}")
        reply = sent.assistant_message
        up = sent.conversation.experiment_arm == "candidate"
        Message.objects.filter(pk=reply.pk).update(status="complete" if up else "stopped", content="a")
        Feedback.objects.create(message=reply, user=alice, rating=1 if up else -1)
    control, candidate = experiment_selectors.arms(experiment)
    assert (control.arm, control.model, control.conversations) == ("control", DEFAULT, 3)
    assert (candidate.thumbs_up.k, candidate.thumbs_up.n) == (3, 3) and control.thumbs_up.k == 0
    assert (control.stops.k, candidate.stops.k) == (3, 0)
    low, high = candidate.thumbs_up.interval
    assert 0.4 < low < 0.5 and high == pytest.approx(1.0)  # Wilson's interval for 3 of 3
    assert candidate.picks.n == 0 and candidate.picks.interval is None


def test_ending_sends_the_candidate_arm_back_and_promoting_changes_the_default(two_models, trainer, make_user):
    experiment = start(trainer, 1.0)
    alice = make_user("alice")
    sent = services.message_send(user=alice, conversation_id=None, content="hi")
    assert sent.conversation.model_name == CANDIDATE
    experiment_services.experiment_end(actor=trainer, experiment_id=experiment.pk)
    assert Conversation.objects.get(pk=sent.conversation.pk).model_name == DEFAULT
    with pytest.raises(ChatError) as ended:
        experiment_services.experiment_end(actor=trainer, experiment_id=experiment.pk)
    assert ended.value.code == ErrorCode.EXPERIMENT_NOT_RUNNING

    second = start(trainer, 0.5)
    with pytest.raises(ChatError) as busy:
        experiment_services.experiment_start(actor=trainer, candidate=CANDIDATE, share=0.5)
    assert busy.value.code == ErrorCode.EXPERIMENT_RUNNING
    assert catalog.default_for(alice).name == DEFAULT
    experiment_services.model_promote(actor=trainer, model="", experiment_id=second.pk)
    assert Experiment.objects.get(pk=second.pk).state == "promoted"
    assert catalog.default_for(alice).name == CANDIDATE and catalog.site_default() == CANDIDATE
    assert services.message_send(user=alice, conversation_id=None, content="x").conversation.model_name == CANDIDATE
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions == [
        "experiment_started",
        "experiment_ended",
        "experiment_started",
        "model_promoted",
    ]


def test_staff_without_the_permission_are_refused_and_bad_shares_explained(two_models, trainer, django_user_model):
    staff = django_user_model.objects.create_user(username="staff", password="a-long-test-password", is_staff=True)
    with pytest.raises(ChatError) as refused:
        experiment_services.experiment_start(actor=staff, candidate=CANDIDATE, share=0.5)
    assert refused.value.code == ErrorCode.FORBIDDEN
    for share in (0, 1.5, "a lot", None):
        with pytest.raises(ChatError) as bad:
            experiment_services.experiment_start(actor=trainer, candidate=CANDIDATE, share=share)
        assert bad.value.code == ErrorCode.INVALID_SHARE
    with pytest.raises(ChatError) as same:
        experiment_services.experiment_start(actor=trainer, candidate=DEFAULT, share=0.5)
    assert same.value.code == ErrorCode.COMPARE_SAME_MODEL
    browser = Client()
    browser.force_login(staff)
    assert browser.get("/admin/chat/experiment/").status_code == 403
    assert not AuditEvent.objects.exists()


def test_the_panel_starts_shows_and_promotes(two_models, trainer, make_user):
    browser = Client()
    browser.force_login(trainer)
    form = browser.get("/admin/chat/experiment/add/").content.decode()
    assert "its base model, +, its run&#x27;s name" in form or "its base model, +, its run's name" in form
    page = browser.post("/admin/chat/experiment/add/", {"candidate": CANDIDATE, "share": "0.5"}, follow=True)
    assert page.redirect_chain and page.redirect_chain[0][1] == 302, page.content.decode()[:2000]
    experiment = Experiment.objects.get()
    # The "was added" message names what was saved, control included (it named "… against " before).
    assert f"{CANDIDATE} against {DEFAULT}" in page.content.decode()
    client().delete(experiment_counter_key(experiment.pk))
    alice = make_user("alice")
    for i in range(2):
        services.message_send(user=alice, conversation_id=None, content=f"q{i}")
    shown = browser.get(f"/admin/chat/experiment/{experiment.pk}/change/").content.decode()
    assert "arm-control" in shown and "arm-candidate" in shown and "Promote the candidate" in shown
    assert "_addanother" not in shown  # one experiment runs at a time
    done = browser.post(f"/admin/chat/experiment/{experiment.pk}/change/", {"_promote": "1", "share": "0.5"})
    assert done.status_code == 302 and catalog.site_default() == CANDIDATE


def test_the_candidate_arm_stays_blind_through_the_pages_own_saves_and_compare(two_models, trainer, make_user):
    """The page sends the model it shows with every settings save: in the candidate arm that is the control's
    name, which must not end the treatment; and Compare with the control is refused there as in the control arm
    (a difference would tell the arm)."""
    start(trainer, 1.0)
    alice = make_user("alice")
    sent = services.message_send(user=alice, conversation_id=None, content="hi")
    Message.objects.filter(pk=sent.assistant_message.pk).update(status="complete", content="ok")
    stored = conversation_settings.conversation_settings_set(
        user=alice, conversation_id=sent.conversation.pk, system_prompt="be brief", params={}, model=DEFAULT
    )
    assert stored["model"] == DEFAULT  # what she is shown
    assert Conversation.objects.get(pk=sent.conversation.pk).model_name == CANDIDATE  # what writes her replies
    with pytest.raises(ChatError) as same:
        services.message_send(user=alice, conversation_id=sent.conversation.pk, content="x", compare=DEFAULT)
    assert same.value.code == ErrorCode.COMPARE_SAME_MODEL


def test_an_experiment_ended_under_a_new_conversation_leaves_it_on_the_control(two_models, trainer, make_user):
    experiment = start(trainer, 1.0)
    alice = make_user("alice")
    sent = services.message_send(user=alice, conversation_id=None, content="hi")
    Message.objects.filter(pk=sent.assistant_message.pk).update(status="complete", content="ok")
    # As if assigned while the end committed: the end's move missed it.
    Experiment.objects.filter(pk=experiment.pk).update(state="ended")
    nxt = services.message_send(user=alice, conversation_id=sent.conversation.pk, content="and?")
    assert nxt.assistant_message.model_name == DEFAULT


def test_a_candidate_open_to_some_groups_only_cannot_be_tried_on_everyone(trainer, settings):
    settings.CHAT_SERVED_MODELS = served.parse(
        f"{DEFAULT}={DEFAULT},private=/models/private", "", {"private": {"groups": ["insiders"]}}
    )
    with pytest.raises(ChatError) as refused:
        experiment_services.experiment_start(actor=trainer, candidate="private", share=0.5)
    assert refused.value.code == ErrorCode.MODEL_NOT_FOUND and "some groups only" in refused.value.detail


def test_a_promotion_is_undone_from_the_command_line_audited_and_refused_while_an_experiment_runs(
    two_models, trainer, make_user
):
    """``manage.py promote_model``: the earlier default promoted again, without an experiment for it."""
    import io

    from django.core.management import CommandError, call_command

    from chat.models import AuditEvent

    out = io.StringIO()
    call_command("promote_model", CANDIDATE, "--user", "trainer", stdout=out)
    assert catalog.site_default() == CANDIDATE and f"(it was {DEFAULT})" in out.getvalue()
    call_command("promote_model", DEFAULT, "--user", "trainer", stdout=io.StringIO())  # the undo
    assert catalog.site_default() == DEFAULT
    promoted = AuditEvent.objects.filter(action=AuditEvent.Action.MODEL_PROMOTED).order_by("pk")
    pairs = [(row.details["model"], row.details["was"]) for row in promoted]
    assert pairs == [(CANDIDATE, DEFAULT), (DEFAULT, CANDIDATE)]
    for argv, said in (
        (["no-such-model", "--user", "trainer"], "model_not_found"),
        ([DEFAULT, "--user", make_user("alice").username], "forbidden"),
        ([DEFAULT, "--user", "nobody"], "No user named 'nobody'."),
    ):
        with pytest.raises(CommandError) as refused:
            call_command("promote_model", *argv)
        assert said in str(refused.value)
    start(trainer, 0.5)
    with pytest.raises(CommandError) as refused:
        call_command("promote_model", CANDIDATE, "--user", "trainer")
    assert "An experiment is running" in str(refused.value) and catalog.site_default() == DEFAULT
