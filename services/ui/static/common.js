// Shared by every page: CSRF-carrying fetch, formatting, the live event stream.
"use strict";
const simreel = window.simreel || (window.simreel = {});

simreel.csrf = () => (document.cookie.match(/(?:^|; )simreel_csrf=([^;]+)/) || [])[1] || "";

simreel.api = async (path, opts = {}) => {
  const o = Object.assign({ credentials: "same-origin" }, opts);
  if (o.method && o.method !== "GET") o.headers = Object.assign({ "X-CSRF-Token": simreel.csrf() }, o.headers || {});
  const r = await fetch(path, o);
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  return { ok: r.ok, status: r.status, body };
};

simreel.el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k.nodeType ? k : document.createTextNode(String(k)));
  return e;
};

simreel.fmt = {
  bytes: (n) => n == null ? "" : n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`,
  num: (x, d = 3) => x == null ? "" : Number(x).toFixed(d),
  time: (ts) => ts ? new Date(ts * 1000).toLocaleString() : "",
  secs: (s) => s == null ? "" : s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`,
};

simreel.status = (s) => simreel.el("span", { class: `status ${s}`, text: s });

// Server-sent events fed from NATS: no polling. On "reload" (this page fell behind) start over.
simreel.stream = (query, handlers) => {
  const es = new EventSource(`/api/events${query}`);
  for (const [kind, fn] of Object.entries(handlers)) es.addEventListener(kind, (m) => fn(JSON.parse(m.data)));
  es.addEventListener("reload", () => location.reload());
  return es;
};
