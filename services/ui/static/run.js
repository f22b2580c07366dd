// Run page: the run's facts, its videos with telemetry charts, artifacts, and live progress while in flight.
"use strict";
(() => {
  const { el, fmt, api } = simreel;
  const runId = decodeURIComponent(location.pathname.split("/").pop());
  const $ = (s) => document.querySelector(s);
  const player = new simreel.Player($("#video"), $("#charts"), $("#readout"));
  simreel.player = player;
  let detail = null, current = null, currentHref = null, progress = {};
  // How to read the stored depth and segmentation (report.json's "streams"), and the planes of the
  // frames asked for so far (by file and frame).
  let perception = null;
  const planes = new Map();

  function render(d) {
    detail = d;
    const s = d.summary;
    document.title = `simreel — ${runId}`;
    $("#title").replaceChildren(`run ${runId} `, simreel.status(s.status));
    $("#facts").textContent = [s.scene, `session ${s.session}`, `seeds ${s.seeds.join(", ")}`, fmt.time(s.created),
      s.wall_s != null ? `wall ${fmt.secs(s.wall_s)}` : null, d.gl_renderer ? `GL ${d.gl_backend}: ${d.gl_renderer}` : null,
      d.fps ? `${d.fps} fps` : null].filter(Boolean).join(" · ");
    $("#error").textContent = s.error ? `${s.error_code}: ${s.error}` : "";
    $("#again").disabled = !d.request;
    $("#delete").disabled = !d.artifacts.some((a) => !a.deleted);
    renderEpisodes();
    $("#artifacts tbody").replaceChildren(...d.artifacts.map((a) => el("tr", { "data-key": a.key, class: a.deleted ? "deleted" : null },
      el("td", { text: a.kind }), el("td", { text: a.episode == null ? "all" : a.episode }), el("td", { text: a.format }),
      el("td", { class: "num", text: fmt.bytes(a.bytes) }),
      el("td", {}, a.deleted ? el("del", { text: a.key }) : el("a", { href: `${a.href}?download=1`, text: a.key })))));
    const dels = $("#deletions");
    dels.hidden = !d.deletions.length;
    dels.querySelector("ul").replaceChildren(...d.deletions.map((x) => el("li", { "data-key": x.key, text: `ArtifactDeleted ${x.key} (${x.reason})` })));
    if (d.delete_requested && d.artifacts.some((a) => !a.deleted)) $("#delete-note").textContent = "DeleteRequested published; waiting for retention…";
    else if (d.deletions.length) $("#delete-note").textContent = `${d.deletions.length} artifacts deleted`;
    $("#request").textContent = JSON.stringify(d.request, null, 2);
    renderProgress();
    renderTabs();
    if (d.has.includes("report")) fetch(`/api/runs/${runId}/text/report`).then((r) => r.ok ? r.text() : "").then((t) => {
      $("#report").textContent = t || "—";
      try { perception = readPerception(JSON.parse(t).streams); } catch (e) { perception = null; }
    });
    if (d.has.includes("scene")) fetch(`/api/runs/${runId}/text/scene`).then((r) => r.ok ? r.text() : "").then((t) => { $("#scene").textContent = t || "—"; });
  }

  // Episodes, with what a keep rule decided (kept, or discarded with the rule and the reason).
  function renderEpisodes() {
    const want = $("#ep-keep").value;
    const fate = (e) => e.kept === null ? "" : e.kept ? "kept" : "discarded";
    const shown = detail.episodes.filter((e) => !want || fate(e) === want);
    $("#ep-count").textContent = detail.episodes.some((e) => e.kept !== null) ? `${shown.length} of ${detail.episodes.length} episodes` : "";
    $("#episodes tbody").replaceChildren(...shown.map((e) => el("tr", { "data-episode": e.episode, "data-keep": fate(e) || null },
      el("td", { class: "num", text: e.episode }), el("td", { class: "num", text: e.seed }), el("td", { class: "num", text: e.steps }),
      el("td", { class: "num", text: fmt.num(e.return) }), el("td", { class: "num", text: e.frames }),
      el("td", { text: e.terminated ? "terminated" : "truncated" }),
      el("td", { class: e.kept === false ? "keep discarded" : "keep", title: e.rule ? `rule: ${e.rule}` : null,
        text: e.kept === null ? "" : `${fate(e)}: ${e.reason}` }),
      el("td", { class: "warn", text: e.warnings.join("; ") || (e.blank ? "blank" : e.frozen ? "frozen" : "") }))));
  }

  function renderProgress() {
    const s = detail.summary, inflight = !s.finished;
    $("#progress").hidden = !inflight;
    if (!inflight) { $("#preview").hidden = true; return; }
    const fpe = detail.frames_per_episode || progress.frames || 0, total = fpe * s.episodes;
    let sim = s.episodes_ended * fpe;
    if (progress.episode != null && progress.episode >= s.episodes_ended) sim = progress.episode * fpe + progress.frame + 1;
    const bar = (id, done, of, txt) => { $(`#bar-${id}`).style.width = of ? `${Math.min(100, 100 * done / of)}%` : "0"; $(`#txt-${id}`).textContent = txt; };
    bar("sim", sim, total, total ? `${Math.min(sim, total)} / ${total} frames` : "waiting for a simulator");
    bar("enc", s.videos, s.expected_videos || 0, s.expected_videos ? `${s.videos} / ${s.expected_videos} videos` : `${s.videos} videos`);
    bar("sto", s.stored_artifacts, s.expected_artifacts || 0, s.expected_artifacts ? `${s.stored_artifacts} / ${s.expected_artifacts} artifacts` : `${s.stored_artifacts} artifacts`);
  }

  function renderTabs() {
    const keys = Object.keys(detail.videos).sort((a, b) => (a === "all") - (b === "all") || a - b);
    $("#viewer").hidden = !keys.length;
    $("#tabs").replaceChildren(...keys.map((k) => el("button", { class: k === current ? "on" : null, "data-episode": k,
      text: k === "all" ? "all episodes" : `episode ${k}`, onclick: () => select(k) })));
    if (keys.length && (current === null || !keys.includes(current))) select(keys[0]);
    else if (current !== null) select(current, true);
  }

  async function select(key, refresh = false) {
    const v = detail.videos[key][0];
    const changed = key !== current || v.href !== currentHref;
    current = key;
    for (const b of $("#tabs").children) b.classList.toggle("on", b.dataset.episode === key);
    if (!changed && refresh) return;
    currentHref = v.href;
    const video = $("#video");
    if (v.href) { video.src = v.href; } else { video.removeAttribute("src"); video.load(); }
    const canAv1 = video.canPlayType('video/mp4; codecs="av01.0.05M.08"');
    $("#codec-note").textContent = !v.href ? "video deleted" : v.av1 && !canAv1 ? "AV1: this browser cannot play it; download it instead" : v.av1 ? "AV1" : "";
    $("#identical").textContent = v.identical_to.length ? `byte-identical (sha256 ${v.sha256.slice(0, 12)}…) to run ${v.identical_to.join(", ")}` : `sha256 ${v.sha256.slice(0, 12)}…`;
    showStreams(v);
    if (!detail.has.includes("telemetry")) { player.clear(); return; }
    const { ok, body } = await api(`/api/runs/${runId}/telemetry?episode=${key}`);
    if (ok && key === current) {
      player.load(body);
      document.body.dataset.charts = key;
    }
  }

  function readPerception(streams) {
    if (!streams) return null;
    const names = new Map();
    for (const o of (streams.segmentation && streams.segmentation.legend) || []) names.set(`${o.stored[1]}:${o.stored[0]}`, o);
    return { scale: streams.depth ? streams.depth.scale_m : 0.001, names };
  }

  // The camera's depth and segmentation previews beside its video, on the video's frame; the pointer
  // over any of the views reads the stored depth (metres) and object of that pixel.
  function showStreams(v) {
    const box = $("#streams"), views = [$("#video")], files = {};
    box.replaceChildren();
    for (const name of ["depth", "segmentation"]) {
      const s = v.streams && v.streams[name];
      if (!s || !s.preview) continue;
      const video = el("video", { muted: "", playsinline: "", preload: "auto", src: s.preview, "data-stream": name });
      video.muted = true;
      box.append(el("figure", {}, video, el("figcaption", { text: name === "depth" ? "depth (viridis: near dark, far bright)" : "segmentation" })));
      views.push(video);
      if (s.key) files[name] = s.key;
    }
    player.setFollowers(views.slice(1));
    $("#pointer").textContent = "";
    for (const view of views) {
      view.onmousemove = (e) => pointAt(view, e, files);
      view.onmouseleave = () => { $("#pointer").textContent = ""; };
    }
  }

  async function framePlanes(key, frame) {
    const id = `${key}@${frame}`;
    if (!planes.has(id)) {
      planes.set(id, api(`/api/runs/${runId}/pixels?key=${encodeURIComponent(key)}&frame=${frame}`).then(({ ok, body }) => ok ? body : null));
      if (planes.size > 64) planes.delete(planes.keys().next().value);
    }
    return planes.get(id);
  }

  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));

  async function pointAt(view, e, files) {
    if (!Object.keys(files).length || player.frame < 0) return;
    const frame = player.frames[player.frame];
    const out = [];
    for (const [name, key] of Object.entries(files)) {
      const p = await framePlanes(key, frame);
      if (!p) continue;
      const x = Math.min(p.width - 1, Math.floor(e.offsetX / view.clientWidth * p.width));
      const y = Math.min(p.height - 1, Math.floor(e.offsetY / view.clientHeight * p.height));
      const at = y * p.width + x;
      if (name === "depth") {
        const q = new DataView(bytes(p.depth_u16).buffer).getUint16(at * 2, true);
        out.push(q === 65535 ? "depth ≥ 65.535 m" : `depth ${(q * (perception ? perception.scale : 0.001)).toFixed(3)} m`);
        $("#pointer").dataset.depthM = q === 65535 ? "inf" : (q * (perception ? perception.scale : 0.001)).toFixed(3);
      } else {
        const id = new DataView(bytes(p.id_u16).buffer).getUint16(at * 2, true), type = bytes(p.type_u8)[at];
        const o = perception && perception.names.get(`${type}:${id}`);
        const label = id === 0 ? "no object" : o ? `${o.type} ${o.name || o.type + o.id}` : `object ${id - 1} (type ${type - 1})`;
        out.push(label);
        $("#pointer").dataset.object = id === 0 ? "" : o ? o.name : "";
      }
    }
    $("#pointer").textContent = `frame ${frame} · pixel ${Math.floor(e.offsetX / view.clientWidth * (view.videoWidth || 1))}, ${Math.floor(e.offsetY / view.clientHeight * (view.videoHeight || 1))} · ${out.join(" · ")}`;
    $("#pointer").dataset.frame = frame;
  }

  async function refresh() {
    const { ok, status, body } = await api(`/api/runs/${runId}`);
    if (!ok) { $("#title").textContent = status === 404 ? `no run ${runId} (yet)` : `error ${status}`; return; }
    render(body);
    document.body.dataset.loaded = "1";
  }
  let pending = null;
  const refreshSoon = () => { if (!pending) pending = setTimeout(() => { pending = null; refresh(); }, 250); };

  $("#ep-keep").onchange = () => { if (detail) renderEpisodes(); };
  $("#again").onclick = () => { location.href = `/new?from=${encodeURIComponent(runId)}`; };
  const del = $("#delete");
  del.onclick = async () => {
    if (!del.dataset.armed) { del.dataset.armed = "1"; del.textContent = "Really delete every artifact?"; return; }
    delete del.dataset.armed; del.textContent = "Delete";
    const { ok, body } = await api(`/api/runs/${runId}/delete`, { method: "POST" });
    $("#delete-note").textContent = ok ? "DeleteRequested published; waiting for retention…" : body.error;
  };

  const es = simreel.stream(`?run=${encodeURIComponent(runId)}`, {
    hello: () => { $("#live").textContent = "live"; },
    replayed: () => refresh(),
    event: (m) => { if (detail) { detail.summary = m.summary; renderProgress(); refreshSoon(); } else refresh(); },
    progress: (p) => { progress = p; if (detail) renderProgress(); },
    preview: (p) => { const img = $("#preview"); img.src = `data:image/png;base64,${p.png}`; img.hidden = false; img.dataset.frame = p.frame; },
  });
  es.onerror = () => { $("#live").textContent = "reconnecting…"; };
  refresh();
})();
