// mqchat reference web client. Plain JavaScript, no framework, no build step.
//
// REST (same origin) for accounts, the chat list and history; MQTT over
// WebSocket (MQTT.js, vendor/mqtt.min.js) for everything live: messages on
// users/{me}/inbox, receipts, typing and group changes on users/{me}/events,
// presence on presence/{uid}. Sends, receipts, typing and group operations
// are MQTT publishes. The store is the truth: after every (re)connect the
// client asks the chat list what changed since its last sync cursor and
// pages the open chat forward from the last seq it holds, so a connection
// lost for any length of time leaves no gap; messages are kept by seq, so
// one that arrives twice (live and in a page) is shown once.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  // ?page=N sets the history page size (tests use small pages to page).
  const PAGE = Math.min(200, Math.max(1, Number(params.get("page")) || 50));
  const EMOJI = ["👍", "❤️", "😂", "😮", "😢", "🎉"];
  const TYPING_EVERY = 2000; // the server forwards one notice per 2 s
  const TYPING_SHOWN = 4000;

  // ---- persistent state -------------------------------------------------
  // Tokens are shared by the browser's tabs (localStorage); the device id is
  // per tab (sessionStorage, which a reload keeps), because two tabs with one
  // client id would keep taking each other's MQTT session over.
  const store = {
    get auth() { return JSON.parse(localStorage.getItem("mqchat.auth") || "null"); },
    set auth(v) { v ? localStorage.setItem("mqchat.auth", JSON.stringify(v)) : localStorage.removeItem("mqchat.auth"); },
    get device() {
      let d = sessionStorage.getItem("mqchat.device");
      if (!d) {
        d = "web-" + randomID(10);
        sessionStorage.setItem("mqchat.device", d);
      }
      return d;
    },
    // What others' receipts told us (the chat list holds only our own
    // cursors), and our own unsent messages: both survive a reload.
    load(key, def) { return JSON.parse(localStorage.getItem(scoped(key)) || "null") ?? def; },
    save(key, v) { localStorage.setItem(scoped(key), JSON.stringify(v)); },
  };
  const scoped = (key) => "mqchat." + (state.me ? state.me.id : "") + "." + key;

  const state = {
    me: null,          // {id, username}
    chats: new Map(),  // chat id -> summary {chat, kind, title, last_seq, read_seq, unread, last_message, peer}
    msgs: new Map(),   // chat id -> Map(seq -> message view)
    open: null,        // the chat on screen
    names: new Map(),  // user id -> username (or a promise of it)
    cursors: {},       // chat -> {uid: {d, r}}: other members' delivered/read seqs
    members: new Map(),// group chat -> [user ids]
    outbox: [],        // unacknowledged sends {cmid, chat, env}
    acked: new Map(),  // cmid -> send acknowledged but its copy not yet back
    failed: new Map(), // cmid -> reason, for sends the server refused
    syncCursor: null,
    typing: new Map(), // chat -> {user, until}
    editing: null,     // seq being edited in the open chat
    presence: null,    // the presence/{uid} topic subscribed for the open chat
  };
  let mq = null;             // the MQTT client of the current connection
  let reconnectTimer = null;
  let backoff = 500;
  let syncing = Promise.resolve();

  function randomID(n) {
    const b = crypto.getRandomValues(new Uint8Array(n));
    return Array.from(b, (x) => x.toString(36).padStart(2, "0")).join("").slice(0, n * 2);
  }
  const newCmid = () => "w" + Date.now().toString(36) + randomID(6);

  // ---- REST -----------------------------------------------------------
  class APIError extends Error {
    constructor(status, body) {
      super((body && body.error && body.error.message) || "HTTP " + status);
      this.status = status;
      this.code = body && body.error && body.error.code;
    }
  }

  async function rest(method, path, body, { auth = true, retried = false } = {}) {
    const headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (auth) headers.Authorization = "Bearer " + (await freshToken());
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { /* not ours: a proxy's error page */ }
    if (res.status === 401 && auth && !retried) {
      await refreshTokens(true);
      return rest(method, path, body, { auth, retried: true });
    }
    if (!res.ok) throw new APIError(res.status, data);
    return data;
  }

  function keepTokens(t, username) {
    store.auth = {
      user_id: t.user_id, username, access_token: t.access_token, refresh_token: t.refresh_token,
      expires_at: Date.now() + (t.expires_in || 900) * 1000,
    };
  }

  // freshToken answers an access token valid for at least another minute.
  async function freshToken() {
    const a = store.auth;
    if (!a) throw new APIError(401, null);
    if (a.expires_at - Date.now() > 60000) return a.access_token;
    await refreshTokens(false);
    return store.auth.access_token;
  }

  // refreshTokens exchanges the refresh token. Refresh tokens are single
  // use and a second use revokes the session, so tabs take turns (a Web
  // Lock) and a tab that finds the tokens already replaced uses those.
  async function refreshTokens(force) {
    const seen = store.auth && store.auth.refresh_token;
    const run = async () => {
      const a = store.auth;
      if (!a) throw new APIError(401, null);
      if (a.refresh_token !== seen || (!force && a.expires_at - Date.now() > 60000)) return;
      try {
        const t = await rest("POST", "/v1/auth/refresh", { refresh_token: a.refresh_token }, { auth: false });
        keepTokens({ ...t, user_id: a.user_id }, a.username);
      } catch (e) {
        if (e.status === 401) signOut("Your session ended; log in again.");
        throw e;
      }
    };
    return navigator.locks ? navigator.locks.request("mqchat.refresh", run) : run();
  }

  // ---- names ----------------------------------------------------------
  function nameOf(uid) {
    if (state.me && uid === state.me.id) return state.me.username;
    const n = state.names.get(uid);
    if (typeof n === "string") return n;
    if (!n) {
      state.names.set(uid, rest("GET", "/v1/users/" + encodeURIComponent(uid)).then((u) => {
        state.names.set(uid, u.deleted ? "deleted account" : u.username);
        render();
      }, () => {
        // Profiles are visible only once a chat is accepted: ask again later.
        state.names.set(uid, uid.slice(0, 8) + "…");
        setTimeout(() => { if (!state.names.get(uid)?.then && state.names.get(uid)?.endsWith("…")) state.names.delete(uid); }, 10000);
      }));
    }
    return uid.slice(0, 8) + "…";
  }

  // ---- chats and messages --------------------------------------------
  const directChat = (a, b) => (a < b ? `d:${a}:${b}` : `d:${b}:${a}`);
  function peerOf(chat) {
    if (!chat.startsWith("d:")) return null;
    const [, a, b] = chat.split(":");
    return a === state.me.id ? b : a;
  }
  const toOf = (chat) => (chat.startsWith("g:") ? "group:" + chat.slice(2) : "user:" + peerOf(chat));

  function summary(chat) {
    let s = state.chats.get(chat);
    if (!s) {
      s = { chat, kind: chat.startsWith("g:") ? "group" : "direct", title: "", last_seq: 0, read_seq: 0, unread: 0, last_message: null };
      state.chats.set(chat, s);
    }
    if (!s.title && s.kind === "direct") s.title = nameOf(peerOf(chat));
    return s;
  }
  function msgsOf(chat) {
    if (!state.msgs.has(chat)) state.msgs.set(chat, new Map());
    return state.msgs.get(chat);
  }
  const isChange = (m) => !!m.change;

  // addMessages merges messages of one chat. History pages come with the
  // changes (edits, deletions, reactions) already applied to their targets,
  // so a change is applied here only to a target held from before; one whose
  // target arrives in the same batch is already part of it.
  function addMessages(chat, list, { live = false } = {}) {
    const held = msgsOf(chat);
    const before = new Set(held.keys());
    const s = summary(chat);
    for (const m of list) {
      const fresh = !held.has(m.seq);
      if (!isChange(m) || fresh) held.set(m.seq, m);
      if (m.cmid && m.from === state.me.id) { settle(m.cmid); state.acked.delete(m.cmid); }
      if (isChange(m) && fresh && before.has(m.change.seq)) applyChange(chat, m);
      if (m.seq > s.last_seq) {
        s.last_seq = m.seq;
        s.last_message = m;
        if (live && m.from !== state.me.id) s.unread += 1;
      }
      if (m.from === state.me.id) s.read_seq = Math.max(s.read_seq, m.seq);
    }
    if (list.length) s.unread = Math.max(0, Math.min(s.unread, s.last_seq - s.read_seq));
  }

  function applyChange(chat, m) {
    const target = msgsOf(chat).get(m.change.seq);
    if (!target) return;
    switch (m.change.kind) {
      case "edit":
        if (!target.deleted) { target.body = m.body; target.edited_at = m.sent_at; }
        break;
      case "delete":
        target.deleted = true; target.body = null; target.reactions = [];
        break;
      case "react":
      case "unreact":
        // Reactions are idempotent sets on the server, which a count cannot
        // follow (a repeated react changes nothing): read the target back.
        refetch(chat, m.change.seq);
        break;
    }
  }

  async function refetch(chat, seq) {
    const page = await rest("GET", `/v1/chats/${encodeURIComponent(chat)}/messages?after=${seq - 1}&limit=1`);
    for (const m of page.messages) if (m.seq === seq) msgsOf(chat).set(seq, m);
    render();
  }

  // ---- sending ----------------------------------------------------------
  // Every send is kept (in localStorage) until the server acknowledged it,
  // and published again with the same cmid after each reconnect: the server
  // deduplicates by cmid, so a retry is never a second message.
  function send(chat, fields) {
    const env = { to: toOf(chat), cmid: newCmid(), ...fields };
    state.outbox.push({ cmid: env.cmid, chat, env });
    store.save("outbox", state.outbox);
    publishSend(env);
    render();
  }
  function publishSend(env) {
    if (!mq || !mq.connected) return; // sent on the next connect
    mq.publish(`users/${state.me.id}/send`, JSON.stringify(env), { qos: 1 }, (err) => {
      if (!err) {
        // Stored: never sent again. Shown as pending until our own copy
        // (with its seq) comes back on the inbox.
        const o = state.outbox.find((x) => x.cmid === env.cmid);
        if (o && o.env.body !== undefined && !o.env.edit) state.acked.set(o.cmid, o);
        return settle(env.cmid);
      }
      // A v5 PUBACK refusal: the error event that comes with it says why.
      if (err.code !== undefined && err.code < 0x80) return;
      if (err.code === 0x89 || err.code === 0x97 || err.code === 0x80) return; // busy: retried on reconnect
      if (err.code) fail(env.cmid, err.message);
    });
  }
  function settle(cmid) {
    const n = state.outbox.length;
    state.outbox = state.outbox.filter((o) => o.cmid !== cmid);
    if (state.outbox.length !== n) store.save("outbox", state.outbox);
  }
  function fail(cmid, why) {
    const o = state.outbox.find((x) => x.cmid === cmid);
    if (!o) return;
    settle(cmid);
    if (!o.env.body || o.env.edit) toast(why); // a change: nothing to mark
    else state.failed.set(cmid, { ...o, why });
    render();
  }

  // ---- MQTT ------------------------------------------------------------
  async function wsURL() {
    if (params.get("ws")) return params.get("ws");
    const secure = location.protocol === "https:";
    try {
      const d = await rest("GET", "/v1/discovery", undefined, { auth: false });
      const u = new URL(d.node.ws);
      // A node that was not given a public address advertises its own
      // host name, which the browser may not resolve; it reached this page
      // through location.hostname, and the WebSocket listener is on the
      // same host when the REST listener is.
      if (d.node.http && new URL(d.node.http).hostname === u.hostname) u.hostname = location.hostname;
      if (secure) u.protocol = "wss:";
      return u.toString();
    } catch {
      return `${secure ? "wss" : "ws"}://${location.hostname}:8083/mqtt`;
    }
  }

  async function connect() {
    clearTimeout(reconnectTimer);
    if (!state.me) return;
    setConn("connecting");
    let url, token;
    try {
      [url, token] = await Promise.all([wsURL(), freshToken()]);
    } catch (e) {
      return scheduleReconnect();
    }
    const me = state.me.id;
    // Our own reconnects (reconnectPeriod 0), so each one can use a fresh
    // access token: the server closes a connection when its token expires.
    const client = mqtt.connect(url, {
      protocolVersion: 5,
      clientId: `${me}/${store.device}`,
      username: me,
      password: token,
      clean: false,
      properties: { sessionExpiryInterval: 3600 },
      keepalive: 30,
      reconnectPeriod: 0,
      connectTimeout: 10000,
      will: { topic: `presence/${me}`, payload: "offline", qos: 1, retain: true },
    });
    mq = client;
    client.on("connect", () => {
      if (client !== mq) return;
      backoff = 500;
      client.subscribe([`users/${me}/inbox`, `users/${me}/events`], { qos: 1 }, () => {
        setConn("online");
        state.presence = null;
        watchPresence();
        syncing = syncing.then(sync).catch((e) => console.warn("sync", e));
        for (const o of state.outbox) publishSend(o.env);
      });
    });
    client.on("message", (topic, payload) => onMessage(topic, payload.toString()));
    client.on("error", (e) => {
      console.warn("mqtt", e.message);
      // CONNACK "bad username or password": the token expired or its
      // session was revoked. A refresh tells which (and signs out if revoked).
      if (e.code === 0x86 && client === mq) refreshTokens(true).catch(() => {});
    });
    client.on("close", () => {
      if (client !== mq) return;
      setConn("offline");
      client.end(true);
      scheduleReconnect();
    });
  }
  function scheduleReconnect() {
    if (!state.me) return;
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 10000);
  }
  function setConn(s) {
    $("conn-state").dataset.state = s;
    $("conn-state").textContent = s;
  }

  function onMessage(topic, text) {
    let m;
    try { m = JSON.parse(text); } catch { return; }
    const me = state.me.id;
    if (topic === `users/${me}/inbox`) {
      // A chat new to us: the chat list tells its title and whether it is a
      // message request.
      if (!state.chats.has(m.chat)) syncing = syncing.then(sync).catch((e) => console.warn("sync", e));
      addMessages(m.chat, [m], { live: true });
      // A presence subscription refused before the two shared a chat may
      // be allowed now.
      if (m.chat === state.open && !state.presence) watchPresence();
      if (m.from !== me && state.typing.get(m.chat)?.user === m.from) state.typing.delete(m.chat);
      markRead();
    } else if (topic === `users/${me}/events`) {
      onEvent(m);
    } else if (topic.startsWith("presence/")) {
      state.presenceView = { topic, ...m };
    }
    render();
  }

  function onEvent(e) {
    switch (e.type) {
      case "receipt":
        noteCursor(e.chat, e.user, e.delivered_seq, e.read_seq);
        break;
      case "receipts":
        for (const r of e.receipts || []) noteCursor(e.chat, r.user, r.delivered_seq, r.read_seq);
        break;
      case "typing":
        state.typing.set(e.chat, { user: e.user, until: Date.now() + TYPING_SHOWN });
        setTimeout(render, TYPING_SHOWN + 50);
        break;
      case "sent": // a retry of a message stored before: fetch what we missed
        settle(e.cmid);
        syncing = syncing.then(() => pageForward(e.chat)).then(() => { state.acked.delete(e.cmid); render(); }).catch(() => {});
        break;
      case "error":
        if (e.cmid) fail(e.cmid, e.message);
        else if (e.op_id || e.request_id) toast(e.message);
        break;
      case "group_op":
        if (!e.ok) toast(e.message);
        else if (e.op === "create" && e.group) {
          summary(e.group.chat).title = e.group.name;
          state.members.set(e.group.chat, e.group.members.map((x) => x.user_id));
          openChat(e.group.chat);
        }
        break;
      case "group":
        if (e.group_id) {
          const chat = "g:" + e.group_id;
          if (e.name) summary(chat).title = e.name;
          state.members.delete(chat); // read again when shown
          syncing = syncing.then(sync).catch(() => {});
        }
        break;
    }
  }

  function noteCursor(chat, uid, d, r) {
    if (uid === state.me.id) {
      const s = summary(chat);
      if (r) { s.read_seq = Math.max(s.read_seq, r); s.unread = Math.max(0, s.last_seq - s.read_seq); }
      return;
    }
    const c = (state.cursors[chat] ||= {});
    const u = (c[uid] ||= { d: 0, r: 0 });
    u.d = Math.max(u.d, d || 0, r || 0);
    u.r = Math.max(u.r, r || 0);
    store.save("cursors", state.cursors);
  }

  // markRead moves our read cursor to the end of the open chat while the
  // page is visible.
  let readSent = new Map();
  function markRead() {
    const chat = state.open;
    if (!chat || document.visibilityState !== "visible" || !mq || !mq.connected) return;
    const s = summary(chat);
    if (s.last_seq === 0 || s.read_seq >= s.last_seq || (readSent.get(chat) || 0) >= s.last_seq) return;
    readSent.set(chat, s.last_seq);
    const seq = s.last_seq;
    mq.publish(`users/${state.me.id}/receipts`, JSON.stringify({ chat, read_seq: seq }), { qos: 1 }, (err) => {
      if (err) { readSent.delete(chat); return; }
      s.read_seq = Math.max(s.read_seq, seq);
      s.unread = Math.max(0, s.last_seq - s.read_seq);
      render();
    });
  }
  document.addEventListener("visibilitychange", markRead);

  let lastTyping = 0;
  function sendTyping() {
    if (!state.open || !mq || !mq.connected || Date.now() - lastTyping < TYPING_EVERY) return;
    lastTyping = Date.now();
    mq.publish(`users/${state.me.id}/typing`, JSON.stringify({ chat: state.open }), { qos: 0 });
  }

  // watchPresence follows the open direct chat's other user. The server
  // refuses the subscription until the two share a chat; it is asked again
  // when a message arrives.
  function watchPresence() {
    const peer = state.open && peerOf(state.open);
    const topic = peer && peer !== state.me.id ? "presence/" + peer : null;
    if (!mq || !mq.connected || topic === state.presence) return;
    if (state.presence) mq.unsubscribe(state.presence);
    state.presence = topic;
    state.presenceView = null;
    if (topic) {
      mq.subscribe(topic, { qos: 1 }, (err, granted) => {
        if (err || !granted || !granted[0] || granted[0].qos >= 0x80) {
          if (state.presence === topic) state.presence = null;
        }
      });
    }
  }

  // ---- sync -------------------------------------------------------------
  // sync reads what changed in the chat list since the last cursor (all of
  // it the first time), then pages the open chat forward.
  async function sync() {
    let after = "";
    const since = state.syncCursor;
    for (;;) {
      const q = new URLSearchParams({ limit: "200" });
      if (since) q.set("changed_since", since);
      if (after) q.set("after", after);
      const list = await rest("GET", "/v1/chats?" + q);
      for (const c of list.chats) {
        const s = summary(c.chat);
        Object.assign(s, c, { title: c.title || s.title });
        // A 1:1 chat's title is the other user's name.
        if (c.kind === "direct" && c.title) state.names.set(peerOf(c.chat), c.title);
        s.unread = c.unread;
      }
      if (!after) state.nextCursor = list.sync_cursor;
      if (!list.next) break;
      after = list.next;
    }
    state.syncCursor = state.nextCursor;
    if (state.open) await pageForward(state.open);
    render();
    markRead();
  }

  // pageForward fetches everything after the newest message held for chat.
  async function pageForward(chat) {
    const held = msgsOf(chat);
    if (held.size === 0) return loadNewest(chat);
    let after = Math.max(...held.keys());
    for (;;) {
      const page = await rest("GET", `/v1/chats/${encodeURIComponent(chat)}/messages?after=${after}&limit=${PAGE}`);
      addMessages(chat, page.messages);
      if (page.next == null) break;
      after = page.next;
    }
    render();
  }
  async function loadNewest(chat) {
    try {
      const page = await rest("GET", `/v1/chats/${encodeURIComponent(chat)}/messages?limit=${PAGE}`);
      addMessages(chat, page.messages);
    } catch (e) {
      if (e.status !== 403 && e.status !== 404) throw e; // a new chat: nothing yet
    }
    render();
  }
  async function loadOlder() {
    const chat = state.open;
    const held = msgsOf(chat);
    const oldest = Math.min(...held.keys());
    const sc = $("scroller");
    const fromBottom = sc.scrollHeight - sc.scrollTop;
    const page = await rest("GET", `/v1/chats/${encodeURIComponent(chat)}/messages?before=${oldest}&limit=${PAGE}`);
    addMessages(chat, page.messages);
    render();
    sc.scrollTop = sc.scrollHeight - fromBottom;
  }

  async function openChat(chat) {
    state.open = chat;
    // The open chat is in the address, so a reload comes back to it.
    history.replaceState(null, "", "#" + encodeURIComponent(chat));
    state.editing = null;
    summary(chat);
    render(true);
    watchPresence();
    if (chat.startsWith("g:") && !state.members.has(chat)) {
      rest("GET", "/v1/groups/" + chat.slice(2)).then((g) => {
        state.members.set(chat, g.members.map((x) => x.user_id));
        render();
      }, () => {});
    }
    if (msgsOf(chat).size === 0) await loadNewest(chat);
    else await pageForward(chat);
    render(true);
    markRead();
  }

  // ---- rendering ----------------------------------------------------------
  function el(tag, props = {}, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "dataset") Object.assign(e.dataset, v);
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null && v !== false) e[k] = v;
    }
    for (const c of kids) if (c != null) e.append(c);
    return e;
  }

  function describe(m) {
    if (m.deleted) return "message deleted";
    if (m.type === "e2e") return "🔒 encrypted message";
    if (m.type === "system" && m.body && typeof m.body === "object") {
      const b = m.body, by = nameOf(b.by || m.from), who = (b.users || []).map(nameOf).join(", ");
      return {
        created: `${by} created the group${b.name ? " " + b.name : ""}`,
        renamed: `${by} renamed the group to ${b.name}`,
        members_added: `${by} added ${who}`,
        member_removed: `${by} removed ${who}`,
        member_left: `${who || by} left`,
        role_changed: `${by} made ${who} ${b.role}`,
      }[b.op] || `${by}: ${b.op}`;
    }
    if (m.change) {
      return { edit: "edited a message", delete: "deleted a message", react: `reacted ${m.change.emoji}`, unreact: "removed a reaction" }[m.change.kind] || m.type;
    }
    return typeof m.body === "string" ? m.body : JSON.stringify(m.body);
  }

  // ticks of one of our messages: ✓ stored, ✓✓ delivered to (every) other
  // member, blue ✓✓ read by them.
  function ticks(chat, seq) {
    const others = chat.startsWith("g:") ? (state.members.get(chat) || []).filter((u) => u !== state.me.id) : [peerOf(chat)];
    const c = state.cursors[chat] || {};
    if (others.length === 0 || others[0] === state.me.id) return ["sent", "✓"];
    if (others.every((u) => c[u] && c[u].r >= seq)) return ["read", "✓✓"];
    if (others.every((u) => c[u] && c[u].d >= seq)) return ["delivered", "✓✓"];
    return ["sent", "✓"];
  }

  function renderMessage(chat, m) {
    const mine = m.from === state.me.id;
    const system = m.type === "system";
    const li = el("li", { className: "msg" + (mine ? " mine" : "") + (system ? " system" : "") + (m.deleted ? " deleted" : ""), dataset: { seq: String(m.seq) } });
    if (!mine && !system && chat.startsWith("g:")) li.append(el("div", { className: "from", textContent: nameOf(m.from) }));
    if (m.reply_to_preview) {
      const p = m.reply_to_preview;
      li.append(el("div", { className: "reply-preview", textContent: `${nameOf(p.from)}: ${p.excerpt ?? "message deleted"}` }));
    }
    li.append(el("div", { className: "body", textContent: describe(m) }));
    if (system) return li;
    const reactions = el("div", { className: "reactions" });
    for (const r of m.reactions || []) {
      reactions.append(el("button", {
        type: "button", className: "reaction" + (r.mine ? " mine" : ""), dataset: { emoji: r.emoji },
        textContent: `${r.emoji} ${r.count}`, onclick: () => send(chat, { [r.mine ? "unreact" : "react"]: { seq: m.seq, emoji: r.emoji } }),
      }));
    }
    li.append(reactions);
    const meta = el("div", { className: "meta" });
    const actions = el("span", { className: "actions" });
    if (!m.deleted) {
      actions.append(el("button", { type: "button", className: "act-react", textContent: "☺", title: "React", onclick: (ev) => showPicker(ev, chat, m) }));
      if (mine && (m.type === "text" || !m.type) && typeof m.body === "string") {
        actions.append(el("button", { type: "button", className: "act-edit", textContent: "Edit", onclick: () => startEdit(m) }));
      }
      if (mine) actions.append(el("button", { type: "button", className: "act-delete", textContent: "Delete", onclick: () => send(chat, { delete: { seq: m.seq } }) }));
    }
    meta.append(actions);
    if (m.edited_at && !m.deleted) meta.append(el("span", { className: "edited", textContent: "edited" }));
    meta.append(el("time", { textContent: new Date(m.sent_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }), title: m.sent_at }));
    if (mine) {
      const [st, txt] = ticks(chat, m.seq);
      meta.append(el("span", { className: "ticks", dataset: { state: st }, textContent: txt }));
    }
    li.append(meta);
    return li;
  }

  function renderPending(o, failed) {
    const li = el("li", { className: "msg mine pending" + (failed ? " failed" : ""), dataset: { cmid: o.cmid } },
      el("div", { className: "body", textContent: typeof o.env.body === "string" ? o.env.body : JSON.stringify(o.env.body) }),
      el("div", { className: "meta" },
        failed ? el("span", { textContent: failed.why + " " }) : null,
        failed ? el("button", { type: "button", textContent: "Dismiss", onclick: () => { state.failed.delete(o.cmid); render(); } }) : null,
        el("span", { className: "ticks", dataset: { state: failed ? "failed" : "pending" }, textContent: failed ? "!" : "◷" })));
    return li;
  }

  function showPicker(ev, chat, m) {
    const p = $("picker");
    p.replaceChildren(...EMOJI.map((e) => el("button", {
      type: "button", dataset: { emoji: e }, textContent: e,
      onclick: () => { p.hidden = true; const had = (m.reactions || []).find((r) => r.emoji === e && r.mine); send(chat, { [had ? "unreact" : "react"]: { seq: m.seq, emoji: e } }); },
    })));
    const r = ev.currentTarget.getBoundingClientRect();
    p.style.left = Math.max(4, r.left - 100) + "px";
    p.style.top = Math.max(4, r.top - 44) + "px";
    p.hidden = false;
    ev.stopPropagation();
  }
  document.addEventListener("click", (ev) => { if (!$("picker").contains(ev.target)) $("picker").hidden = true; });

  function startEdit(m) {
    state.editing = m.seq;
    $("composer-input").value = m.body;
    $("composer-input").focus();
    render();
  }

  function render(toBottom) {
    if (!state.me) return;
    $("me").textContent = state.me.username;
    // chat list, newest activity first
    const list = [...state.chats.values()].filter((s) => s.last_seq > 0 || s.chat === state.open)
      .sort((a, b) => (b.last_message?.sent_at || "").localeCompare(a.last_message?.sent_at || ""));
    $("chat-list").replaceChildren(...list.map((s) => {
      const t = state.typing.get(s.chat);
      const preview = t && t.until > Date.now() ? "typing…" : s.last_message ? describe(s.last_message) : "";
      return el("li", { className: s.chat === state.open ? "active" : "", dataset: { chat: s.chat }, onclick: () => openChat(s.chat) },
        el("span", { className: "title", textContent: s.title || (s.kind === "direct" ? nameOf(peerOf(s.chat)) : "group") }),
        s.request ? el("span", { className: "badge", textContent: "request" }) : null,
        el("span", { className: "unread", textContent: s.unread > 0 ? String(s.unread) : "" }),
        el("span", { className: "preview", textContent: preview }));
    }));

    const chat = state.open;
    $("composer").hidden = !chat;
    $("editing-banner").hidden = state.editing == null;
    if (!chat) return;
    const s = summary(chat);
    $("chat-title").textContent = s.title || nameOf(peerOf(chat));
    $("accept-btn").hidden = !s.request;
    const pv = state.presenceView;
    const pres = $("chat-presence");
    if (pv && state.presence && pv.topic === state.presence) {
      pres.dataset.status = pv.status;
      pres.textContent = pv.status === "online" ? "online" : pv.last_seen ? "last seen " + new Date(pv.last_seen).toLocaleString() : "offline";
    } else {
      pres.dataset.status = "";
      pres.textContent = "";
    }
    const t = state.typing.get(chat);
    $("chat-typing").textContent = t && t.until > Date.now() ? `${nameOf(t.user)} is typing…` : "";

    const held = msgsOf(chat);
    const seqs = [...held.keys()].sort((a, b) => a - b);
    $("older-btn").hidden = seqs.length === 0 || seqs[0] <= 1;
    const sc = $("scroller");
    const atBottom = toBottom || sc.scrollHeight - sc.scrollTop - sc.clientHeight < 40;
    const items = seqs.map((q) => held.get(q)).filter((m) => !isChange(m)).map((m) => renderMessage(chat, m));
    for (const o of [...state.outbox, ...state.acked.values()]) if (o.chat === chat && o.env.body !== undefined && !o.env.edit) items.push(renderPending(o));
    for (const f of state.failed.values()) if (f.chat === chat) items.push(renderPending(f, f));
    $("messages").replaceChildren(...items);
    if (atBottom) sc.scrollTop = sc.scrollHeight;
  }

  let toastTimer;
  function toast(msg) {
    $("toast").textContent = msg;
    $("toast").hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => ($("toast").hidden = true), 5000);
  }

  // ---- sign in / out --------------------------------------------------------
  async function authenticate(kind) {
    const username = $("auth-username").value.trim().toLowerCase();
    const password = $("auth-password").value;
    $("auth-error").textContent = "";
    try {
      const t = await rest("POST", "/v1/auth/" + kind, { username, password }, { auth: false });
      keepTokens(t, username);
      start();
    } catch (e) {
      $("auth-error").textContent = e.message;
    }
  }

  function start() {
    const a = store.auth;
    if (!a) {
      $("auth-view").hidden = false;
      $("chat-view").hidden = true;
      return;
    }
    state.me = { id: a.user_id, username: a.username };
    state.outbox = store.load("outbox", []);
    state.cursors = store.load("cursors", {});
    // The chat list is read in full on every start: summaries are not kept
    // across reloads, only the cursor for the next delta.
    state.syncCursor = null;
    $("auth-view").hidden = true;
    $("chat-view").hidden = false;
    render();
    connect();
    const chat = decodeURIComponent(location.hash.slice(1));
    if (/^(d|g):/.test(chat)) openChat(chat).catch((e) => toast(e.message));
  }

  function signOut(why) {
    const a = store.auth;
    if (a) fetch("/v1/auth/logout", { method: "POST", headers: { Authorization: "Bearer " + a.access_token } }).catch(() => {});
    store.auth = null;
    state.me = null;
    state.chats.clear();
    state.msgs.clear();
    state.open = null;
    clearTimeout(reconnectTimer);
    if (mq) { const c = mq; mq = null; c.end(true); }
    if (why) $("auth-error").textContent = why;
    start();
  }

  // ---- wiring ---------------------------------------------------------------
  $("auth-form").addEventListener("submit", (e) => { e.preventDefault(); authenticate("login"); });
  $("register-btn").addEventListener("click", () => {
    if ($("auth-form").reportValidity()) authenticate("register");
  });
  $("logout-btn").addEventListener("click", () => signOut());
  $("older-btn").addEventListener("click", () => loadOlder().catch((e) => toast(e.message)));

  $("new-chat-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = $("new-chat-username").value.trim().toLowerCase();
    if (!name) return;
    try {
      const u = await rest("GET", "/v1/users?username=" + encodeURIComponent(name));
      state.names.set(u.user_id, u.username);
      $("new-chat-username").value = "";
      openChat(directChat(state.me.id, u.user_id));
    } catch (err) {
      toast(err.status === 404 ? `No user named ${name}` : err.message);
    }
  });

  $("new-group-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = $("new-group-name").value.trim();
    if (!name || !mq || !mq.connected) return;
    const names = $("new-group-members").value.split(",").map((s) => s.trim().toLowerCase()).filter(Boolean);
    try {
      const ids = [];
      for (const n of names) ids.push((await rest("GET", "/v1/users?username=" + encodeURIComponent(n))).user_id);
      // A group operation over MQTT: the result comes back as a group_op
      // event with this op_id, and a retry with it makes no second group.
      mq.publish(`users/${state.me.id}/groups`, JSON.stringify({ op_id: newCmid(), op: "create", name, user_ids: ids }), { qos: 1 });
      $("new-group-name").value = "";
      $("new-group-members").value = "";
    } catch (err) {
      toast(err.status === 404 ? "No such user" : err.message);
    }
  });

  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("composer-input").value;
    if (!state.open || !text.trim()) return;
    if (state.editing != null) send(state.open, { edit: { seq: state.editing }, body: text });
    else {
      send(state.open, { body: text });
      summary(state.open).request = false; // replying accepts a request
    }
    state.editing = null;
    $("composer-input").value = "";
    render(true);
  });
  $("composer-input").addEventListener("input", sendTyping);
  // A message request (a first message from someone sharing no chat with
  // us) hides presence and typing both ways until accepted; replying
  // accepts it too.
  $("accept-btn").addEventListener("click", async () => {
    const chat = state.open;
    try {
      await rest("POST", `/v1/chats/${encodeURIComponent(chat)}/accept`);
      summary(chat).request = false;
      state.presence = null;
      watchPresence();
      render();
    } catch (e) {
      toast(e.message);
    }
  });
  $("cancel-edit").addEventListener("click", () => { state.editing = null; $("composer-input").value = ""; render(); });

  // Typing notices expire without an event.
  setInterval(() => {
    let changed = false;
    for (const [chat, t] of state.typing) if (t.until <= Date.now()) { state.typing.delete(chat); changed = true; }
    if (changed) render();
  }, 1000);

  start();
})();
