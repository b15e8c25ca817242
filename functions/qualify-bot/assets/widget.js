/* Voronka qualification bot widget: plain JavaScript, no framework.
 *
 * Embed with one tag:
 *   <script src="https://<api>/v1/bot/widget.js" data-script="b2b_demo" async></script>
 * Optional: data-locale="ru", data-api="https://<api>" (default: where this file came from),
 * data-title="Questions?".
 *
 * Keyboard: the launcher and every control are buttons or inputs in tab order; Enter sends; the
 * conversation is an aria-live log, so screen readers read each new message.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.dataset.script) { return; }
  var scriptId = script.dataset.script;
  var api = (script.dataset.api || new URL(script.src, location.href).origin).replace(/\/$/, "");
  var locale = script.dataset.locale || (navigator.language || "en").slice(0, 2);
  var title = script.dataset.title || (locale === "ru" ? "Вопросы?" : "Questions?");
  var storeKey = "voronka_bot:" + scriptId;
  var anonymousKey = "voronka_anonymous_id";

  function anonymousId() {
    var id = localStorage.getItem(anonymousKey);
    if (!id) {
      id = "anon-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10);
      localStorage.setItem(anonymousKey, id);
    }
    return id;
  }

  // What the server checks, checked first here so a person sees the problem at once; the
  // server stays the judge (its re-ask text wins).
  var checks = {
    email: function (v) { return /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v); },
    phone: function (v) { return /^\+?[0-9 ()\-]{6,20}$/.test(v) && v.replace(/\D/g, "").length >= 6; },
    url: function (v) { return /^(https?:\/\/)?[^\s\/]+\.[^\s]{2,}/i.test(v); },
    number: function (v) { return v.trim() !== "" && isFinite(Number(v)); },
    text: function (v) { return v.trim() !== ""; }
  };
  var hints = {
    en: { email: "Please enter an email address.", phone: "Please enter a phone number.",
          url: "Please enter a web address.", number: "Please enter a number.", text: "Please type an answer.",
          long: "That is too long.", send: "Send", failed: "Could not reach us; try again.", close: "Close" },
    ru: { email: "Введите адрес электронной почты.", phone: "Введите номер телефона.",
          url: "Введите адрес сайта.", number: "Введите число.", text: "Введите ответ.",
          long: "Слишком длинно.", send: "Отправить", failed: "Не удалось связаться; попробуйте ещё раз.", close: "Закрыть" }
  };
  var t = hints[locale] || hints.en;

  var state = load() || { sessionId: null, seq: 0, message: null, outcome: null, lines: [] };

  function load() {
    try { return JSON.parse(sessionStorage.getItem(storeKey)); } catch (e) { return null; }
  }
  function save() { sessionStorage.setItem(storeKey, JSON.stringify(state)); }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  var root = el("div", { "class": "voronka-bot" });
  var launcher = el("button", { type: "button", "class": "voronka-bot__launcher", "aria-expanded": "false",
                                "aria-controls": "voronka-bot-panel" }, title);
  var panel = el("section", { id: "voronka-bot-panel", "class": "voronka-bot__panel", role: "dialog",
                              "aria-label": title, hidden: "" });
  var header = el("header", { "class": "voronka-bot__header" });
  header.appendChild(el("span", {}, title));
  var close = el("button", { type: "button", "class": "voronka-bot__close", "aria-label": t.close }, "×");
  header.appendChild(close);
  var log = el("div", { "class": "voronka-bot__log", role: "log", "aria-live": "polite" });
  var controls = el("div", { "class": "voronka-bot__controls" });
  var problem = el("p", { "class": "voronka-bot__problem", role: "alert" });
  panel.appendChild(header);
  panel.appendChild(log);
  panel.appendChild(problem);
  panel.appendChild(controls);
  root.appendChild(launcher);
  root.appendChild(panel);

  function say(speaker, text) {
    state.lines.push({ speaker: speaker, text: text });
    render();
  }

  function render() {
    log.textContent = "";
    state.lines.forEach(function (line) {
      log.appendChild(el("p", { "class": "voronka-bot__line voronka-bot__line--" + line.speaker }, line.text));
    });
    log.scrollTop = log.scrollHeight;
    controls.textContent = "";
    // Which question is on screen, and how it ended: for the shop's own analytics and for tests.
    controls.setAttribute("data-node", state.message ? state.message.node : "");
    if (state.outcome) { root.setAttribute("data-outcome", state.outcome.kind); }
    if (state.outcome || !state.message) { return; }
    var input = state.message.input || { type: "text" };
    if (input.type === "choice") {
      (input.choices || []).forEach(function (choice) {
        var button = el("button", { type: "button", "class": "voronka-bot__choice", "data-value": choice.value }, choice.label);
        button.addEventListener("click", function () { send(choice.value, choice.label); });
        controls.appendChild(button);
      });
      var first = controls.querySelector("button");
      if (first) { first.focus(); }
      return;
    }
    var form = el("form", { "class": "voronka-bot__form", novalidate: "" });
    var types = { email: "email", phone: "tel", url: "url", number: "text", text: "text" };
    var field = el("input", { "class": "voronka-bot__input", name: "value", type: types[input.type] || "text",
                              "aria-label": state.message.text, autocomplete: input.type === "email" ? "email" : "off" });
    if (input.type === "number") { field.setAttribute("inputmode", "decimal"); }
    if (input.max_length) { field.setAttribute("maxlength", String(input.max_length)); }
    var submit = el("button", { type: "submit", "class": "voronka-bot__send" }, t.send);
    form.appendChild(field);
    form.appendChild(submit);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var value = field.value.trim();
      var check = checks[input.type] || checks.text;
      if (input.max_length && value.length > input.max_length) { problem.textContent = t.long; return; }
      if (!check(value)) { problem.textContent = t[input.type] || t.text; field.focus(); return; }
      send(input.type === "number" ? Number(value) : value, value);
    });
    controls.appendChild(form);
    field.focus();
  }

  function post(path, body) {
    return fetch(api + path, { method: "POST", headers: { "Content-Type": "application/json" },
                               body: JSON.stringify(body) })
      .then(function (response) {
        return response.json().then(function (json) { return { status: response.status, body: json }; });
      });
  }

  function start() {
    var params = new URLSearchParams(location.search);
    var body = { locale: locale, anonymous_id: anonymousId(), page: location.href, referrer: document.referrer };
    ["utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term"].forEach(function (name) {
      if (params.get(name)) { body[name] = params.get(name); }
    });
    return post("/v1/bot/" + encodeURIComponent(scriptId) + "/sessions", body).then(function (reply) {
      if (reply.status !== 201) { throw new Error(reply.status); }
      state.sessionId = reply.body.session_id;
      state.seq = reply.body.seq || 0;
      state.message = reply.body.message;
      save();
      say("bot", state.message.text);
    });
  }

  var busy = false;
  function send(value, shown) {
    if (busy) { return; }
    busy = true;
    problem.textContent = "";
    // An answer whose reply was lost may have been taken: it is sent again as it was (the server
    // answers a repeat with the same reply), never replaced by another value under its number.
    if (!state.pending) {
      state.pending = { seq: state.seq + 1, value: value, shown: shown };
      save();
    }
    var pending = state.pending;
    shown = pending.shown;
    post("/v1/bot/sessions/" + encodeURIComponent(state.sessionId) + "/answers", { seq: pending.seq, value: pending.value })
      .then(function (reply) {
        if (reply.status < 500 && reply.status !== 429) { state.pending = null; }
        if (reply.status === 404 || reply.status === 410) {
          state = { sessionId: null, seq: 0, message: null, outcome: null, lines: [] };
          save();
          return start();
        }
        if (reply.status !== 200) {
          problem.textContent = (reply.body.error && reply.body.error.message) || t.failed;
          return;
        }
        state.seq = reply.body.seq;
        state.lines.push({ speaker: "visitor", text: String(shown) });
        if (reply.body.accepted === false && reply.body.error) {
          state.lines.push({ speaker: "bot", text: reply.body.error.message });
        }
        if (reply.body.outcome) {
          state.outcome = reply.body.outcome;
          state.message = null;
          state.lines.push({ speaker: "bot", text: reply.body.outcome.text });
        } else if (reply.body.message) {
          var repeated = state.message && reply.body.message.node === state.message.node;
          state.message = reply.body.message;
          if (!repeated) { state.lines.push({ speaker: "bot", text: reply.body.message.text }); }
        }
        save();
        render();
      })
      .catch(function () { problem.textContent = t.failed; })
      .then(function () { busy = false; });
  }

  function open() {
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    if (!state.sessionId) {
      start().catch(function () { problem.textContent = t.failed; });
    } else {
      render();
    }
  }
  function shut() {
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
  }
  launcher.addEventListener("click", function () { if (panel.hidden) { open(); } else { shut(); } });
  close.addEventListener("click", shut);
  panel.addEventListener("keydown", function (event) { if (event.key === "Escape") { shut(); } });

  var css = el("link", { rel: "stylesheet", href: api + "/v1/bot/widget.css" });
  document.head.appendChild(css);
  function mount() { document.body.appendChild(root); if (state.lines.length) { render(); } }
  if (document.body) { mount(); } else { document.addEventListener("DOMContentLoaded", mount); }
  window.VoronkaBot = { open: open, close: shut };
})();
