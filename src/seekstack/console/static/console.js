// seekstack console: the light script layer. Pages are rendered on the server; this file only
// (1) sends the forms marked data-api to the API with the session's CSRF token,
// (2) signs in and out, and (3) streams the playground's answers. Everything it writes into
// the page goes through textContent: model output, names and errors are never parsed as HTML.
"use strict";

const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

async function api(method, url, body, extraHeaders) {
  const headers = Object.assign({"X-CSRF-Token": csrf()}, extraHeaders || {});
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {method, headers, credentials: "same-origin",
                                     body: body === undefined ? undefined : JSON.stringify(body)});
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  return {ok: response.ok, status: response.status, data};
}

function problem(result) {
  const error = result.data && result.data.error;
  return error ? error.message : "HTTP " + result.status;
}

function say(form, text) {
  const place = form.querySelector(".error");
  if (place) place.textContent = text;
}

// A form's fields as the API's JSON: empty fields left out; data-kind="number" / "list" converted.
function fields(form) {
  const body = {};
  for (const el of form.elements) {
    if (!el.name || el.value === "") continue;
    const kind = el.dataset.kind;
    body[el.name] = kind === "number" ? Number(el.value)
                  : kind === "list" ? el.value.split(",").map(s => s.trim()).filter(Boolean) : el.value;
  }
  return body;
}

function wireApiForms() {
  for (const form of document.querySelectorAll("form[data-api]")) {
    form.addEventListener("submit", async event => {
      event.preventDefault();
      if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
      const body = fields(form);
      const url = form.dataset.api.replace(/\{(\w+)\}/g, (_, name) => encodeURIComponent(body[name] || ""));
      const method = form.dataset.method || "POST";
      for (const name of (form.dataset.api.match(/\{(\w+)\}/g) || [])) delete body[name.slice(1, -1)];
      const button = form.querySelector("button[type=submit]");
      if (button) button.disabled = true;
      say(form, "");
      const result = await api(method, url, method === "DELETE" ? undefined : body);
      if (button) button.disabled = false;
      if (!result.ok) { say(form, problem(result)); return; }
      if (form.dataset.done) {  // nothing to show again (a password): say so, and clear the form
        form.reset();
        form.querySelector(".done").textContent = form.dataset.done;
        return;
      }
      if (form.dataset.show) {  // a value shown once (a new key's secret): then reload on "done"
        const box = document.getElementById(form.dataset.shown);
        box.querySelector(".value").textContent = result.data[form.dataset.show];
        box.hidden = false;
        form.reset();
        box.querySelector("button.done").focus();
        return;
      }
      window.location.reload();
    });
  }
  for (const done of document.querySelectorAll(".secret button.done")) {
    done.addEventListener("click", () => window.location.reload());
  }
}

// Sign in with a key (Bearer) or a user's password (Basic, UTF-8): sent once, to open a session.
function wireSignIn() {
  const ways = {
    "signin": form => "Bearer " + form.elements.key.value.trim(),
    "signin-password": form => "Basic " + btoa(String.fromCharCode(
      ...new TextEncoder().encode(form.elements.user.value.trim() + ":" + form.elements.password.value))),
  };
  for (const [id, credentials] of Object.entries(ways)) {
    const form = document.getElementById(id);
    if (!form) continue;
    form.addEventListener("submit", async event => {
      event.preventDefault();
      const result = await api("POST", "/console/session", undefined, {"Authorization": credentials(form)});
      for (const field of form.querySelectorAll("input[type=password]")) field.value = "";
      if (!result.ok) { say(form, form.dataset.failed + " " + problem(result)); return; }
      window.location.assign(form.dataset.next || "/console");
    });
  }
}

function wireSignOut() {
  const button = document.getElementById("signout");
  if (!button) return;
  button.addEventListener("click", async () => {
    await api("POST", "/console/signout");
    window.location.assign("/console/signin");
  });
}

// ------------------------------------------------------------ playground
function bubble(list, role, label) {
  const item = document.createElement("li");
  item.className = role;
  const who = document.createElement("span");
  who.className = "who-said";
  who.textContent = label;
  item.appendChild(who);
  list.appendChild(item);
  return item;
}

function textPart(parent) {
  const div = document.createElement("div");
  div.className = "text";
  parent.appendChild(div);
  return div;
}

async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      const data = block.split(/\r?\n/).filter(l => l.startsWith("data:")).map(l => l.slice(5).trim()).join("\n");
      if (data) yield data;
    }
  }
}

function wirePlayground() {
  const form = document.getElementById("chat");
  if (!form) return;
  const list = document.getElementById("conversation");
  let history = [];
  document.getElementById("clear").addEventListener("click", () => { history = []; list.textContent = ""; });
  form.addEventListener("submit", async event => {
    event.preventDefault();
    const prompt = form.elements.prompt.value;
    if (!prompt.trim()) return;
    say(form, "");
    textPart(bubble(list, "user", form.dataset.you)).textContent = prompt;
    history.push({role: "user", content: prompt});
    form.elements.prompt.value = "";
    const answer = bubble(list, "assistant", form.dataset.assistant);
    const thinking = document.createElement("details");
    thinking.hidden = true;  // shown, folded, when reasoning arrives
    const summary = document.createElement("summary");
    summary.textContent = form.dataset.reasoning;
    thinking.appendChild(summary);
    const reasoning = textPart(thinking);
    answer.appendChild(thinking);
    const text = textPart(answer);
    text.dataset.chunks = "0";
    const messages = form.elements.system.value.trim()
      ? [{role: "system", content: form.elements.system.value}, ...history] : history;
    const body = {model: form.elements.model.value, messages, stream: true, stream_options: {include_usage: true},
                  temperature: Number(form.elements.temperature.value), max_tokens: Number(form.elements.max_tokens.value)};
    const button = form.querySelector("button[type=submit]");
    const stop = document.getElementById("stop");
    const controller = new AbortController();  // Stop: the stream is closed, and the gateway stops the engine
    stop.onclick = () => controller.abort();
    button.disabled = true;
    stop.hidden = false;
    answer.setAttribute("aria-busy", "true");
    try {
      const response = await fetch("/v1/chat/completions", {method: "POST", credentials: "same-origin",
        signal: controller.signal,
        headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf()}, body: JSON.stringify(body)});
      if (!response.ok) {
        let data = null;
        try { data = await response.json(); } catch (e) { data = null; }
        say(form, problem({status: response.status, data}));
        answer.remove();
        history.pop();
        return;
      }
      let usage = null, finish = null;
      for await (const data of events(response)) {
        if (data === "[DONE]") break;
        const chunk = JSON.parse(data);
        if (chunk.error) { say(form, chunk.error.message); break; }
        if (chunk.usage) usage = chunk.usage;
        const choice = (chunk.choices || [])[0];
        if (!choice) continue;
        const delta = choice.delta || {};
        if (delta.reasoning_content) { thinking.hidden = false; reasoning.textContent += delta.reasoning_content; }
        if (delta.content) {
          text.textContent += delta.content;
          text.dataset.chunks = String(Number(text.dataset.chunks) + 1);
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      history.push({role: "assistant", content: text.textContent});
      const note = document.createElement("span");
      note.className = "usage";
      note.textContent = (usage ? usage.completion_tokens + " " + form.dataset.tokens : "") +
                         (finish ? " · " + form.dataset.stopped + ": " + finish : "");
      answer.appendChild(note);
    } catch (error) {
      if (error.name === "AbortError") {
        history.push({role: "assistant", content: text.textContent});
        const note = document.createElement("span");
        note.className = "usage stopped";
        note.textContent = form.dataset.stoppedByYou;
        answer.appendChild(note);
      } else {
        say(form, String(error));
      }
    } finally {
      answer.removeAttribute("aria-busy");
      answer.dataset.done = "true";
      button.disabled = false;
      stop.hidden = true;
      form.elements.prompt.focus();  // ready for the next message
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  wireApiForms();
  wireSignIn();
  wireSignOut();
  wirePlayground();
});
