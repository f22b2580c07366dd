// Video + telemetry charts on one exact time axis: frame k of an episode is at video_t = k / fps.
//
// The cursor is a line drawn over each chart and moved with a CSS transform on every video frame
// (requestVideoFrameCallback), so the charts never redraw while the video plays. A click or drag on a
// chart seeks the video to the exact video_t of the frame under the pointer; arrow keys step one frame.
"use strict";
simreel.Player = class {
  constructor(video, chartsEl, readout) {
    this.video = video; this.chartsEl = chartsEl; this.readout = readout;
    this.charts = []; this.lines = []; this.t = []; this.fps = 30; this.frame = -1;
    this.dragging = false;  // a seek-drag on a chart; one mouseup listener for all charts of all loads
    window.addEventListener("mouseup", () => { this.dragging = false; });
    this.followers = [];  // the same camera's depth / segmentation previews, kept on the video's frame
    this._tick = this._tick.bind(this);
    video.addEventListener("play", () => { for (const f of this.followers) f.play().catch(() => {}); });
    video.addEventListener("pause", () => { for (const f of this.followers) f.pause(); this._follow(true); });
    video.addEventListener("ratechange", () => { for (const f of this.followers) f.playbackRate = video.playbackRate; });
    video.addEventListener("seeked", () => this.sync());
    video.addEventListener("timeupdate", () => { if (video.paused) this.sync(); });
    video.addEventListener("loadedmetadata", () => this.sync());
    document.addEventListener("keydown", (e) => {
      if (!this.t.length || /INPUT|SELECT|TEXTAREA/.test(document.activeElement.tagName)) return;
      if (e.key === "ArrowRight" || e.key === "ArrowLeft") { e.preventDefault(); this.step(e.key === "ArrowRight" ? 1 : -1); }
    });
    if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) video.requestVideoFrameCallback(this._tick);
    else video.addEventListener("timeupdate", () => this.sync());
  }

  _tick(now, meta) {
    this.sync(meta.mediaTime);
    this.video.requestVideoFrameCallback(this._tick);
  }

  // Index of the frame shown at time t: the last frame whose video_t <= t (binary search).
  indexAt(t) {
    const a = this.t; let lo = 0, hi = a.length - 1;
    if (!a.length) return -1;
    if (t <= a[0]) return 0;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (a[mid] <= t + 1e-6) lo = mid; else hi = mid - 1; }
    return lo;
  }

  sync(mediaTime) {
    const t = mediaTime !== undefined && !this.video.seeking ? mediaTime : this.video.currentTime;
    const i = this.indexAt(t);
    if (i < 0 || i === this.frame) return;
    this.frame = i;
    for (let c = 0; c < this.charts.length; c++) {
      const u = this.charts[c];
      this.lines[c].style.transform = `translateX(${u.valToPos(this.t[i], "x")}px)`;
      u.root.parentNode.dataset.frame = this.frames[i];
      this._legend(u);
    }
    this.readout.textContent = `frame ${this.frames[i]} · t ${this.t[i].toFixed(3)} s` +
      this.series.filter((s) => s.group !== "time").slice(0, 6).map((s) => ` · ${s.name} ${s.values[i] == null ? "–" : (+s.values[i]).toFixed(3)}`).join("");
    this.chartsEl.dataset.frame = this.frames[i];
    this._follow(this.video.paused || this.video.seeking);
    if (this.onFrame) this.onFrame(this.frames[i]);
  }

  // Followers show the video's frame: exactly when paused or seeking (the middle of the frame's
  // interval, so no rounding lands on its neighbour); while playing they play along and are only
  // put back when they drift by more than a frame.
  _follow(exact) {
    if (!this.followers.length || this.frame < 0) return;
    const t = this.t[this.frame] + 0.5 / this.fps;
    for (const f of this.followers) {
      if (exact || Math.abs(f.currentTime - t) > 1 / this.fps) f.currentTime = t;
      f.dataset.frame = this.frames[this.frame];
    }
  }

  setFollowers(list) {
    for (const f of this.followers) f.pause();
    this.followers = list;
    this._follow(true);
  }

  // A legend reads the frame under the pointer while hovering, and the video's frame otherwise
  // (uPlot blanks it to "--" when the pointer leaves).
  _legend(u) {
    if (u.cursor.idx == null && this.frame >= 0) u.setLegend({ idx: this.frame }, false);
  }

  seekIndex(i) {
    i = Math.max(0, Math.min(this.t.length - 1, i));
    this.video.currentTime = this.t[i];
    this.frame = -1;
    this.sync(this.t[i]);
  }

  step(d) {
    this.video.pause();
    const cur = this.frame >= 0 ? this.frame : this.indexAt(this.video.currentTime);
    this.seekIndex(cur + d);
  }

  clear() {
    for (const u of this.charts) u.destroy();
    this.chartsEl.replaceChildren();
    this.charts = []; this.lines = []; this.t = []; this.frame = -1;
  }

  // cols: {video_t, frame, series: [{name, group, values}], fps}
  load(cols) {
    this.clear();
    this.t = cols.video_t; this.frames = cols.frame; this.fps = cols.fps || this.fps; this.series = cols.series;
    const groups = new Map();
    for (const s of cols.series) { if (s.group === "time") continue; (groups.get(s.group) || groups.set(s.group, []).get(s.group)).push(s); }
    const width = Math.max(320, this.chartsEl.clientWidth - 4);
    const palette = ["#1f6feb", "#f79009", "#12b76a", "#d92d20", "#7a5af8", "#0e9384", "#dd2590", "#667085"];
    for (const [group, list] of groups) {
      const box = simreel.el("div", { class: "chart", "data-group": group }, simreel.el("h4", { text: group }));
      this.chartsEl.append(box);
      const shown = list.slice(0, 24);
      const u = new uPlot({
        width, height: 140, legend: { show: shown.length <= 12 },
        cursor: { drag: { x: false, y: false }, points: { show: false } },
        hooks: { setCursor: [(c) => this._legend(c)] },
        scales: { x: { time: false } },
        axes: [{ label: "video time (s)", size: 30 }, { size: 50 }],
        series: [{ label: "t" }, ...shown.map((s, k) => ({ label: s.name, stroke: palette[k % palette.length], width: 1, spanGaps: true }))],
      }, [this.t, ...shown.map((s) => s.values)], box);
      const line = simreel.el("div", { class: "cursor-line" });
      u.over.append(line);
      const seekAt = (e) => { const i = u.posToIdx(e.offsetX); if (i != null) { this.video.pause(); this.seekIndex(i); } };
      u.over.addEventListener("mousedown", (e) => { this.dragging = true; seekAt(e); });
      u.over.addEventListener("mousemove", (e) => { if (this.dragging) seekAt(e); });
      this.charts.push(u); this.lines.push(line);
    }
    this.frame = -1;
    this.sync();
  }
};
