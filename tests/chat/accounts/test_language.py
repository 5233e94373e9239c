"""The pages' language: the browser's Accept-Language, Django's language cookie, or the person's own choice on the
Account page, kept for every device they log in on (chat/accounts/language.py, docs/translating.md)."""

import pytest
from django.conf import settings
from django.urls import reverse

from chat.models import ChatDefaults
from tests.helpers.support import connect, run

pytestmark = pytest.mark.django_db

COOKIE = settings.LANGUAGE_COOKIE_NAME
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9,en;q=0.5"}


def test_the_login_page_speaks_the_browsers_language(client):
    english = client.get(reverse("login")).content.decode()
    assert '<html lang="en">' in english and ">Log in<" in english
    chinese = client.get(reverse("login"), **ZH)
    page = chinese.content.decode()
    assert '<html lang="zh-hans">' in page
    assert "<title>登录</title>" in page and "忘记密码？" in page and "还没有账户？" in page
    assert '<option value="en" lang="en">English</option>' in page  # each language named in itself
    assert chinese["Content-Language"] == "zh-hans" and "Accept-Language" in chinese["Vary"]


def test_someone_not_signed_in_switches_with_the_language_cookie(client):
    response = client.post(reverse("set_language"), {"language": "zh-hans", "next": reverse("login")})
    assert response.status_code == 302 and response.cookies[COOKIE].value == "zh-hans"
    assert "登录" in client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="en").content.decode()  # the cookie wins


def test_the_chat_page_and_its_script_catalog_in_chinese(client, make_user):
    client.force_login(make_user())
    client.cookies[COOKIE] = "zh-hans"
    page = client.get(reverse("chat:index")).content.decode()
    for text in ("+ 新建聊天", "搜索聊天", "退出登录", "发送", "系统提示词", "删除此对话？", "连接中…"):
        assert text in page, text
    # The catalog is loaded before the page's modules, from this origin (the CSP allows no other script).
    assert page.index(f'<script src="{reverse("javascript-catalog")}">') < page.index("chat/page/main.js")
    catalog = client.get(reverse("javascript-catalog")).content.decode()
    assert '"connected": "\\u5df2\\u8fde\\u63a5"' in catalog  # "已连接", as the catalog writes it
    assert "django.gettext" in catalog


def test_a_refusal_sentence_is_in_the_pages_language(client, make_user):
    client.force_login(make_user())
    client.cookies[COOKIE] = "zh-hans"
    response = client.get(reverse("chat:conversation-detail", args=[999999]))
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "not_found", "detail": "对话不存在，或不属于你。"}


def test_the_account_page_choice_is_kept_and_switches_this_browser(client, make_user):
    alice, bob = make_user(), make_user("bob")
    ChatDefaults.objects.create(user=bob, language="en")
    client.force_login(alice)
    page = client.get(reverse("account")).content.decode()
    assert 'name="language"' in page and "简体中文" in page

    response = client.post(reverse("account-language"), {"language": "zh-hans"})
    assert response.status_code == 302 and response.cookies[COOKIE].value == "zh-hans"
    assert ChatDefaults.objects.get(user=alice).language == "zh-hans"
    assert ChatDefaults.objects.get(user=bob).language == "en"  # only the signed-in person's own choice changes
    page = client.get(reverse("account")).content.decode()
    assert "你的账户" in page and "下载我的数据" in page and '<option value="zh-hans" selected>' in page

    response = client.post(reverse("account-language"), {"language": ""})  # back to the browser's
    assert response.cookies[COOKIE].value == "" and response.cookies[COOKIE]["max-age"] == 0
    assert ChatDefaults.objects.get(user=alice).language == ""


def test_a_language_not_offered_is_refused_and_nothing_is_kept(client, make_user):
    alice = make_user()
    client.force_login(alice)
    response = client.post(reverse("account-language"), {"language": "xx"})
    assert response.status_code == 400 and COOKIE not in response.cookies
    assert not ChatDefaults.objects.filter(user=alice).exists()
    assert client.get(reverse("account-language")).status_code == 405


def test_the_stored_choice_follows_the_person_to_a_new_device(client, make_user):
    alice = make_user()
    ChatDefaults.objects.create(user=alice, language="zh-hans")
    response = client.post(reverse("login"), {"username": "alice", "password": "a-long-test-password"})
    assert response.status_code == 302 and response.cookies[COOKIE].value == "zh-hans"
    assert "新建聊天" in client.get(reverse("chat:index"), HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_no_stored_choice_leaves_the_browsers_language(client, make_user):
    make_user()
    response = client.post(reverse("login"), {"username": "alice", "password": "a-long-test-password"})
    assert response.status_code == 302 and COOKIE not in response.cookies


@pytest.mark.django_db(transaction=True)
def test_the_socket_sends_its_sentences_in_the_pages_language(make_user, session_cookie):
    cookie = session_cookie(make_user())

    async def errors(extra_cookie):
        comm, connected, _ = await connect(f"{cookie}; {extra_cookie}" if extra_cookie else cookie)
        assert connected
        details = []
        for frame in ("{not json", '{"type": "send", "conversation": null, "content": " "}'):
            await comm.send_to(text_data=frame)
            details.append((await comm.receive_json_from(timeout=10))["detail"])
        await comm.disconnect()
        return details

    # The frame check runs in the socket's task, the empty message's refusal in the database thread: both Chinese.
    assert run(errors(f"{COOKIE}=zh-hans")) == ["帧不是有效的 JSON。", "请先输入消息。"]
    assert run(errors(None)) == ["The frame is not valid JSON.", "Type a message first."]
