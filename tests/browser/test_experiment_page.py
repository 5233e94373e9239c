"""The A/B experiment's screens in real Chromium: staff who may train start an experiment from the panel, see the
arms side by side (counts and intervals) and promote the candidate; the page draws under the site's CSP."""

import pytest

from tests.browser.chromium import (
    CHROMIUM,
    LAUNCH_ARGS,
    SCREENSHOTS,
    admin_log_in,
    new_page,
    skip_without_chromium,
)

PASSWORD = "a-long-test-password"
DEFAULT = "bundled:smollm2-135m-instruct"

skip_without_chromium()

from playwright.sync_api import expect, sync_playwright  # noqa: E402


@pytest.fixture
def trainer(transactional_db, django_user_model, settings):
    """Staff who may train, a finished adapter of the default model, and an experiment's worth of conversations
    (stored before the browser starts: Playwright's event loop makes the ORM refuse calls once it runs)."""
    from django.contrib.auth.models import Permission

    from chat import served
    from chat.experiments import services
    from chat.models import Conversation, Feedback, Message, TrainingRun

    settings.CHAT_SERVED_MODELS = served.parse("", DEFAULT)
    user = django_user_model.objects.create_user(username="tess", password=PASSWORD, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="train_model"))
    run = TrainingRun.objects.create(name="codeword", base_model=DEFAULT, state="done", adapter_path="/adapters/x")
    experiment = services.experiment_start(
        actor=django_user_model.objects.get(pk=user.pk), candidate=run.served_name, share=0.5
    )
    person = django_user_model.objects.create_user(username="pat")
    for n in range(12):
        arm = "candidate" if n % 2 else "control"
        conversation = Conversation.objects.create(
            owner=person,
            model_name=run.served_name if n % 2 else DEFAULT,
            experiment=experiment,
            experiment_arm=arm,
        )
        asked = Message.objects.create(conversation=conversation, role="user", content="q")
        reply = Message.objects.create(
            conversation=conversation,
            parent=asked,
            role="assistant",
            content="a",
            model_name=conversation.model_name,
            status="stopped" if n % 5 == 0 else "complete",
        )
        Feedback.objects.create(message=reply, user=person, rating=1 if (n % 2 or n % 3 == 0) else -1)
    return user, experiment


def test_staff_see_the_arms_and_promote_the_candidate(trainer, live_server):
    from chat.models import SiteDefault

    user, experiment = trainer
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = new_page(browser, live_server.url, errors, timeout=30_000, viewport={"width": 1280, "height": 900})
        admin_log_in(page, live_server.url, f"/admin/chat/experiment/{experiment.pk}/change/", "tess", PASSWORD)
        expect(page.locator("table.experiment-arms tbody tr")).to_have_count(2)
        expect(page.locator("tr.arm-candidate")).to_contain_text("6 / 6 (100%, 95% 61–100%)")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "experiment.png"), full_page=True)
        page.locator("input[name=_promote]").click()
        expect(page.locator(".messagelist")).to_contain_text("is now the default model")
        browser.close()
    assert errors == []
    assert SiteDefault.objects.get().model_name == f"{DEFAULT}+codeword"


def test_the_train_action_asks_for_a_name_and_the_hyperparameters_people_change(trainer, live_server, reviewer_group):
    """A trainer who also reviews picks "Train an adapter" on the conversation list: the page asks for the run's
    name, its base and four optional hyperparameters (blank: the default, said in each field)."""
    user, _ = trainer
    user.groups.add(reviewer_group)
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = new_page(browser, live_server.url, errors, timeout=30_000, viewport={"width": 1280, "height": 900})
        admin_log_in(page, live_server.url, "/admin/chat/conversation/", "tess", PASSWORD)
        page.locator("#action-toggle").check()
        page.select_option("select[name=action]", "train_adapter")
        page.locator("button[name=index]").click()
        expect(page.locator("h1")).to_contain_text("Train an adapter on these conversations")
        for name in ("name", "base", "rank", "epochs", "learning_rate", "seed"):
            expect(page.locator(f"#id_{name}")).to_be_visible()
        expect(page.locator("#id_rank")).to_have_attribute("placeholder", "default")
        page.screenshot(path=str(SCREENSHOTS / "train-adapter.png"), full_page=True)
        browser.close()
    assert errors == []
