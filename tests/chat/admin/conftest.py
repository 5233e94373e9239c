"""People and transcripts for the review panel's tests: rows made directly, as the services would leave them."""
import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client

from chat.models import Conversation, Message


@pytest.fixture
def people(django_user_model):
    """owner (a normal user with a chat), staff (staff, every model permission of chat, not a reviewer),
    reviewer (staff in the "reviewer" group the migration made), root (a superuser)."""
    def user(name, **extra):
        return django_user_model.objects.create_user(username=name, password="a-long-test-password", **extra)

    owner = user("owner")
    staff = user("staff", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="chat")
                               .exclude(codename="review_conversation"))
    reviewer = user("reviewer", is_staff=True)
    reviewer.groups.add(Group.objects.get(name="reviewer"))
    root = django_user_model.objects.create_superuser(username="root", password="a-long-test-password")
    return type("People", (), dict(owner=owner, staff=staff, reviewer=reviewer, root=root))


@pytest.fixture
def client_for():
    def make(user):
        client = Client()
        client.force_login(user)
        return client
    return make


def make_chat(owner, turns=2, *, title="chat", reply_status=Message.Status.COMPLETE, model="m1",
              content="question <b>{n}</b>"):
    """A conversation of ``turns`` question/answer pairs, the last answer with ``reply_status``."""
    conversation = Conversation.objects.create(owner=owner, title=title, system_prompt="be kind", model_name=model)
    parent = None
    replies = []
    for n in range(turns):
        question = Message.objects.create(conversation=conversation, parent=parent, role=Message.Role.USER,
                                          content=content.format(n=n))
        status = reply_status if n == turns - 1 else Message.Status.COMPLETE
        parent = Message.objects.create(
            conversation=conversation, parent=question, role=Message.Role.ASSISTANT, content=f"answer {n}",
            status=status, finish_reason=Message.FinishReason.STOP if status == "complete" else "error",
            model_name=model, prompt_tokens=10 + n, completion_tokens=5, ttft_ms=42, tokens_per_s=12.5,
            params={"temperature": 0.7}, error="it broke" if status == "failed" else "")
        replies.append(parent)
    conversation.replies = replies
    return conversation
