// The reflex incident board. Reads /api/board once (and again after every
// reconnect), then applies /api/stream events as they arrive; pending
// approvals, guards and the breaker come from the snapshot, refreshed after
// actions and escalations and every few seconds. Nothing is fetched from
// anywhere but this origin.
"use strict";
(function () {
  // `?stale_ms=N` shortens the staleness threshold (tests, demos).
  const STALE_MS = Number(new URLSearchParams(location.search).get("stale_ms")) || 15000;
  const POLL_MS = 5000;
  const TOKEN_KEY = "reflex-api-token";
  const S = {
    incidents: new Map(),
    pending: [],
    guards: [],
    breaker: false,
    approvalsEnabled: false,
    now: null,
    lastContact: 0,
    streamOpen: false,
    es: null,
    backoff: 1000,
    renderQueued: false,
    refreshTimer: null,
    authToldOnce: false,
  };
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else if (k === "onclick") e.addEventListener("click", v);
      else e.setAttribute(k, v);
    }
    for (const k of kids) {
      if (k === null || k === undefined || k === false) continue;
      e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return e;
  }

  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  function ms(t) {
    const v = Date.parse(t);
    return Number.isNaN(v) ? 0 : v;
  }

  function clock(t) {
    if (!t) return "–";
    const d = new Date(ms(t));
    return d.toISOString().slice(11, 19);
  }

  function dur(a, b) {
    const s = Math.max(0, Math.round((ms(b) - ms(a)) / 1000));
    return s >= 60 ? Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s" : s + "s";
  }

  function later(a, b) {
    if (!a) return b;
    if (!b) return a;
    return ms(b) > ms(a) ? b : a;
  }

  function entry(id) {
    let b = S.incidents.get(id);
    if (!b) {
      b = { first: null, latest: null, actions: [], escalations: [], results: [] };
      S.incidents.set(id, b);
    }
    return b;
  }

  function sameRecord(a, b) {
    return JSON.stringify(a) === JSON.stringify(b);
  }

  function applyIncident(i) {
    const b = entry(i.incident_id);
    if (!b.first) b.first = i;
    b.latest = i;
    S.now = later(S.now, i.updated_at);
  }

  function applyAction(a) {
    const b = entry(a.incident_id);
    if (!b.actions.some((x) => sameRecord(x, a))) b.actions.push(a);
    S.now = later(S.now, a.created_at);
  }

  function applyEscalation(e) {
    const b = entry(e.incident_id);
    if (!b.escalations.some((x) => x.escalation_id === e.escalation_id)) b.escalations.push(e);
    S.now = later(S.now, e.created_at);
  }

  function applyResult(r) {
    for (const b of S.incidents.values()) {
      if (b.actions.some((a) => a.action_id === r.action_id)) {
        if (!b.results.some((x) => sameRecord(x, r))) b.results.push(r);
        S.now = later(S.now, r.finished_at);
        return;
      }
    }
  }

  function applySnapshot(v) {
    for (const b of v.incidents) {
      const e = entry(b.latest.incident_id);
      e.first = b.first;
      e.latest = b.latest;
      for (const a of b.actions) applyAction(a);
      for (const x of b.escalations) applyEscalation(x);
      for (const r of b.results) if (!e.results.some((y) => sameRecord(y, r))) e.results.push(r);
    }
    S.pending = v.pending;
    S.guards = v.guards;
    S.breaker = v.breaker_open;
    S.approvalsEnabled = v.approvals_enabled;
    S.now = later(S.now, v.now);
  }

  function contact() {
    S.lastContact = Date.now();
    updateConn();
  }

  function updateConn() {
    const c = $("conn");
    const age = Date.now() - S.lastContact;
    let state;
    let text;
    if (S.lastContact && age > STALE_MS) {
      state = "stale";
      text = "stale: no update since " + new Date(S.lastContact).toLocaleTimeString();
    } else if (S.streamOpen) {
      state = "live";
      text = "live";
    } else if (S.lastContact) {
      state = "reconnecting";
      text = "reconnecting…";
    } else {
      state = "connecting";
      text = "connecting…";
    }
    c.dataset.state = state;
    c.textContent = text;
  }

  async function refresh() {
    try {
      // With telemetry.api.protect_read_only the snapshot needs the token
      // (the stream cannot send one: the board then follows by polling).
      const token = sessionStorage.getItem(TOKEN_KEY);
      const headers = token ? { Authorization: "Bearer " + token } : {};
      const r = await fetch("/api/board", { cache: "no-store", headers });
      if (r.status === 401 || r.status === 403) {
        if (r.status === 401 && token) sessionStorage.removeItem(TOKEN_KEY);
        if (!S.authToldOnce) {
          S.authToldOnce = true;
          toast("this board needs the API token: set it with the token button", true);
        }
      }
      if (!r.ok) throw new Error("HTTP " + r.status);
      S.authToldOnce = false;
      applySnapshot(await r.json());
      contact();
      queueRender();
    } catch (e) {
      updateConn();
    }
  }

  function refreshSoon() {
    if (S.refreshTimer) return;
    S.refreshTimer = setTimeout(() => {
      S.refreshTimer = null;
      refresh();
    }, 250);
  }

  function connect() {
    if (S.es) S.es.close();
    const es = new EventSource("/api/stream");
    S.es = es;
    const on = (name, f) =>
      es.addEventListener(name, (m) => {
        contact();
        let d;
        try {
          d = JSON.parse(m.data);
        } catch (e) {
          return;
        }
        f(d);
        queueRender();
      });
    on("subscribed", () => {
      S.streamOpen = true;
      S.backoff = 1000;
      refresh();
    });
    on("incident", applyIncident);
    on("action", (a) => {
      applyAction(a);
      refreshSoon();
    });
    on("escalation", (e) => {
      applyEscalation(e);
      refreshSoon();
    });
    on("result", applyResult);
    on("lagged", () => refresh());
    es.onerror = () => {
      // Reconnect ourselves with a backoff (the browser gives up on some errors).
      S.streamOpen = false;
      es.close();
      if (S.es === es) S.es = null;
      updateConn();
      const wait = S.backoff;
      S.backoff = Math.min(S.backoff * 2, 10000);
      setTimeout(() => {
        if (!S.es) connect();
      }, wait);
    };
  }

  // ---- rendering ------------------------------------------------------

  function queueRender() {
    if (S.renderQueued) return;
    S.renderQueued = true;
    requestAnimationFrame(() => {
      S.renderQueued = false;
      render();
    });
  }

  function graph(inc) {
    const root = inc.root_cause_service;
    const others = inc.services.filter((s) => s !== root);
    const shown = others.slice(0, 8);
    const W = 230;
    const H = 150;
    const cx = W / 2;
    const cy = H / 2;
    const rx = 88;
    const ry = 52;
    let s = '<svg width="' + W + '" height="' + H + '" viewBox="0 0 ' + W + " " + H + '" role="img" aria-label="affected services">';
    s += '<defs><marker id="arr" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#9ca3af"/></marker></defs>';
    const pos = shown.map((_, k) => {
      const a = (2 * Math.PI * k) / Math.max(shown.length, 1) - Math.PI / 2;
      return [cx + rx * Math.cos(a), cy + ry * Math.sin(a)];
    });
    pos.forEach(([x, y]) => {
      // Callers point at the root they fail calling.
      const dx = cx - x;
      const dy = cy - y;
      const len = Math.hypot(dx, dy) || 1;
      const ex = cx - (dx / len) * 20;
      const ey = cy - (dy / len) * 20;
      s += '<line x1="' + x.toFixed(1) + '" y1="' + y.toFixed(1) + '" x2="' + ex.toFixed(1) + '" y2="' + ey.toFixed(1) + '" stroke="#9ca3af" stroke-width="1.5" marker-end="url(#arr)"/>';
    });
    pos.forEach(([x, y], k) => {
      s += '<circle cx="' + x.toFixed(1) + '" cy="' + y.toFixed(1) + '" r="6" fill="#fbbf24" stroke="#b45309"/>';
      s += '<text x="' + x.toFixed(1) + '" y="' + (y + (y < cy ? -9 : 17)).toFixed(1) + '" font-size="10" text-anchor="middle" fill="#374151">' + esc(shown[k].length > 18 ? shown[k].slice(0, 17) + "~" : shown[k]) + "</text>";
    });
    s += '<circle cx="' + cx + '" cy="' + cy + '" r="14" fill="#dc2626" stroke="#7f1d1d" stroke-width="2"/>';
    s += '<circle cx="' + cx + '" cy="' + cy + '" r="19" fill="none" stroke="#dc2626" stroke-dasharray="3 2"/>';
    s += '<text x="' + cx + '" y="' + (cy + 4) + '" font-size="9" font-weight="700" text-anchor="middle" fill="#fff">root</text>';
    s += '<text x="' + cx + '" y="' + (cy + 33) + '" font-size="11" font-weight="600" text-anchor="middle" fill="#111827">' + esc(root.length > 26 ? root.slice(0, 25) + "~" : root) + "</text>";
    if (others.length > shown.length) {
      s += '<text x="' + (W - 4) + '" y="' + (H - 4) + '" font-size="10" text-anchor="end" fill="#6b7280">+' + (others.length - shown.length) + " more</text>";
    }
    s += "</svg>";
    const d = el("div", { class: "graph" });
    d.innerHTML = s;
    return d;
  }

  // A dry run is the decision "dry_run"; records written before that
  // decision existed carried params.args.dry_run = "true" instead.
  function isDryRun(a) {
    return a.decision === "dry_run" || !!(a.params && a.params.args && a.params.args.dry_run === "true");
  }

  function isVerified(inc) {
    return inc.status === "resolved" && (inc.evidence || []).some((e) => e.startsWith("verified:"));
  }

  function timeline(b) {
    const items = [];
    const add = (at, kind, label, text, order) => items.push({ at, kind, label, text, order });
    const f = b.first;
    const l = b.latest;
    add(f.opened_at, "detect", "Detected", "first errors; " + (f.services.length) + " service(s) involved", 0);
    add(f.updated_at, "diagnosis", "Diagnosed", f.root_cause_service + " — " + f.category + ", confidence " + f.confidence.toFixed(2) + " (after " + dur(f.opened_at, f.updated_at) + ")", 1);
    if (l.root_cause_service !== f.root_cause_service || l.category !== f.category) {
      add(l.updated_at, "diagnosis", "Re-diagnosed", l.root_cause_service + " — " + l.category + ", confidence " + l.confidence.toFixed(2), 1);
    }
    const seen = new Map();
    for (const a of b.actions) {
      const what = a.type + " " + a.target.service + (a.params && a.params.replicas != null ? " to " + a.params.replicas + " replicas" : "");
      const dry = isDryRun(a);
      const wasPending = seen.get(a.action_id) === "approval_required";
      seen.set(a.action_id, a.decision);
      if (a.reason && a.reason.startsWith("undo:")) {
        add(a.created_at, "action", "Undo", what + " (risk " + a.risk.toFixed(2) + ") — reverting a step that made things worse", 4);
      } else if (dry) {
        add(a.created_at, "decision", "Decision", what + " — risk " + a.risk.toFixed(2) + " → dry run only", 2);
      } else if (a.decision === "approval_required") {
        add(a.created_at, "decision", "Decision", what + " — risk " + a.risk.toFixed(2) + " → approval required", 2);
      } else if (wasPending) {
        const by = (a.reason.match(/approved by (.*)$/) || [])[1] || "a human";
        add(a.created_at, "action", "Approved", what + " by " + by + " → sent to the executor", 4);
      } else {
        add(a.created_at, "decision", "Decision", what + " — risk " + a.risk.toFixed(2) + " → automatic", 2);
        add(a.created_at, "action", "Action", what + " sent to the executor", 4);
      }
    }
    for (const r of b.results) {
      const a = b.actions.find((x) => x.action_id === r.action_id);
      add(r.finished_at, "result", "Result", (a ? a.type + " " + a.target.service + " " : "") + r.status.replace(/_/g, " ") + (r.detail ? " (" + r.detail + ")" : ""), 5);
    }
    for (const e of b.escalations) {
      add(e.created_at, "escalation", "Escalated" + (e.team ? " to " + e.team : ""), e.reason, 3);
    }
    if (l.status === "resolved") {
      if (isVerified(l)) {
        add(l.resolved_at || l.updated_at, "verified", "Verified", l.evidence.find((x) => x.startsWith("verified:")).slice(9).trim(), 6);
      } else {
        add(l.resolved_at || l.updated_at, "resolved", "Resolved", "quiet for the resolve window", 6);
      }
    }
    items.sort((x, y) => ms(x.at) - ms(y.at) || x.order - y.order);
    const ol = el("ol", { class: "timeline" });
    for (const it of items) {
      ol.append(el("li", { "data-kind": it.kind }, el("span", { class: "t" }, clock(it.at)), el("span", { class: "k" }, it.label), it.text));
    }
    return ol;
  }

  function card(b) {
    const l = b.latest;
    const conf = el("span", { class: "conf", title: "stated confidence" }, el("i", {}, el("b", { style: "width:" + Math.round(l.confidence * 100) + "%" })), l.confidence.toFixed(2));
    const head = el(
      "div",
      { class: "inc-head" },
      el("span", { class: "root" }, l.root_cause_service),
      el("span", { class: "badge" }, l.category),
      el("span", { class: "badge status-" + l.status }, l.status),
      isVerified(l) ? el("span", { class: "badge verified" }, "verified fix") : null,
      conf,
      el("span", { class: "thin small" }, l.incident_id + (l.namespace ? " · " + l.namespace : ""))
    );
    const ev = el("details", {}, el("summary", {}, "evidence (" + l.evidence.length + ")"), el("ul", {}, ...l.evidence.map((e) => el("li", {}, e))));
    return el(
      "article",
      { class: "incident", "data-id": l.incident_id, "data-status": l.status, "data-category": l.category },
      head,
      el("div", { class: "summary" }, l.summary),
      el("div", { class: "inc-body" }, graph(l), timeline(b)),
      ev
    );
  }

  function render() {
    const list = [...S.incidents.values()].filter((b) => b.first && b.latest);
    list.sort((a, b) => {
      const ra = a.latest.status === "resolved" ? 1 : 0;
      const rb = b.latest.status === "resolved" ? 1 : 0;
      return ra - rb || ms(b.latest.updated_at) - ms(a.latest.updated_at);
    });
    const box = $("incidents");
    box.replaceChildren(...(list.length ? list.slice(0, 30).map(card) : [el("p", { class: "empty" }, "No incidents yet. Waiting for the stream…")]));
    const open = list.filter((b) => b.latest.status !== "resolved").length;
    $("counts").textContent = open + " open · " + (list.length - open) + " resolved";
    $("clock").textContent = "event time " + clock(S.now);
    const br = $("breaker");
    br.dataset.state = S.breaker ? "open" : "closed";
    br.textContent = S.breaker ? "breaker OPEN: observe only" : "breaker closed";
    renderPending();
    renderGuards();
    renderValue(list);
  }

  function renderPending() {
    const box = $("pending");
    if (!S.pending.length) {
      box.replaceChildren(el("p", { class: "empty" }, "Nothing waits for a human."));
      return;
    }
    box.replaceChildren(
      ...S.pending.map((a) => {
        const dis = S.approvalsEnabled ? null : "disabled";
        return el(
          "div",
          { class: "pending-item", "data-action-id": a.action_id, "data-incident-id": a.incident_id },
          el("div", { class: "what" }, a.type + " " + a.target.service),
          el("div", { class: "thin small" }, "risk " + a.risk.toFixed(2) + " · incident " + a.incident_id + " · expires " + clock(a.expires_at)),
          el(
            "div",
            { class: "buttons" },
            el("button", { type: "button", class: "primary approve", disabled: dis, onclick: () => decide(a, true) }, "Approve"),
            el("button", { type: "button", class: "danger reject", disabled: dis, onclick: () => decide(a, false) }, "Reject")
          ),
          S.approvalsEnabled ? null : el("div", { class: "thin small" }, "approvals are off here (no API token configured, or no pipeline takes them)")
        );
      })
    );
  }

  function renderGuards() {
    const held = S.guards.filter((g) => g.holds > 0);
    const box = $("guards");
    const rows = held.map((g) => el("div", { class: "guard-row", "data-guard": g.guard }, el("span", {}, g.guard.replace(/_/g, " ")), el("b", {}, g.holds)));
    const recent = [];
    for (const b of S.incidents.values()) {
      for (const e of b.escalations) if (/held by guard /.test(e.reason)) recent.push(e);
    }
    recent.sort((a, b) => ms(b.created_at) - ms(a.created_at));
    const items = recent.slice(0, 4).map((e) => el("div", { class: "thin small" }, clock(e.created_at) + " " + e.reason));
    box.replaceChildren(...(rows.length || items.length ? rows.concat(items) : [el("p", { class: "empty" }, "No action held back.")]));
  }

  function renderValue(list) {
    let auto = 0;
    let approved = 0;
    let escalated = 0;
    let verified = 0;
    for (const b of list) {
      const ids = new Map();
      for (const a of b.actions) ids.set(a.action_id, (ids.get(a.action_id) || []).concat([a.decision]));
      const appr = [...ids.values()].some((d) => d.includes("approval_required") && d[d.length - 1] === "auto");
      const au = b.actions.some((a) => a.decision === "auto" && !(a.reason || "").startsWith("undo:") && !isDryRun(a));
      if (appr) approved++;
      else if (au) auto++;
      else if (b.escalations.length) escalated++;
      if (isVerified(b.latest)) verified++;
    }
    const kv = (k, v) => el("div", { class: "kv" }, el("span", {}, k), el("b", {}, v));
    $("value").replaceChildren(kv("incidents", list.length), kv("fixed automatically", auto), kv("approved by a human", approved), kv("escalated", escalated), kv("verified fixes", verified));
  }

  // ---- approvals ------------------------------------------------------

  function toast(msg, error) {
    const d = el("div", { class: error ? "error" : "" }, msg);
    $("toast").append(d);
    setTimeout(() => d.remove(), 6000);
  }

  function askToken(title) {
    return new Promise((resolve) => {
      const m = $("modal");
      const input = $("token-input");
      $("modal-title").textContent = title || "API token";
      input.value = "";
      m.hidden = false;
      input.focus();
      const done = (v) => {
        m.hidden = true;
        $("token-form").onsubmit = null;
        $("modal-cancel").onclick = null;
        resolve(v);
      };
      $("token-form").onsubmit = (ev) => {
        ev.preventDefault();
        done(input.value.trim() || null);
      };
      $("modal-cancel").onclick = () => done(null);
    });
  }

  async function decide(a, approve) {
    const verb = approve ? "approve" : "reject";
    let token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) {
      token = await askToken((approve ? "Approve " : "Reject ") + a.type + " " + a.target.service);
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
    }
    let r;
    try {
      r = await fetch("/api/actions/" + encodeURIComponent(a.action_id) + "/" + verb, {
        method: "POST",
        headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
        body: JSON.stringify({ by: "board" }),
      });
    } catch (e) {
      toast("could not reach reflex: " + e, true);
      return;
    }
    let body = {};
    try {
      body = await r.json();
    } catch (e) {
      body = {};
    }
    if (r.ok) {
      toast((approve ? "approved " : "rejected ") + a.type + " " + a.target.service);
    } else {
      if (r.status === 401) sessionStorage.removeItem(TOKEN_KEY);
      toast(verb + " failed (" + r.status + "): " + (body.message || body.error || r.statusText), true);
    }
    refresh();
  }

  $("token-button").addEventListener("click", async () => {
    const t = await askToken("API token");
    if (t) {
      sessionStorage.setItem(TOKEN_KEY, t);
      toast("token set for this tab");
      refresh();
    }
  });

  setInterval(() => {
    refresh();
    updateConn();
  }, POLL_MS);
  setInterval(updateConn, 1000);
  refresh();
  connect();
})();
