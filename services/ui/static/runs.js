// Runs page: one page of runs from /api/runs, kept current by server-sent events.
"use strict";
(() => {
  const { el, fmt, api } = simreel;
  const PAGE = 50;
  const state = { offset: 0, total: 0, rows: new Map(), facetsLoaded: false };
  const tbody = document.querySelector("#runs tbody");
  const f = { session: "#f-session", status: "#f-status", scene: "#f-scene", tag: "#f-tag", keep: "#f-keep" };
  const filt = () => Object.fromEntries(Object.entries(f).map(([k, s]) => [k, document.querySelector(s).value]));

  function row(r) {
    const seeds = r.seeds.length > 3 ? `${r.seeds[0]}…${r.seeds[r.seeds.length - 1]}` : r.seeds.join(", ");
    const tags = Object.entries(r.tags).map(([k, v]) => `${k}=${v}`).join(" ");
    const arts = r.expected_artifacts != null && r.status !== "completed" ? `${r.artifacts}/${r.expected_artifacts}` : r.artifacts;
    const warn = r.error ? el("span", { class: "err", text: `${r.error_code}: ${r.error}`.slice(0, 120) })
      : el("span", { class: "warn", text: r.warnings.join("; ").slice(0, 120) });
    return el("tr", { "data-run": r.run_id },
      el("td", {}, el("a", { href: `/runs/${r.run_id}`, text: r.run_id })), el("td", {}, simreel.status(r.status)),
      el("td", { text: r.scene }), el("td", { class: "num", text: `${r.episodes_ended}/${r.episodes}` }),
      el("td", { text: seeds }), el("td", { text: r.session }), el("td", { text: tags }),
      el("td", { text: fmt.time(r.created) }), el("td", { class: "num", text: fmt.secs(r.wall_s) }),
      el("td", { class: "num", text: arts }), el("td", { class: "num", text: fmt.num(r.mean_return) }),
      el("td", { class: r.discarded ? "keep discarded" : "keep", text: keepText(r) }), el("td", { class: "warnings" }, warn));
  }

  function keepText(r) {
    if (!r.kept && !r.discarded) return "";
    if (r.episodes === 1) return r.kept ? "kept" : "discarded";
    return `${r.kept} kept · ${r.discarded} discarded`;
  }

  function facets(fc) {
    const fill = (sel, values) => {
      const s = document.querySelector(sel), cur = s.value;
      s.replaceChildren(el("option", { value: "", text: "all" }), ...values.map((v) => el("option", { value: v, text: v })));
      s.value = cur;
    };
    fill(f.session, fc.sessions); fill(f.status, fc.statuses); fill(f.tag, fc.tags);
  }

  async function load() {
    const q = new URLSearchParams({ ...filt(), offset: state.offset, limit: PAGE });
    const { body } = await api(`/api/runs?${q}`);
    state.total = body.total; state.rows.clear();
    tbody.replaceChildren(...body.runs.map((r) => { const tr = row(r); state.rows.set(r.run_id, tr); return tr; }));
    facets(body.facets);
    document.querySelector("#count").textContent = `${body.total} runs${body.replaying ? " (replaying the log…)" : ""}`;
    document.querySelector("#pageinfo").textContent = body.total ? `${state.offset + 1}–${Math.min(state.offset + PAGE, body.total)} of ${body.total}` : "";
    document.querySelector("#prev").disabled = state.offset === 0;
    document.querySelector("#next").disabled = state.offset + PAGE >= body.total;
    document.body.dataset.loaded = "1";
  }

  let pending = null;
  const reloadSoon = () => { if (!pending) pending = setTimeout(() => { pending = null; load(); }, 300); };

  function matches(r) {
    const x = filt();
    if (x.session && r.session !== x.session) return false;
    if (x.status && r.status !== x.status) return false;
    if (x.scene && !r.scene.toLowerCase().includes(x.scene.toLowerCase())) return false;
    if (x.tag) { const [k, v] = x.tag.split("="); if (!(k in r.tags) || (v !== undefined && r.tags[k] !== v)) return false; }
    if (x.keep && !r[x.keep]) return false;
    return true;
  }

  function onRun(r) {
    const tr = state.rows.get(r.run_id);
    if (tr) {
      if (matches(r)) { const n = row(r); tr.replaceWith(n); state.rows.set(r.run_id, n); } else reloadSoon();
    } else if (state.offset === 0 && matches(r)) reloadSoon();
  }

  for (const s of Object.values(f)) document.querySelector(s).addEventListener("change", () => { state.offset = 0; load(); });
  document.querySelector("#prev").onclick = () => { state.offset = Math.max(0, state.offset - PAGE); load(); };
  document.querySelector("#next").onclick = () => { state.offset += PAGE; load(); };
  const es = simreel.stream("", { hello: () => { document.querySelector("#live").textContent = "live"; }, run: onRun,
    replayed: () => { load(); api("/api/recorders").then(({ body }) => body.recorders.forEach((r) => simreel.recorders.update(r))); },
    recorder: (r) => simreel.recorders && simreel.recorders.update(r) });
  es.onerror = () => { document.querySelector("#live").textContent = "reconnecting…"; };
  load();
})();

// Live recorders (simreel.gym.RecordVideo in a training loop): their latest announcement, and buttons
// that publish CaptureControlRequested; each shows up as applied at the recorder's next episode boundary.
simreel.recorders = (() => {
  const { el, api } = simreel;
  const section = document.querySelector("#recorders"), tbody = section.querySelector("tbody");
  const rows = new Map();
  const control = async (id, action, every) => {
    const { ok, body } = await api(`/api/recorders/${encodeURIComponent(id)}/control`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ action, every }) });
    if (!ok) alert(body.error);
  };
  const setKeep = async (id, keep, input) => {
    const { ok, body } = await api(`/api/recorders/${encodeURIComponent(id)}/keep`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ keep }) });
    input.setCustomValidity(ok ? "" : body.error); input.title = ok ? "" : body.error;
    if (!ok) input.reportValidity();
  };
  const parse = (input) => { try { return JSON.parse(input.value); } catch (e) { input.setCustomValidity(e.message); input.reportValidity(); return undefined; } };
  function row(r) {
    const every = el("input", { type: "number", min: "1", value: r.cadence || 1, class: "every-n" });
    const applied = r.applied.length ? r.applied[r.applied.length - 1] : null;
    const keepApplied = r.keep_applied.length ? r.keep_applied[r.keep_applied.length - 1] : null;
    const rule = el("input", { class: "keep-rule", size: "22", value: '{"rule": "failures"}', spellcheck: "false" });
    return el("tr", { "data-recorder": r.recorder_id },
      el("td", { text: r.recorder_id }), el("td", { text: r.session }), el("td", { text: r.env_id }),
      el("td", { text: r.trigger }), el("td", { class: "num", text: r.episodes_seen }), el("td", { class: "num", text: r.videos_recorded }),
      el("td", { text: r.recording_next ? "recording" : "–" }),
      el("td", {},
        el("button", { class: "record-next", text: "record next episode", onclick: () => control(r.recorder_id, "record_next") }), " ",
        el("button", { class: "every", text: "every", onclick: () => control(r.recorder_id, "every", Number(every.value)) }), every, " ",
        el("button", { class: "off", text: "off", onclick: () => control(r.recorder_id, "off") }), " ",
        el("button", { class: "stop danger", text: "stop", onclick: () => control(r.recorder_id, "stop") })),
      el("td", {}, rule, " ",
        el("button", { class: "set-keep", text: "set", onclick: () => { const k = parse(rule); if (k !== undefined) setKeep(r.recorder_id, k, rule); } }), " ",
        el("button", { class: "keep-all", text: "keep all", onclick: () => setKeep(r.recorder_id, null, rule) })),
      el("td", { class: "applied", text: [
        r.pending.length ? `pending: ${r.pending.map((p) => p.action).join(", ")}` : "",
        applied ? `${applied.action}${applied.every ? " " + applied.every : ""} at episode ${applied.episode}` : "",
        r.keep_pending.length ? "keep rule pending" : "",
        keepApplied ? `keep ${keepApplied.rule || "all"} from episode ${keepApplied.episode}` : ""].filter(Boolean).join("; ") }));
  }
  function update(r) {
    const old = rows.get(r.recorder_id);
    if (r.state !== "running") { if (old) { old.remove(); rows.delete(r.recorder_id); } }
    else if (!old) { const n = row(r); tbody.prepend(n); rows.set(r.recorder_id, n); }
    else {
      // A recorder re-announces at every episode boundary: its figures are redrawn, its two control
      // cells stay, so what is being typed there (and the answer to the last rule sent) is not lost.
      const cells = [...row(r).children];
      [...old.children].forEach((td, i) => { if (!td.querySelector("input")) td.replaceWith(cells[i]); });
    }
    section.hidden = rows.size === 0;
  }
  api("/api/recorders").then(({ body }) => body.recorders.forEach(update));
  return { update };
})();
