// The chat page: one websocket (protocol in docs/protocol.md), reconnect with backoff and resubscribe after a
// drop. Replies are rendered as sanitised Markdown by markdown.js (streamed deltas at most once per frame);
// what a person typed is shown exactly as typed (textContent), since it is theirs and not meant as markup.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const state = {
    socket: null, retry: 0, conversation: null, pendingClientId: null, connectedBefore: false,
    active: null,        // id of the assistant message being generated in the shown conversation
    elements: new Map(), // message id -> element
  };

  // --- rendering ---------------------------------------------------------------------------------
  function showError(text) {
    const box = $("error");
    box.textContent = text;
    box.hidden = !text;
  }

  function setActive(id) {
    state.active = id;
    $("stop").hidden = id === null;
    $("send").disabled = id !== null;
  }

  function renderMessage(m, isLatest) {
    let el = state.elements.get(m.id);
    if (!el) {
      el = document.createElement("div");
      el.dataset.id = m.id;
      el.innerHTML = '<div class="body"></div><div class="meta"></div>';
      $("messages").appendChild(el);
      state.elements.set(m.id, el);
      $("messages").querySelector(".empty")?.remove();
    }
    el.className = `msg ${m.role} ${m.status}`;
    const body = el.querySelector(".body");
    if (m.role === "assistant") ChatMarkdown.render(body, m.content);
    else body.textContent = m.content;
    renderMeta(el, m, isLatest);
    if (m.role === "assistant" && (m.status === "queued" || m.status === "streaming")) setActive(m.id);
    scrollDown();
    return el;
  }

  function renderMeta(el, m, isLatest) {
    const meta = el.querySelector(".meta");
    meta.textContent = "";
    if (m.role !== "assistant") return;
    const words = { queued: "waiting for the model…", stopped: "stopped", failed: "failed" };
    const parts = [];
    if (words[m.status]) parts.push(words[m.status]);
    if (m.error) parts.push(m.error);
    if (m.timing && m.timing.tokens_per_s) parts.push(`${m.usage.completion_tokens} tokens · ${m.timing.tokens_per_s.toFixed(1)} tok/s`);
    meta.textContent = parts.join(" · ");
    const finished = !["queued", "streaming"].includes(m.status);
    if (finished && m.content) {
      const copy = document.createElement("button");
      copy.type = "button";
      copy.className = "copy-message";
      copy.textContent = "Copy";
      copy.title = "Copy this reply as Markdown";
      copy.addEventListener("click", () => ChatMarkdown.copyText(ChatMarkdown.source(el.querySelector(".body")), copy));
      meta.appendChild(copy);
    }
    if (finished && isLatest !== false) {
      document.querySelectorAll(".regenerate").forEach((b) => b.remove());
      const again = document.createElement("button");
      again.type = "button";
      again.className = "regenerate";
      again.textContent = "Regenerate";
      again.addEventListener("click", () => send({ type: "regenerate", message: m.id }));
      meta.appendChild(again);
    }
  }

  function scrollDown() { const box = $("messages"); box.scrollTop = box.scrollHeight; }

  // After each render: follow the reply, and leave the render counts where the browser tests read them
  // (the page's CSP forbids the eval that reading window.chatStats from a test would need).
  ChatMarkdown.afterRender = () => {
    scrollDown();
    const s = ChatMarkdown.stats, data = $("messages").dataset;
    data.deltas = s.appends;
    data.frameRenders = s.frameRenders;
    data.fullRenders = s.fullRenders;
    data.renderMs = s.renderMs.toFixed(1);
    data.maxLiveChars = s.maxLiveChars;
  };

  function clearThread(title) {
    $("messages").replaceChildren();
    state.elements.clear();
    setActive(null);
    $("title").textContent = title || "New chat";
    const hint = document.createElement("p");
    hint.className = "empty";
    hint.textContent = "Ask anything to start a conversation.";
    $("messages").appendChild(hint);
  }

  function renderConversationLink(c, prepend) {
    let li = document.querySelector(`#conversations li[data-id="${c.id}"]`);
    if (!li) {
      li = document.createElement("li");
      li.dataset.id = c.id;
      const a = document.createElement("a");
      a.href = `#${c.id}`;
      a.addEventListener("click", (e) => { e.preventDefault(); openConversation(c.id); });
      li.appendChild(a);
      const list = $("conversations");
      prepend ? list.prepend(li) : list.appendChild(li);
    }
    li.firstChild.textContent = c.title || `Conversation ${c.id}`;
    li.firstChild.classList.toggle("current", c.id === state.conversation);
  }

  function markCurrent() {
    document.querySelectorAll("#conversations a").forEach((a) =>
      a.classList.toggle("current", Number(a.parentNode.dataset.id) === state.conversation));
  }

  // --- data ----------------------------------------------------------------------------------------
  async function loadConversations() {
    const res = await fetch("/api/conversations/");
    if (!res.ok) return;
    const data = await res.json();
    data.conversations.forEach((c) => renderConversationLink(c, false));
    markCurrent();
  }

  async function openConversation(id) {
    const res = await fetch(`/api/conversations/${id}/`);
    if (!res.ok) {
      if (state.conversation === id) state.conversation = null;
      showError("That conversation could not be opened.");
      return;
    }
    const data = await res.json();
    state.conversation = data.conversation.id;
    location.hash = String(id);
    clearThread(data.conversation.title);
    data.messages.forEach((m, i) => renderMessage(m, i === data.messages.length - 1));
    markCurrent();
    showError("");
    // Not open yet: the socket's open handler subscribes to the shown conversation.
    if (state.socket?.readyState === WebSocket.OPEN) send({ type: "subscribe", conversation: id });
  }

  // --- socket --------------------------------------------------------------------------------------
  function send(frame) {
    if (!state.socket || state.socket.readyState !== WebSocket.OPEN) {
      showError("Not connected to the server; reconnecting…");
      return false;
    }
    state.socket.send(JSON.stringify(frame));
    return true;
  }

  function adopt(id) {
    state.conversation = id;
    history.replaceState(null, "", `#${id}`);
    markCurrent();
  }

  const handlers = {
    conversation(f) {
      // A conversation this tab just started (its first frames carry our client_id; this one comes first).
      if (state.pendingClientId && state.conversation === null) adopt(f.conversation.id);
      renderConversationLink(f.conversation, true);
      if (f.conversation.id === state.conversation) $("title").textContent = f.conversation.title;
      markCurrent();
    },
    message(f) {
      const m = f.message;
      if (f.client_id && f.client_id === state.pendingClientId && state.conversation === null) adopt(m.conversation);
      if (m.conversation !== state.conversation) return;
      if (f.replaces) state.elements.get(f.replaces)?.remove();
      renderMessage(m);
    },
    delta(f) {
      const el = state.elements.get(f.message);
      if (!el) return;
      if (el.className !== "msg assistant streaming") {
        el.className = "msg assistant streaming";
        el.querySelector(".meta").textContent = "";
      }
      ChatMarkdown.append(el.querySelector(".body"), f.text); // rendered, and scrolled to, at the next frame
    },
    done(f) {
      const el = state.elements.get(f.message);
      if (!el) return;
      renderMessage({ id: f.message, role: "assistant", content: f.content, status: f.status,
                      usage: f.usage, timing: f.timing, error: f.error });
      if (state.active === f.message) setActive(null);
    },
    subscribed(f) {
      if (f.conversation === state.conversation && f.active === null) setActive(null);
    },
    error(f) { showError(f.detail); },
  };

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/chat/`);
    state.socket = socket;
    socket.addEventListener("open", () => {
      state.retry = 0;
      $("connection").textContent = "connected";
      $("connection").className = "connection online";
      showError("");
      const reconnect = state.connectedBefore;
      state.connectedBefore = true;
      if (state.conversation === null) return;
      // After a drop the page may have missed frames: reload what is stored, then resume the live reply. On the
      // first connect the page is loading it already: only resume.
      if (reconnect) openConversation(state.conversation);
      else send({ type: "subscribe", conversation: state.conversation });
    });
    socket.addEventListener("message", (e) => {
      const frame = JSON.parse(e.data);
      handlers[frame.type]?.(frame);
    });
    socket.addEventListener("close", (e) => {
      $("connection").textContent = "offline — reconnecting…";
      $("connection").className = "connection";
      if (e.code === 4401) { location.href = "/accounts/login/?next=/"; return; }
      if (e.code === 4429) state.retry = Math.max(state.retry, 6); // too many tabs: retry slowly
      const delay = Math.min(30000, 500 * 2 ** state.retry++);
      setTimeout(connect, delay);
    });
  }

  // --- composer ------------------------------------------------------------------------------------
  function submit() {
    const input = $("input");
    const content = input.value;
    if (!content.trim() || state.active !== null) return;
    state.pendingClientId = (crypto.randomUUID && crypto.randomUUID()) || String(Math.random());
    if (send({ type: "send", conversation: state.conversation, content, client_id: state.pendingClientId })) {
      input.value = "";
      showError("");
    }
  }

  $("composer").addEventListener("submit", (e) => { e.preventDefault(); submit(); });
  $("input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
  });
  $("stop").addEventListener("click", () => { if (state.active !== null) send({ type: "stop", message: state.active }); });
  $("new-chat").addEventListener("click", () => {
    state.conversation = null;
    location.hash = "";
    clearThread();
    markCurrent();
    $("input").focus();
  });

  clearThread();
  // The conversation in the address is the one a message typed now goes to, even before it has loaded.
  const initial = Number(location.hash.slice(1)) || null;
  state.conversation = initial;
  connect();
  loadConversations().then(() => { if (initial) openConversation(initial); });
})();
