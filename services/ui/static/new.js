// New-run form → SimRequested. The server validates with the contract itself; its error names the
// field (`render.width`) and the limit, and is shown next to that field.
"use strict";
(() => {
  const { el, api } = simreel;
  const form = document.querySelector("#form");
  let base = {};  // a prefilled request's fields the form does not show (cameras, policy_params, assets…)

  function setPath(obj, path, value) {
    const parts = path.split("."); let o = obj;
    for (const p of parts.slice(0, -1)) o = o[p] = Object.assign({}, o[p]);
    o[parts[parts.length - 1]] = value;
  }
  function getPath(obj, path) { return path.split(".").reduce((o, p) => (o == null ? undefined : o[p]), obj); }

  function collect() {
    const req = JSON.parse(JSON.stringify(base));
    for (const inp of form.querySelectorAll("input[name], select[name]")) {
      const name = inp.name;
      if (inp.type === "file" || name === "outputs.formats" || name === "scene_path" || name === "render.streams") continue;
      let v = inp.value.trim();
      if (name === "tags") { setPath(req, name, Object.fromEntries(v ? v.split(",").map((kv) => { const [k, ...r] = kv.trim().split("="); return [k, r.join("=")]; }) : [])); continue; }
      if (v === "") { if (getPath(req, name) !== undefined) setPath(req, name, null); continue; }
      if (name === "outputs.keep") {  // a keep rule is JSON (docs/events.md, "Keep rules"); the server validates it
        try { v = JSON.parse(v); } catch (err) { throw Object.assign(new Error(`not JSON: ${err.message}`), { field: name }); }
      }
      if (inp.type === "number") v = Number(v);
      setPath(req, name, v);
    }
    if (req.max_steps != null) req.duration_s = null;
    setPath(req, "outputs.formats", [...form.querySelectorAll('input[name="outputs.formats"]:checked')].map((c) => c.value));
    setPath(req, "render.streams", ["rgb", ...[...form.querySelectorAll('input[name="render.streams"]:checked')].map((c) => c.value)]);
    return req;
  }

  function fill(req) {
    base = req;
    for (const inp of form.querySelectorAll("input[name], select[name]")) {
      if (inp.type === "file" || inp.name === "scene_path") continue;
      const v = getPath(req, inp.name);
      if (inp.name === "outputs.formats") { inp.checked = (v || []).includes(inp.value); continue; }
      if (inp.name === "render.streams") { inp.checked = (v || []).includes(inp.value); continue; }
      if (inp.name === "tags") { inp.value = Object.entries(v || {}).map(([k, x]) => `${k}=${x}`).join(", "); continue; }
      if (inp.name === "outputs.keep") { inp.value = v ? JSON.stringify(v) : ""; continue; }
      if (inp.name === "scene" && v && v.startsWith("<")) { inp.append(el("option", { value: v, text: "inline MJCF (from the run)" })); }
      if (inp.name === "scene" && v && req.files && v in req.files) { inp.append(el("option", { value: v, text: `${v} (from the run's stored files)` })); }
      if (v !== undefined && v !== null) inp.value = v; else if (inp.type === "number") inp.value = "";
    }
  }

  function showError(field, message) {
    for (const e of form.querySelectorAll(".err")) e.textContent = "";
    let f = field ? field.replace(/\[\d+\]$/, "").replace(/\.\d+$/, "") : null;
    let target = null;
    while (f && !(target = form.querySelector(`.err[data-for="${f}"]`))) f = f.includes(".") ? f.slice(0, f.lastIndexOf(".")) : null;
    (target || document.querySelector("#form-error")).textContent = message;
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const fd = new FormData();
    let req;
    try { req = collect(); } catch (err) { showError(err.field, err.message); return; }
    const file = form.querySelector('input[name="scene_file"]').files[0];
    fd.append("request", JSON.stringify(req));
    if (file) fd.append("scene_file", file, file.name);
    for (const a of form.querySelector('input[name="assets"]').files) fd.append("assets", a, a.name);
    // a folder's files keep their paths inside it: the robot's tree, meshes beside the MJCF's folder
    for (const f of form.querySelector('input[name="tree"]').files) fd.append("tree", f, f.webkitRelativePath || f.name);
    const zip = form.querySelector('input[name="scene_zip"]').files[0];
    if (zip) fd.append("scene_zip", zip, zip.name);
    const scenePath = form.querySelector('input[name="scene_path"]').value.trim();
    if (scenePath) fd.append("scene_path", scenePath);
    document.querySelector("#submit").disabled = true;
    const { ok, status, body } = await api("/api/runs", { method: "POST", body: fd });
    document.querySelector("#submit").disabled = false;
    if (ok) { location.href = body.href; return; }
    showError(body && body.field, body ? body.error : `error ${status}`);
  });

  (async () => {
    const { body } = await api("/api/scenes");
    const sel = document.querySelector("#scene");
    sel.replaceChildren(el("optgroup", { label: "builtin" }, ...body.builtin.map((s) => el("option", { value: s, text: s }))),
      body.gymnasium.length ? el("optgroup", { label: "gymnasium" }, ...body.gymnasium.map((s) => el("option", { value: s, text: s }))) : null);
    if (body.builtin.includes("cartpole")) sel.value = "cartpole";
    if (body.limits) {
      const mib = (n) => `${Math.round(n / 1048576)} MiB`;
      document.querySelector("#caps").textContent = `uploads: up to ${mib(body.limits.max_scene_file_bytes)} per file, ${mib(body.limits.max_scene_bytes)} per scene`;
    }
    const from = new URLSearchParams(location.search).get("from");
    if (from) {
      const r = await api(`/api/runs/${encodeURIComponent(from)}/request`);
      if (r.ok) { fill(r.body); document.querySelector("#from").textContent = `prefilled from run ${from}: the same seed gives a byte-identical video`; }
    }
    document.body.dataset.loaded = "1";
  })();
})();
