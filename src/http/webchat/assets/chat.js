// The chat beside the player (docs/web-chat.md). Plain JavaScript, no framework, no
// build step; served by Foyer, loads nothing from anywhere else. The session lives in
// this page's memory only and goes out as a bearer: in a cross-site iframe third-party
// cookies are blocked, and a session kept nowhere else cannot leak from storage.
"use strict";

// The viewer token is read and taken out of the address bar before anything else runs,
// so it is neither in the history nor in what a reload or a copied link carries.
const TOKEN = (() => {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  if (location.hash) {
    history.replaceState(null, "", location.pathname + location.search);
  }
  return token;
})();

// Every sentence the page shows, in one place.
const WORDS = {
  connecting: "Connecting…",
  connected: "",
  reconnecting: (s) => `Connection lost; trying again in ${s} s.`,
  startFailed: (why) => `Could not start the chat: ${why}`,
  unavailable: (status) => `the chat service is not available (HTTP ${status}). Try again in a moment.`,
  unreachable: "the chat service cannot be reached. Check your connection and try again.",
  noCode: "type the claim code from your ticket's email.",
  wrongPage: "this page's address does not name a show.",
  sessionEnded: "Your session has ended. Open the chat again from the watch page.",
  closed: (why) => `The chat has closed for you: ${why}`,
  signedInAs: (name) => `You are writing as ${name}.`,
  publicArchive: 'This chat will be public: after the show, anyone can read it and replay it beside the recording. Write "!foyer anonymous" to appear there as "a fan".',
  counter: (n, max) => `${n} / ${max}`,
  counterOver: (n, max) => `${n - max} characters over the limit of ${max}.`,
  slowMode: (s) => `Slow mode: you can send again in ${s} s.`,
  timedOut: (s) => `You are timed out: you can send again in ${s} s.`,
  roomBusy: (s) => `Many fans are coming in: you can send again in ${s} s.`,
  slowModeOver: "You can send again.",
  notSent: (why) => `Not sent: ${why}`,
  notSentNetwork: "Not sent: the connection failed. Press Send to try again.",
  deleted: "Message deleted.",
  edited: "(edited)",
  deleteLabel: "Delete",
  deleteFailed: (why) => `Could not delete: ${why}`,
  reportLabel: "Report",
  reportReason: "Why are you reporting this message?",
  reportSend: "Send report",
  reportCancel: "Cancel",
  reportSent: "Reported. The moderators will look at it.",
  reportFailed: (why) => `Could not report: ${why}`,
  announce: (name, body) => `${name}: ${body}`,
  announceMore: (n) => `and ${n} more messages`,
  phase: {
    scheduled: (opensIn) => (opensIn ? `The chat opens ${opensIn}.` : "The chat is not open yet."),
    open: "Open",
    live: "Live",
    ended: "The show has ended.",
    archived: "Archived: the chat is read only.",
    cancelled: "The show is cancelled.",
  },
  composeClosed: {
    scheduled: "You can write once the chat opens.",
    archived: "The chat is archived; nothing more can be written.",
    cancelled: "The show is cancelled; nothing more can be written.",
  },
  badges: { host: "Host", moderator: "Moderator", web: "Web", bot: "Bot" },
  inHours: (h, m) => (m ? `in ${h} h ${m} min` : `in ${h} h`),
  inMinutes: (m) => `in ${m} min`,
  inDays: (d, h) => (h ? `in ${d} d ${h} h` : `in ${d} d`),
  soon: "in less than a minute",
  replaying: "Replay: the chat as it was at this moment of the recording.",
  replayFailed: (why) => `Could not load the chat's replay: ${why}`,
};

const DEFAULT_MAX_LENGTH = 500;
const MAX_SHOWN = 500; // messages kept in the page; older ones leave the list
const BACKOFF_FIRST_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const REPLAY_PHASES = ["ended", "archived"]; // the page follows the player's time then
const REPLAY_REFRESH_MS = 5000; // a new message after the show reloads the replay 5-10 s later

const state = {
  reservationId: decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || ""),
  session: null,
  me: null,
  maxLength: DEFAULT_MAX_LENGTH,
  lastEventId: null,
  caughtUp: false,
  closed: false,
  phase: null,
  opensAt: null,
  pending: null, // {txn_id, body}: the message being sent, its txn_id kept for retries
  ownEvents: new Set(),
  slowUntil: 0,
  playerMs: null, // the player's time, from an allowed page's `foyer.time`
  replay: null, // {lines, from, to}: the replay, and which of its lines the list shows
  replayLoading: false,
  replayRetryAt: 0,
};

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function show(id, visible) {
  $(id).hidden = !visible;
}

function api(path) {
  // Relative to the page (`/chat/{id}` → `/chat/v1/…`), so a proxy's path prefix holds.
  return new URL(path, location.href).toString();
}

function randomId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function characters(text) {
  return Array.from(text).length; // Unicode characters, as Foyer counts them
}

// A refusal's JSON body (`{"errcode", "error"}`, `retry_after_ms` on a 429), or `{}`.
async function refusal(response) {
  try {
    const body = await response.json();
    if (body && typeof body === "object") {
      return {
        errcode: typeof body.errcode === "string" ? body.errcode : null,
        error: typeof body.error === "string" && body.error ? body.error : null,
        retryAfterMs: Number(body.retry_after_ms),
      };
    }
  } catch (_) {
    // not JSON
  }
  return { errcode: null, error: null, retryAfterMs: NaN };
}

function showError(text, canRetry) {
  $("error").textContent = text;
  show("error", true);
  show("retry-line", Boolean(canRetry));
}

function clearError() {
  $("error").textContent = "";
  show("error", false);
  show("retry-line", false);
}

// ---- Getting in -----------------------------------------------------------------------

async function startSession(request) {
  clearError();
  $("connection").textContent = WORDS.connecting;
  let response;
  try {
    response = await fetch(api("v1/session"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (_) {
    $("connection").textContent = "";
    showError(WORDS.startFailed(WORDS.unreachable), true);
    return false;
  }
  if (!response.ok) {
    $("connection").textContent = "";
    const { error } = await refusal(response);
    const refused = response.status === 401 || response.status === 403 || response.status === 429;
    const why = refused && error ? error : WORDS.unavailable(response.status);
    showError(WORDS.startFailed(why), !refused);
    return false;
  }
  let answer;
  try {
    answer = await response.json();
  } catch (_) {
    showError(WORDS.startFailed(WORDS.unavailable(response.status)), true);
    return false;
  }
  if (!answer || typeof answer.session !== "string") {
    showError(WORDS.startFailed(WORDS.unavailable(response.status)), true);
    return false;
  }
  state.session = answer.session;
  state.me = answer.me || {};
  if (Number.isInteger(state.me.max_length) && state.me.max_length > 0) {
    state.maxLength = state.me.max_length;
  }
  const expires = Date.parse(answer.expires_at);
  if (!Number.isNaN(expires)) endAt(expires);
  enterRoom();
  return true;
}

// Ends the session at `time`. A timer longer than 2^31 - 1 ms fires at once, so a far
// expiry waits in steps.
function endAt(time) {
  const left = time - Date.now();
  if (left <= 0) endSession(WORDS.sessionEnded);
  else setTimeout(() => endAt(time), Math.min(left, 2 ** 31 - 1));
}

function claimRequest() {
  const code = $("claim-code").value.trim().toUpperCase();
  if (!code) {
    showError(WORDS.startFailed(WORDS.noCode), false);
    $("claim-code").focus();
    return null;
  }
  return { reservation_id: state.reservationId, claim_code: code };
}

function endSession(text) {
  state.closed = true;
  state.session = null;
  if (state.abort) state.abort.abort();
  $("connection").textContent = "";
  showError(text, false);
  setComposeOpen(false, null);
}

// ---- The room ---------------------------------------------------------------------------

function enterRoom() {
  show("claim", false);
  show("room", true);
  show("compose", true);
  $("me").textContent = WORDS.signedInAs(state.me.name || "");
  if (state.me.public_archive === true) {
    $("public-archive").textContent = WORDS.publicArchive;
    show("public-archive", true);
  }
  updateCounter();
  readStream();
}

function atBottom(list) {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
}

function badge(role) {
  const label = WORDS.badges[role];
  return label ? el("span", `badge badge-${role}`, label) : null;
}

function timeOf(ts) {
  const node = el("time");
  if (typeof ts === "number") {
    const date = new Date(ts);
    node.dateTime = date.toISOString();
    node.textContent = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  return node;
}

function findMessage(eventId) {
  for (const item of $("messages").children) {
    if (item.dataset.eventId === eventId) return item;
  }
  return null;
}

function addMessage(data, kind) {
  if (!data || typeof data.event_id !== "string") return;
  const list = $("messages");
  if (findMessage(data.event_id)) return;
  const follow = atBottom(list);
  const sender = data.sender || {};
  const item = el("li", kind === "notice" ? "message notice" : "message");
  item.dataset.eventId = data.event_id;
  item.dataset.key = String(sender.key || "");
  const meta = el("div", "meta");
  meta.append(el("span", "name", String(sender.name || "")));
  const mark = badge(sender.role);
  if (mark) meta.append(mark);
  meta.append(timeOf(data.ts));
  item.append(meta, el("p", "body", String(data.body || "")));
  const own =
    state.ownEvents.has(data.event_id) || (state.me && state.me.key && sender.key === state.me.key);
  const actions = el("div", "actions");
  if (own) {
    const remove = el("button", "quiet", WORDS.deleteLabel);
    remove.type = "button";
    remove.addEventListener("click", () => deleteMessage(data.event_id, item));
    actions.append(remove);
  } else if (sender.role !== "bot") {
    const report = el("button", "quiet", WORDS.reportLabel);
    report.type = "button";
    report.addEventListener("click", () => openReport(data.event_id, item, report));
    actions.append(report);
  }
  if (actions.childElementCount) item.append(actions);
  list.append(item);
  while (list.childElementCount > MAX_SHOWN) list.firstElementChild.remove();
  if (follow) list.scrollTop = list.scrollHeight;
  if (state.caughtUp) announce(WORDS.announce(String(sender.name || ""), String(data.body || "")));
}

// Anyone may send an edit or a redaction naming any message; as Matrix clients do, an
// edit counts only from the message's sender, a redaction from its sender or a host.
function sentBy(item, data) {
  return Boolean(data.sender && data.sender.key && data.sender.key === item.dataset.key);
}

function editMessage(data) {
  const item = data && findMessage(data.event_id);
  if (!item || item.classList.contains("deleted") || !sentBy(item, data)) return;
  item.querySelector(".body").textContent = String(data.body || "");
  if (!item.querySelector(".edited")) item.querySelector(".meta").append(el("span", "edited", WORDS.edited));
}

function redactMessage(data, mine) {
  const item = data && findMessage(data.event_id);
  if (!item) return;
  const role = data.sender && data.sender.role;
  if (!mine && !sentBy(item, data) && !["host", "moderator", "bot"].includes(role)) return;
  item.classList.add("deleted");
  item.querySelector(".body").textContent = WORDS.deleted;
  const edited = item.querySelector(".edited");
  if (edited) edited.remove();
  for (const extra of item.querySelectorAll(".actions, .report")) extra.remove();
}

// The live region says new messages, a few at a time, so a busy room does not drown a
// screen reader.
const announcements = [];
let announceTimer = null;
function announce(text) {
  announcements.push(text);
  if (announceTimer) return;
  announceTimer = setTimeout(() => {
    announceTimer = null;
    const shown = announcements.splice(0, 3);
    const more = announcements.splice(0).length;
    const region = $("announcer");
    region.textContent = "";
    for (const line of shown) region.append(el("p", null, line));
    if (more) region.append(el("p", null, WORDS.announceMore(more)));
  }, 1000);
}

// ---- The phase --------------------------------------------------------------------------

function inWords(ms) {
  const minutes = Math.floor(ms / 60000);
  if (minutes < 1) return WORDS.soon;
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor((minutes % 1440) / 60);
  if (days) return WORDS.inDays(days, hours);
  if (hours) return WORDS.inHours(hours, minutes % 60);
  return WORDS.inMinutes(minutes);
}

function renderPhase() {
  const phase = state.phase;
  const words = WORDS.phase[phase];
  let text = "";
  if (phase === "scheduled") {
    const at = Date.parse(state.opensAt);
    text = words(Number.isNaN(at) ? null : inWords(at - Date.now()));
  } else if (typeof words === "string") {
    text = words;
  }
  $("phase").textContent = text;
  const closedWhy = WORDS.composeClosed[phase];
  setComposeOpen(!closedWhy && !state.closed, closedWhy || null);
}

function setPhase(data) {
  if (!data || typeof data.phase !== "string") return;
  const changed = state.phase !== null && state.phase !== data.phase;
  // A time heard during the show was the live player's, not the recording's: the replay
  // waits for the next one.
  if (changed && !REPLAY_PHASES.includes(state.phase)) state.playerMs = null;
  state.phase = data.phase;
  state.opensAt = data.opens_at || null;
  renderPhase();
  if (changed && $("phase").textContent) announce($("phase").textContent);
  if (!REPLAY_PHASES.includes(state.phase)) {
    if (state.replay) leaveReplay(); // a stream started again: the chat is live
  } else if (changed && state.replay) {
    loadReplay(); // archived: the same chat, now from the transcript
  } else {
    followPlayer();
  }
}
setInterval(() => {
  if (state.phase === "scheduled") renderPhase();
}, 30000);

// ---- Replay: after the show, the chat follows the player's time ---------------------------
// The watch page sends {"type": "foyer.time", "seconds": <float>} (on `timeupdate` and
// `seeked`); the list then shows the messages said up to that moment of the recording,
// and fewer when the viewer seeks back. Only the pages allowed to frame the chat
// (`webchat.allowed_origins`, named in the document) are heard.

function playerOrigins() {
  const meta = document.querySelector('meta[name="foyer-player-origins"]');
  return meta ? meta.content.split(" ").filter(Boolean) : [];
}

window.addEventListener("message", (event) => {
  if (!playerOrigins().includes(event.origin)) return;
  const data = event.data;
  if (!data || typeof data !== "object" || data.type !== "foyer.time") return;
  if (typeof data.seconds !== "number" || !Number.isFinite(data.seconds) || data.seconds < 0) return;
  state.playerMs = data.seconds * 1000;
  followPlayer();
});

function followPlayer() {
  if (state.playerMs === null || !state.session || !REPLAY_PHASES.includes(state.phase)) return;
  if (state.replay) renderReplay();
  else if (Date.now() >= state.replayRetryAt) loadReplay();
}

async function loadReplay() {
  if (state.replayLoading || !state.session) return;
  state.replayLoading = true;
  try {
    const response = await fetch(api("v1/replay"), {
      headers: { Authorization: `Bearer ${state.session}` },
      cache: "no-store",
      credentials: "omit",
    });
    if (!response.ok) {
      const { error } = await refusal(response);
      throw new Error(error || WORDS.unavailable(response.status));
    }
    const answer = await response.json();
    const lines = (Array.isArray(answer && answer.messages) ? answer.messages : []).filter(
      (line) => line && Number.isFinite(line.offset_ms),
    );
    // As the recording plays them: before the show first, then by offset (a stable sort
    // keeps the room's order among equal offsets). Shown up to the player's time, so the
    // lines shown are always the first ones.
    lines.sort((a, b) => Number(Boolean(b.pre_show)) - Number(Boolean(a.pre_show)) || a.offset_ms - b.offset_ms);
    enterReplay(lines);
  } catch (e) {
    state.replayRetryAt = Date.now() + REPLAY_REFRESH_MS;
    $("replay-note").textContent = WORDS.replayFailed(e instanceof Error && e.message ? e.message : WORDS.unreachable);
    show("replay-note", true);
  } finally {
    state.replayLoading = false;
  }
}

function enterReplay(lines) {
  if (!REPLAY_PHASES.includes(state.phase)) return;
  state.replay = { lines, from: 0, to: 0 };
  $("replay").textContent = "";
  $("replay-note").textContent = WORDS.replaying;
  show("replay-note", true);
  show("messages", false);
  show("replay", true);
  renderReplay();
}

function leaveReplay() {
  state.replay = null;
  $("replay").textContent = "";
  show("replay", false);
  show("replay-note", false);
  show("messages", true);
}

let replayRefresh = null;
// A message after the show (the room stays open until the archive) joins the replay. A
// while later, at a moment of its own, so that an audience's pages do not all ask at once.
function refreshReplaySoon() {
  if (!state.replay || replayRefresh) return;
  const wait = REPLAY_REFRESH_MS + Math.floor(Math.random() * REPLAY_REFRESH_MS);
  replayRefresh = setTimeout(() => {
    replayRefresh = null;
    if (state.replay) loadReplay();
  }, wait);
}

// How many lines are said by `ms`: those before the show always.
function linesUpTo(lines, ms) {
  let low = 0;
  let high = lines.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (lines[mid].pre_show || lines[mid].offset_ms <= ms) low = mid + 1;
    else high = mid;
  }
  return low;
}

function replayItem(line) {
  const item = el("li", "message");
  const meta = el("div", "meta");
  meta.append(el("span", "name", String(line.name || "")));
  meta.append(el("span", "offset", line.pre_show ? "" : clock(line.offset_ms)));
  item.append(meta, el("p", "body", String(line.body || "")));
  return item;
}

// An offset on the recording as a player shows it: 1:02:03, or 2:03.
function clock(ms) {
  const total = Math.floor(ms / 1000);
  const [h, m, s] = [Math.floor(total / 3600), Math.floor(total / 60) % 60, total % 60];
  const two = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
}

// Brings the list to the lines up to the player's time, the last MAX_SHOWN of them,
// adding and removing only what changed.
function renderReplay() {
  const replay = state.replay;
  const list = $("replay");
  const to = linesUpTo(replay.lines, state.playerMs);
  const from = Math.max(0, to - MAX_SHOWN);
  if (from === replay.from && to === replay.to) return;
  const follow = atBottom(list) || to < replay.to;
  if (to <= replay.from || from >= replay.to) {
    list.textContent = "";
    replay.from = from;
    replay.to = from;
  }
  for (; replay.to > to; replay.to--) list.lastElementChild.remove();
  for (; replay.from > from; replay.from--) list.prepend(replayItem(replay.lines[replay.from - 1]));
  for (; replay.to < to; replay.to++) list.append(replayItem(replay.lines[replay.to]));
  for (; replay.from < from; replay.from++) list.firstElementChild.remove();
  if (follow) list.scrollTop = list.scrollHeight;
}

// ---- Reading: Server-Sent Events over fetch (EventSource cannot send a bearer) --------------

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function readStream() {
  let backoff = BACKOFF_FIRST_MS;
  while (!state.closed && state.session) {
    const abort = new AbortController();
    state.abort = abort;
    const headers = { Authorization: `Bearer ${state.session}`, Accept: "text/event-stream" };
    if (state.lastEventId !== null) headers["Last-Event-ID"] = state.lastEventId;
    try {
      const response = await fetch(api("v1/stream"), {
        headers,
        cache: "no-store",
        credentials: "omit",
        signal: abort.signal,
      });
      if (response.status === 401 || response.status === 403) {
        const { error } = await refusal(response);
        endSession(error ? WORDS.closed(error) : WORDS.sessionEnded);
        return;
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      $("connection").textContent = WORDS.connected;
      state.caughtUp = false;
      await readEvents(response.body.getReader(), (event) => {
        backoff = BACKOFF_FIRST_MS;
        dispatch(event);
      });
    } catch (_) {
      // The loop below reconnects.
    }
    if (state.closed) return;
    const wait = backoff + Math.floor(Math.random() * 500);
    $("connection").textContent = WORDS.reconnecting(Math.ceil(wait / 1000));
    await sleep(wait);
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
  }
}

// Parses the text/event-stream format (HTML Living Standard, "Server-sent events") from a
// stream reader and calls `onEvent({type, data, id})` for each event.
async function readEvents(reader, onEvent) {
  const decoder = new TextDecoder("utf-8");
  let buffer = "";
  let first = true;
  let type = "";
  let data = [];
  let id = null;
  const line = (text) => {
    if (text === "") {
      if (id !== null) state.lastEventId = id;
      if (data.length) onEvent({ type: type || "message", data: data.join("\n"), id });
      type = "";
      data = [];
      id = null;
      return;
    }
    if (text.startsWith(":")) return; // a comment, e.g. a keep-alive
    const colon = text.indexOf(":");
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
    else if (field === "id" && !value.includes("\0")) id = value;
    // `retry` is left to the page's own backoff.
  };
  for (;;) {
    const { value, done } = await reader.read();
    buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
    if (first && buffer) {
      if (buffer.charCodeAt(0) === 0xfeff) buffer = buffer.slice(1);
      first = false;
    }
    let start = 0;
    for (let i = 0; i < buffer.length; i++) {
      const c = buffer[i];
      if (c !== "\n" && c !== "\r") continue;
      if (c === "\r" && i + 1 === buffer.length && !done) break; // a \r\n may be split
      line(buffer.slice(start, i));
      if (c === "\r" && buffer[i + 1] === "\n") i++;
      start = i + 1;
    }
    buffer = buffer.slice(start);
    if (done) return; // an event without its blank line is dropped, as the standard says
  }
}

function dispatch(event) {
  let data;
  try {
    data = JSON.parse(event.data);
  } catch (_) {
    return;
  }
  switch (event.type) {
    case "reset":
      $("messages").textContent = "";
      state.caughtUp = false;
      break;
    case "ready":
      state.caughtUp = true;
      break;
    case "message":
      addMessage(data, "message");
      refreshReplaySoon();
      break;
    case "notice":
      addMessage(data, "notice");
      break;
    case "edit":
      editMessage(data);
      refreshReplaySoon();
      break;
    case "redaction":
      redactMessage(data);
      refreshReplaySoon();
      break;
    case "phase":
      setPhase(data);
      break;
    case "closed":
      endSession(WORDS.closed(String((data && data.error) || "")));
      break;
    default:
      break; // an event this page does not know yet
  }
}

// ---- Writing ----------------------------------------------------------------------------

function setComposeOpen(open, why) {
  $("body").disabled = !open;
  $("send").disabled = !open || Date.now() < state.slowUntil || overLimit();
  if (!open && why) $("refusal").textContent = why;
  else if (open && Object.values(WORDS.composeClosed).includes($("refusal").textContent)) {
    $("refusal").textContent = "";
  }
}

function overLimit() {
  return characters($("body").value) > state.maxLength;
}

function updateCounter() {
  const n = characters($("body").value);
  const counter = $("counter");
  const over = n > state.maxLength;
  counter.textContent = over ? WORDS.counterOver(n, state.maxLength) : WORDS.counter(n, state.maxLength);
  counter.classList.toggle("over", over);
  $("send").disabled = $("body").disabled || over || Date.now() < state.slowUntil;
}

let slowTimer = null;
// Send waits `ms`, counting down in `words` (slow mode, or a timeout).
function slowDown(ms, words = WORDS.slowMode) {
  state.slowUntil = Date.now() + ms;
  clearInterval(slowTimer);
  const tick = () => {
    const left = state.slowUntil - Date.now();
    if (left <= 0) {
      clearInterval(slowTimer);
      slowTimer = null;
      $("refusal").textContent = WORDS.slowModeOver;
      updateCounter();
      return;
    }
    $("refusal").textContent = words(Math.ceil(left / 1000));
  };
  tick();
  slowTimer = setInterval(tick, 1000);
  updateCounter();
}

async function send() {
  const body = $("body").value;
  if (!state.session || !body.trim() || overLimit() || Date.now() < state.slowUntil) return;
  // One txn_id per message: a retry of the same text reuses it, so Foyer sends it once.
  if (!state.pending || state.pending.body !== body) state.pending = { txn_id: randomId(), body };
  const pending = state.pending;
  $("send").disabled = true;
  let response;
  try {
    response = await fetch(api("v1/messages"), {
      method: "POST",
      headers: { Authorization: `Bearer ${state.session}`, "Content-Type": "application/json" },
      body: JSON.stringify(pending),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (_) {
    $("refusal").textContent = WORDS.notSentNetwork;
    updateCounter();
    return;
  }
  if (response.ok) {
    const answer = await response.json().catch(() => ({}));
    if (answer && typeof answer.event_id === "string") state.ownEvents.add(answer.event_id);
    state.pending = null;
    if ($("body").value === pending.body) $("body").value = "";
    $("refusal").textContent = "";
    updateCounter();
    return;
  }
  const { errcode, error, retryAfterMs } = await refusal(response);
  if (response.status === 429) {
    const header = Number(response.headers.get("Retry-After")) * 1000;
    const words =
      errcode === "FOYER_TIMED_OUT" ? WORDS.timedOut : errcode === "FOYER_ROOM_BUSY" ? WORDS.roomBusy : WORDS.slowMode;
    slowDown(retryAfterMs > 0 ? retryAfterMs : header > 0 ? header : 1000, words);
    return;
  }
  if (response.status === 401) {
    endSession(WORDS.sessionEnded);
    return;
  }
  if (response.status === 422 || response.status === 403) {
    state.pending = null; // refused, not sent: a new attempt is a new message
  }
  $("refusal").textContent = WORDS.notSent(error || WORDS.unavailable(response.status));
  updateCounter();
}

async function deleteMessage(eventId, item) {
  if (!state.session) return;
  try {
    const response = await fetch(api(`v1/messages/${encodeURIComponent(eventId)}`), {
      method: "DELETE",
      headers: { Authorization: `Bearer ${state.session}` },
      cache: "no-store",
      credentials: "omit",
    });
    if (response.ok) {
      redactMessage({ event_id: eventId }, true);
      return;
    }
    const { error } = await refusal(response);
    itemStatus(item, WORDS.deleteFailed(error || WORDS.unavailable(response.status)));
  } catch (_) {
    itemStatus(item, WORDS.deleteFailed(WORDS.unreachable));
  }
}

function itemStatus(item, text) {
  let status = item.querySelector(".status");
  if (!status) {
    status = el("p", "status");
    status.setAttribute("role", "status");
    item.append(status);
  }
  status.textContent = text;
}

function openReport(eventId, item, opener) {
  if (item.querySelector(".report")) return;
  const form = el("form", "report");
  const label = el("label", "visually-hidden", WORDS.reportReason);
  const input = el("input");
  input.id = `report-${randomId()}`;
  label.htmlFor = input.id;
  input.placeholder = WORDS.reportReason;
  input.maxLength = 500;
  input.required = true;
  const submit = el("button", null, WORDS.reportSend);
  submit.type = "submit";
  const cancel = el("button", "quiet", WORDS.reportCancel);
  cancel.type = "button";
  cancel.addEventListener("click", () => {
    form.remove();
    opener.focus();
  });
  form.append(label, input, submit, cancel);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const reason = input.value.trim();
    if (!reason || !state.session) return;
    submit.disabled = true;
    try {
      const response = await fetch(api("v1/reports"), {
        method: "POST",
        headers: { Authorization: `Bearer ${state.session}`, "Content-Type": "application/json" },
        body: JSON.stringify({ event_id: eventId, reason }),
        cache: "no-store",
        credentials: "omit",
      });
      if (response.ok) {
        form.remove();
        opener.remove();
        itemStatus(item, WORDS.reportSent);
        return;
      }
      const { error } = await refusal(response);
      itemStatus(item, WORDS.reportFailed(error || WORDS.unavailable(response.status)));
    } catch (_) {
      itemStatus(item, WORDS.reportFailed(WORDS.unreachable));
    }
    submit.disabled = false;
  });
  item.append(form);
  input.focus();
}

// ---- Start ------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("body").addEventListener("input", updateCounter);
  $("body").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  $("compose").addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  $("claim").addEventListener("submit", (e) => {
    e.preventDefault();
    const request = claimRequest();
    if (request) startSession(request);
  });
  const begin = () => {
    if (!/^[A-Za-z0-9._=-]{1,128}$/.test(state.reservationId)) {
      showError(WORDS.startFailed(WORDS.wrongPage), false);
      return;
    }
    if (TOKEN) {
      startSession({ token: TOKEN });
    } else {
      show("claim", true);
      $("claim-code").focus();
    }
  };
  $("retry").addEventListener("click", () => {
    const request = TOKEN ? { token: TOKEN } : claimRequest();
    if (request) startSession(request);
  });
  begin();
});
