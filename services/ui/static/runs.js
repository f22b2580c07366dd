// Runs page: one page of runs from /api/runs, kept current by server-sent events.
"use strict";
(() => {
  const { el, fmt, api } = simreel;
  const PAGE = 50;
  const state = { offset: 0, total: 0, rows: new Map(), facetsLoaded: false };
  const tbody = document.querySelector("#runs tbody");
  const f = { session: "#f-session", status: "#f-status", scene: "#f-scene", tag: "#f-tag" };
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
      el("td", { class: "num", text: arts }), el("td", { class: "num", text: fmt.num(r.mean_return) }), el("td", {}, warn));
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
    const t0 = performance.now();
    const { body } = await api(`/api/runs?${q}`);
    state.total = body.total; state.rows.clear();
    tbody.replaceChildren(...body.runs.map((r) => { const tr = row(r); state.rows.set(r.run_id, tr); return tr; }));
    facets(body.facets);
    document.querySelector("#count").textContent = `${body.total} runs${body.replaying ? " (replaying the log…)" : ""}`;
    document.querySelector("#pageinfo").textContent = body.total ? `${state.offset + 1}–${Math.min(state.offset + PAGE, body.total)} of ${body.total}` : "";
    document.querySelector("#prev").disabled = state.offset === 0;
    document.querySelector("#next").disabled = state.offset + PAGE >= body.total;
    simreel.lastLoadMs = performance.now() - t0;
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
    recorder: (r) => simreel.recorders && simreel.recorders.update(r) });
  es.onerror = () => { document.querySelector("#live").textContent = "reconnecting…"; };
  load();
})();
