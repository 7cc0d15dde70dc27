// kdeploy: small enhancements; every page works without this file.
"use strict";

// The same rules the server applies (validation.rs); the server checks again.
const rules = {
  dns1035(v) {
    if (!v) return "Enter a name.";
    if (v.length > 63) return "Use at most 63 characters (this has " + v.length + ").";
    if (/[A-Z]/.test(v)) return "Use lowercase letters only.";
    if (/[^a-z0-9-]/.test(v)) return "Use lowercase letters, digits and '-'.";
    if (!/^[a-z]/.test(v)) return "Start with a letter.";
    if (v.endsWith("-")) return "End with a letter or digit.";
    return "";
  },
  image(v) {
    if (!v) return "Enter an image, for example nginx or ghcr.io/org/app:1.0.";
    if (/\s/.test(v)) return "Remove the spaces: an image reference has none.";
    const at = v.indexOf("@");
    if (at >= 0 && !/^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/.test(v.slice(at + 1)))
      return "A digest looks like sha256: followed by 64 lowercase hex digits.";
    const name = at >= 0 ? v.slice(0, at) : v;
    const slash = name.lastIndexOf("/");
    const colon = name.lastIndexOf(":");
    const path = colon > slash ? name.slice(0, colon) : name;
    if (colon > slash && !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(name.slice(colon + 1)))
      return "The tag may use letters, digits, '_', '.' and '-'.";
    const parts = path.split("/");
    if (parts.length > 1 && /[.:]|^localhost$/.test(parts[0])) parts.shift();
    for (const p of parts) {
      if (!/^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/.test(p))
        return "'" + p + "' is not a valid image name part: lowercase letters and digits separated by '.', '_' or '-'.";
    }
    return "";
  },
  port(v) {
    if (!/^\d+$/.test(v)) return "Enter a whole number from 1 to 65535.";
    const n = Number(v);
    return n >= 1 && n <= 65535 ? "" : n + " is not a port: use 1 to 65535.";
  },
  replicas(v, input) {
    const max = Number(input.max || 5);
    if (v === "") return "";
    if (!/^\d+$/.test(v)) return "Enter a whole number from 1 to " + max + ".";
    const n = Number(v);
    return n >= 1 && n <= max ? "" : n + " is out of range: use 1 to " + max + ".";
  },
};

function showError(input, message) {
  const id = input.name + "-error";
  let p = document.getElementById(id);
  if (!message) {
    if (p) p.remove();
    input.removeAttribute("aria-invalid");
    return;
  }
  if (!p) {
    p = document.createElement("p");
    p.className = "error";
    p.id = id;
    p.setAttribute("role", "alert");
    input.insertAdjacentElement("afterend", p);
  }
  p.textContent = message;
  input.setAttribute("aria-invalid", "true");
}

function check(input) {
  const rule = rules[input.dataset.rule];
  if (!rule) return true;
  const message = rule(input.value.trim(), input);
  showError(input, message);
  return !message;
}

// Set once a form's submission is under way: the page is being left, so what the live stream
// says of the page now ("gone" after this very delete, a list that changed because of this very
// form) must not reload it: a reload started while the form's request is in flight cancels that
// navigation, and a user who deleted a repository from its page was shown "not found" instead of
// the list the delete redirects to.
let leaving = false;

function reload() {
  if (!leaving) location.reload();
}

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-validate]")) {
    for (const input of form.querySelectorAll("[data-rule]")) {
      input.addEventListener("input", () => check(input));
      input.addEventListener("blur", () => check(input));
    }
  }

  for (const form of document.querySelectorAll("form")) {
    form.addEventListener("submit", (event) => {
      if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
        event.preventDefault();
        return;
      }
      if (form.hasAttribute("data-validate")) {
        const inputs = [...form.querySelectorAll("[data-rule]")];
        const ok = inputs.map(check).every(Boolean);
        if (!ok) {
          event.preventDefault();
          form.querySelector("[aria-invalid=true]")?.focus();
          return;
        }
      }
      // The request is in flight: no double submit, and no reload that would cancel it.
      for (const b of form.querySelectorAll("button[type=submit]")) b.disabled = true;
      leaving = true;
    });
  }
  // A chosen file is read into its textarea (the Compose page), which is what the form sends;
  // without this script the textarea is pasted into by hand.
  for (const input of document.querySelectorAll("input[type=file][data-load-into]")) {
    input.addEventListener("change", async () => {
      const file = input.files && input.files[0];
      const target = document.getElementById(input.dataset.loadInto);
      if (!file || !target) return;
      target.value = await file.text();
    });
  }
  // A page restored from the back/forward cache must not keep disabled buttons.
  window.addEventListener("pageshow", () => {
    leaving = false;
    for (const b of document.querySelectorAll("button[type=submit]")) b.disabled = false;
  });

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    try {
      await navigator.clipboard.writeText(button.dataset.copy);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Select and copy";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });

  const table = document.querySelector("table[data-poll]");
  if (table) follow(table.dataset.live, "repos", (j) => applyList(table, j), () => refresh(table), 3000);
  const detail = document.querySelector("div.heading[data-poll]");
  if (detail) follow(detail.dataset.live, "repo", applyDetail, () => refreshDetail(detail.dataset.poll), 2000);
});

// Live updates: the server sends the page's data as server-sent events whenever it changes, so
// an open page asks nothing of anyone while nothing changes. Polling runs only while there is no
// stream: without EventSource, while the browser re-establishes a dropped stream (it does so by
// itself after the reconnection time the server sets), and for good after a refused stream
// (401, 404, 429: the browser does not retry those) or three failures in a row.
function follow(liveUrl, eventName, apply, poll, every) {
  let timer = null;
  const startPolling = () => { if (!timer) { poll(); timer = setInterval(poll, every); } };
  const stopPolling = () => { if (timer) { clearInterval(timer); timer = null; } };
  if (!liveUrl || !window.EventSource) { startPolling(); return; }
  const source = new EventSource(liveUrl);
  let failures = 0;
  source.addEventListener("open", () => { failures = 0; stopPolling(); });
  source.addEventListener(eventName, (event) => {
    let data;
    try { data = JSON.parse(event.data); } catch { return; }
    apply(data);
  });
  // The repository was deleted, or the session ended: the page as it is now says so.
  source.addEventListener("gone", () => { source.close(); reload(); });
  source.addEventListener("signed-out", () => { source.close(); reload(); });
  source.addEventListener("error", () => {
    failures += 1;
    if (source.readyState === EventSource.CLOSED || failures >= 3) source.close();
    startPolling();
  });
}

const pill = { Ready: "ready", Deploying: "deploying", Updating: "updating", Failing: "failing" };

function cell(text, tag) {
  const el = document.createElement(tag || "span");
  el.textContent = text;
  return el;
}

// States refresh without a reload: the list polls the same data the API serves.
async function refresh(table) {
  let overview;
  try {
    const response = await fetch(table.dataset.poll, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    overview = await response.json();
  } catch {
    return;
  }
  applyList(table, overview);
}

// The list's rows from the list's data (`/api/v1/repos`).
function applyList(table, overview) {
  // A repository made or deleted elsewhere (another tab, kubectl, a page rendered just before
  // the site's view caught up with a delete) changes the rows themselves: the page is rendered
  // again, which also shows the empty-list text once the last one is gone.
  const names = new Set((overview.repositories || []).map((r) => r.name));
  const shown = [...table.querySelectorAll("tr[data-repo]")].map((tr) => tr.dataset.repo);
  if (names.size !== shown.length || shown.some((n) => !names.has(n))) {
    reload();
    return;
  }
  for (const repo of overview.repositories || []) {
    const tr = table.querySelector('tr[data-repo="' + CSS.escape(repo.name) + '"]');
    if (!tr) continue;
    tr.querySelector('[data-field="replicas"]').textContent = repo.replicas.ready + " / " + repo.replicas.desired;
    const state = tr.querySelector('[data-field="state"]');
    const p = cell(repo.state);
    p.className = "pill " + (pill[repo.state] || "");
    state.replaceChildren(p);
    if (repo.reason) state.append(" ", cell(repo.reason, "small"));
    renderEndpoint(tr.querySelector('[data-field="endpoint"]'), repo.endpoint);
  }
}

function renderState(el, repo) {
  const p = cell(repo.state);
  p.className = "pill " + (pill[repo.state] || "");
  el.replaceChildren(p);
}

function renderEndpoint(el, url) {
  if (!el) return;
  if (url) {
    const a = cell(url, "a");
    a.href = url;
    const b = cell("Copy", "button");
    b.type = "button";
    b.className = "copy";
    b.dataset.copy = url;
    el.replaceChildren(a, " ", b);
  } else {
    const s = cell("available when ready");
    s.className = "muted";
    el.replaceChildren(s);
  }
}

// The ingress controller's verdict in one line, as the page renders it.
function routeSummary(route) {
  if (route.verdict === "accepted") return "in service: accepted by the ingress controller";
  if (route.verdict === "pending") return "waiting for the ingress controller to accept it";
  return "not in service: " + route.reason + ": " + route.message;
}

// The detail page's overview follows the rollout through the same JSON the API serves.
async function refreshDetail(url) {
  let repo;
  try {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    repo = await response.json();
  } catch {
    return;
  }
  applyDetail(repo);
}

// The overview, pods and route from one repository's data (`/api/v1/repos/{name}`).
function applyDetail(repo) {
  const field = (name) => document.querySelector('[data-field="' + name + '"]');
  const r = repo.replicas;
  renderState(field("state"), repo);
  field("replicas").textContent = r.ready + " ready of " + r.desired;
  const progress = field("progress");
  progress.max = Math.max(r.desired, 1);
  progress.value = Math.min(r.updated, r.desired);
  field("rollout").textContent = r.updated + " of " + r.desired + " updated";
  field("image").textContent = repo.image;
  const pods = field("pods");
  if (pods && Array.isArray(repo.pods)) {
    pods.replaceChildren(...repo.pods.map((p) => {
      const tr = document.createElement("tr");
      const name = cell(p.name, "code");
      const td = (child) => { const c = document.createElement("td"); c.append(child); return c; };
      tr.append(td(name), td(p.reason || p.phase), td(p.ready ? "yes" : "no"), td(String(p.restarts)), td(p.age));
      return tr;
    }));
  }
  const route = field("route");
  if (route && repo.route) {
    route.dataset.verdict = repo.route.verdict;
    route.textContent = routeSummary(repo.route);
  }
  if (field("endpoint").dataset.url !== (repo.endpoint || "")) {
    renderEndpoint(field("endpoint"), repo.endpoint);
    field("endpoint").dataset.url = repo.endpoint || "";
  }
}

// Logs page, follow mode: the server streams new lines (chunked text); they are appended as
// text, never as markup.
(function followLogs() {
  const pre = document.querySelector("pre[data-log-follow]");
  if (!pre || !window.fetch || !window.TextDecoder) return;
  const url = pre.dataset.logFollow;
  pre.textContent = "";
  fetch(url, { credentials: "same-origin" }).then(async (response) => {
    if (!response.ok || !response.body) {
      pre.textContent = "Following stopped: the server answered " + response.status + ".";
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(decoder.decode(value, { stream: true }));
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }
    pre.append("\n(the container stopped; reload to follow again)\n");
  }).catch(() => pre.append("\n(following stopped: connection lost)\n"));
})();
