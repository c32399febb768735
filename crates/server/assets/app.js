// Balie agent UI: keeps the inbox and the open conversation live from /events (SSE).
// Customer text is only ever placed with textContent, never parsed as HTML.
(function () {
  "use strict";
  var body = document.body;
  var page = body.dataset.page;
  if (!page) return;
  var T = {};
  try { T = JSON.parse(body.dataset.texts || "{}"); } catch (e) { T = {}; }
  var RANK = { urgent: 0, high: 1, normal: 2, low: 3 };
  var liveState = document.getElementById("live-state");

  // Unbidden bidi controls (embeddings, overrides, isolates) are shown as visible marks,
  // as the server's templates do, so customer text never reorders the page around it.
  function shown(text) {
    return String(text).replace(/[\u202A-\u202E\u2066-\u2069]/g, function (c) {
      return "[U+" + c.charCodeAt(0).toString(16).toUpperCase() + "]";
    });
  }

  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = shown(text);
    return n;
  }

  function span(ms) {
    var m = Math.max(0, Math.floor(ms / 60000));
    return m < 60 ? m + " min" : Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  function refreshTimes() {
    var now = Date.now();
    document.querySelectorAll("tr.conv").forEach(function (tr) {
      if (tr.dataset.answered === "1") return;
      var since = Number(tr.dataset.since), due = Number(tr.dataset.due);
      tr.querySelector(".waiting").textContent = span(now - since);
      var left = due - now;
      tr.querySelector(".due").textContent = left >= 0 ? span(left) : T.overdue + " " + span(-left);
      tr.classList.toggle("overdue", left < 0);
    });
  }

  // Times show in the agent's own time zone and language.
  function localTime(ms) {
    try {
      return new Date(Number(ms)).toLocaleString(T.lang === "en" ? "en-GB" : "nl-NL",
        { day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit" });
    } catch (err) { return ""; }
  }
  document.querySelectorAll("time[data-ms]").forEach(function (t) {
    var s = localTime(t.dataset.ms);
    if (s) t.textContent = s;
  });

  function sortInbox(tbody) {
    var rows = Array.prototype.slice.call(tbody.children);
    rows.sort(function (a, b) {
      return (Number(a.dataset.answered) - Number(b.dataset.answered)) ||
        (Number(a.dataset.priority) - Number(b.dataset.priority)) ||
        (Number(a.dataset.due) - Number(b.dataset.due)) ||
        (Number(b.dataset.last || 0) - Number(a.dataset.last || 0));
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
  }

  function onInbox(e) {
    var tbody = document.getElementById("inbox-rows");
    var row = e.conversation, c = row.conversation;
    var id = "conv-" + c.id;
    var old = document.getElementById(id);
    if (c.status !== "open") {
      if (old) old.remove();
    } else {
      var tr = el("tr", "conv prio-" + RANK[c.priority]);
      tr.id = id;
      tr.dataset.id = c.id;
      tr.dataset.answered = c.waiting_since === null ? "1" : "0";
      tr.dataset.priority = RANK[c.priority];
      tr.dataset.due = c.reply_due === null ? "9223372036854775807" : c.reply_due;
      tr.dataset.since = c.waiting_since === null ? "0" : c.waiting_since;
      tr.dataset.last = row.last_message_at;
      tr.appendChild(el("td", "prio", T[c.priority] || c.priority));
      tr.appendChild(el("td", "customer", row.customer_name));
      tr.appendChild(el("td", "channel", row.channel_name));
      var td = el("td", "first-line");
      var an = null;
      try { an = row.last_analysis ? JSON.parse(row.last_analysis) : null; } catch (err) { an = null; }
      if (an) {
        if (an.escalation) { td.appendChild(el("span", "badge escalation", T.escalation)); td.appendChild(document.createTextNode(" ")); }
        td.appendChild(el("span", "badge intent", T[an.intent] || an.intent));
        td.appendChild(document.createTextNode(" "));
        td.appendChild(el("span", "badge sentiment", T[an.sentiment] || an.sentiment));
        td.appendChild(document.createTextNode(" "));
      }
      var a = el("a", null, row.first_line);
      a.href = "/conversations/" + c.id;
      td.appendChild(a);
      tr.appendChild(td);
      tr.appendChild(el("td", "waiting", c.waiting_since === null ? T.answered : ""));
      tr.appendChild(el("td", "due", ""));
      tr.appendChild(el("td", "assignee", row.assignee_name || ""));
      if (old) old.replaceWith(tr); else tbody.appendChild(tr);
      if (e.kind === "message_received") {
        tr.classList.add("fresh");
        setTimeout(function () { tr.classList.remove("fresh"); }, 2000);
      }
    }
    sortInbox(tbody);
    refreshTimes();
    document.getElementById("inbox-empty").hidden = tbody.children.length > 0;
  }

  function onConversation(e) {
    if (String(e.conversation.conversation.id) === body.dataset.conversation) {
      var who = document.getElementById("assignee");
      if (who) who.textContent = shown(e.conversation.assignee_name || "—");
    }
    var m = e.message;
    if (!m) return;
    if (String(e.conversation.conversation.customer_id) !== body.dataset.customer) return;
    var li = el("li", "msg " + (m.direction === "out" ? "out" : "in") + (m.removed ? " removed" : ""));
    li.id = "msg-" + m.id;
    li.dataset.id = m.id;
    var meta = el("div", "meta");
    meta.appendChild(el("span", "author", m.author_name));
    meta.appendChild(document.createTextNode(" · "));
    meta.appendChild(el("span", "chan", m.channel_name));
    if (m.place) {
      meta.appendChild(document.createTextNode(" · "));
      meta.appendChild(el("span", "place", T["place_" + m.place.kind] || m.place.kind));
      if (m.place.url && /^https?:\/\//.test(m.place.url)) {
        var link = el("a", "place-link", T.open_on_platform);
        link.href = m.place.url;
        link.target = "_blank";
        link.rel = "noopener noreferrer";
        meta.appendChild(document.createTextNode(" "));
        meta.appendChild(link);
      }
    }
    meta.appendChild(document.createTextNode(" · "));
    var time = el("time", null, localTime(m.created_at));
    time.dataset.ms = m.created_at;
    meta.appendChild(time);
    if (m.direction === "out") meta.appendChild(el("span", "delivery " + m.delivery, T[m.delivery] || m.delivery));
    var a = null;
    try { a = m.analysis ? JSON.parse(m.analysis) : null; } catch (err) { a = null; }
    if (a) {
      meta.appendChild(el("span", "badge sentiment", T[a.sentiment] || a.sentiment));
      meta.appendChild(el("span", "badge intent", T[a.intent] || a.intent));
      if (a.escalation) {
        meta.appendChild(el("span", "badge escalation", T.escalation));
        var signals = (a.escalation_signals || []).map(function (s) { return T[s] || s; });
        if (signals.length) meta.appendChild(el("span", "signals", signals.join(", ")));
      }
    }
    if (m.removed) meta.appendChild(el("span", "badge removed", T.removed));
    li.appendChild(meta);
    li.appendChild(el("div", "text", m.text));
    if (m.delivery_error) li.appendChild(el("div", "delivery-error", m.delivery_error));
    var old = document.getElementById(li.id);
    var timeline = document.getElementById("timeline");
    var atEnd = timeline.scrollHeight - timeline.scrollTop - timeline.clientHeight < 40;
    if (old) old.replaceWith(li); else timeline.appendChild(li);
    if (atEnd) timeline.scrollTop = timeline.scrollHeight;
  }

  var es = new EventSource("/events?after=" + encodeURIComponent(body.dataset.lastEvent || "0"));
  es.onopen = function () { if (liveState) { liveState.textContent = T.live; liveState.className = "live-state on"; } };
  es.onerror = function () { if (liveState) { liveState.textContent = T.offline; liveState.className = "live-state off"; } };
  es.onmessage = function (ev) {
    var e;
    try { e = JSON.parse(ev.data); } catch (err) { return; }
    if (page === "inbox") onInbox(e);
    else if (page === "conversation") onConversation(e);
  };
  if (page === "inbox") { refreshTimes(); setInterval(refreshTimes, 30000); }
  if (page === "conversation") {
    var tl = document.getElementById("timeline");
    if (tl) tl.scrollTop = tl.scrollHeight;
    composer();
  }

  // The reply box: the server counts the draft as the platform counts it and checks it (the
  // same rule as `balie lint-reply` and the sender); this only shows the answer, as text.
  function composer() {
    var box = document.getElementById("reply-text");
    var send = document.getElementById("reply-send");
    if (!box || !send) return;
    var count = document.getElementById("reply-count");
    var blocked = document.getElementById("reply-blocked");
    var checks = document.getElementById("reply-checks");
    var list = document.getElementById("reply-flags");
    var timer = null, asked = 0;
    function show(answer, text) {
      count.textContent = answer.counter;
      count.classList.toggle("over", answer.max_length !== null && answer.length > answer.max_length);
      blocked.textContent = answer.blocked;
      send.disabled = answer.blocked !== "";
      list.textContent = "";
      var points = Array.from(text);
      var shownFlags = 0;
      answer.flags.forEach(function (f, i) {
        // Too long is said once, next to the disabled Send button.
        if (f.kind === "too_long") return;
        shownFlags++;
        var li = el("li", "flag flag-" + f.kind);
        li.appendChild(el("strong", null, answer.labels[i]));
        if (f.kind !== "other_language") {
          li.appendChild(document.createTextNode(" "));
          li.appendChild(el("q", "words", points.slice(f.start, f.end).join("")));
        }
        li.appendChild(document.createTextNode(" "));
        li.appendChild(el("span", "why", f.message));
        list.appendChild(li);
      });
      checks.hidden = shownFlags === 0;
    }
    function check() {
      var text = box.value, mine = ++asked;
      fetch("/conversations/" + encodeURIComponent(body.dataset.conversation) + "/draft", {
        method: "POST",
        credentials: "same-origin",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ text: text }).toString()
      }).then(function (r) { return r.ok ? r.json() : null; })
        .then(function (answer) { if (answer && mine === asked) show(answer, text); })
        .catch(function () {});
    }
    box.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(check, 150);
    });
    check();
  }
})();
