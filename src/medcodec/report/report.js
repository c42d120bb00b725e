/* medcodec report viewer: windows the stored values in the page, no library, no network.
 *
 * Each slice arrives packed (see medcodec/report/pack.py): base64 -> zlib (inflated by the
 * browser's DecompressionStream) -> little-endian byte planes of zig-zag residuals -> values,
 * either plus the original ("diff") or plus the median edge predictor ("med").
 * Display value = rint(clip((v * slope + intercept - (L - W / 2)) / W * 255, 0, 255)), halves to
 * even: the formula of medcodec.bench.metrics.render_window, so Python can check the pixels.
 */
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("report-data").textContent);
  if (D.kind !== "image") { return; }

  const R = D.rows, C = D.cols, P = R * C, N = D.slices.length;
  const NV = D.versions.length;
  const statusEl = document.getElementById("status");
  const state = {
    slice: 0, width: D.presets[D.initial].width, level: D.presets[D.initial].level,
    zoom: 1, cx: C / 2, cy: R / 2, errScale: null, errCommon: false,
  };

  // ---------------------------------------------------------------- decoding
  function base64Bytes(text) {
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out;
  }

  async function inflate(bytes) {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  async function unpack(entry, reference) {
    const raw = await inflate(base64Bytes(entry.z));
    const n = entry.n;
    if (raw.length !== n * P) { throw new Error("slice data has the wrong size"); }
    const out = new Float64Array(P);
    for (let i = 0; i < P; i++) {
      let z = 0, m = 1;
      for (let k = 0; k < n; k++) { z += raw[k * P + i] * m; m *= 256; }
      out[i] = (z % 2 === 0) ? z / 2 : -(z + 1) / 2;
    }
    if (entry.m === "diff") {
      for (let i = 0; i < P; i++) { out[i] += reference[i]; }
      return out;
    }
    for (let r = 0, i = 0; r < R; r++) {  // causal median edge prediction, in place
      for (let c = 0; c < C; c++, i++) {
        const a = c ? out[i - 1] : (r ? out[i - C] : 0);
        const b = r ? out[i - C] : a;
        const d = (r && c) ? out[i - C - 1] : (r ? b : a);
        const lo = Math.min(a, b), hi = Math.max(a, b);
        out[i] += d >= hi ? lo : (d <= lo ? hi : a + b - d);
      }
    }
    return out;
  }

  const cache = new Map();  // slice -> Promise of {original, versions: [values]}
  function sliceData(s) {
    if (!cache.has(s)) {
      cache.set(s, (async () => {
        const original = await unpack(D.original[s], null);
        const versions = [];
        for (const v of D.versions) { versions.push(await unpack(v.data[s], original)); }
        return { original, versions };
      })());
      while (cache.size > 8) { cache.delete(cache.keys().next().value); }
    }
    return cache.get(s);
  }

  // ---------------------------------------------------------------- windowing
  function rintClip(x) {
    if (!(x > 0)) { return 0; }
    if (x >= 255) { return 255; }
    const f = Math.floor(x), d = x - f;
    return d > 0.5 ? f + 1 : (d < 0.5 ? f : (f % 2 === 0 ? f : f + 1));
  }
  function display(v) {
    const hu = v * D.slope + D.intercept;
    const g = rintClip((hu - (state.level - state.width / 2.0)) / state.width * 255.0);
    return D.photometric === "MONOCHROME1" ? 255 - g : g;
  }
  function windowLut() {
    const lo = D.range[0], size = D.range[1] - D.range[0] + 1;
    if (size > (1 << 22)) { return null; }
    const lut = new Uint8Array(size);
    for (let i = 0; i < size; i++) { lut[i] = display(lo + i); }
    return lut;
  }

  const LUT = D.errorLut;
  function errorScale(k) {
    if (state.errScale !== null) { return state.errScale; }
    if (state.errCommon) { return Math.max(0, ...D.versions.map((v) => v.maxAbs)); }
    return D.versions[k].maxAbs;
  }

  // ---------------------------------------------------------------- panels
  const panels = [];  // {view, off, kind: "image"|"error", index, title, stats}
  const grid = document.getElementById("panels");
  const cards = [];  // one column per version: image above, error map below

  function makePanel(card, kind, index, titleText) {
    const box = document.createElement("div");
    box.className = "panel";
    const title = document.createElement("div");
    title.className = "title";
    title.textContent = titleText;
    title.title = titleText;
    const stats = document.createElement("div");
    stats.className = "stats";
    const view = document.createElement("canvas");
    view.className = "view";
    view.id = kind === "error" ? `error-${index}` : (index < 0 ? "image-original" : `image-${index}`);
    const off = document.createElement("canvas");
    off.width = C; off.height = R;
    box.append(title, stats, view);
    const panel = { box, view, off, kind, index, title, stats, legend: null, maxAbs: 0 };
    if (kind === "error") {
      const legend = document.createElement("div");
      legend.className = "legend";
      const bar = document.createElement("canvas");
      bar.width = 255; bar.height = 1;
      const ctx = bar.getContext("2d");
      const img = ctx.createImageData(255, 1);
      for (let i = 0; i < 255; i++) {
        for (let j = 0; j < 3; j++) { img.data[4 * i + j] = LUT[3 * (i + 1) + j]; }
        img.data[4 * i + 3] = 255;
      }
      ctx.putImageData(img, 0, 0);
      const ticks = document.createElement("div");
      ticks.className = "ticks";
      legend.append(bar, ticks);
      box.append(legend);
      panel.legend = ticks;
    }
    card.append(box);
    panels.push(panel);
    return panel;
  }

  function makeCard() {
    const card = document.createElement("div");
    card.className = "card";
    grid.append(card);
    cards.push(card);
    return card;
  }

  const first = makeCard();
  makePanel(first, "image", -1, "Original");
  const explain = document.createElement("div");
  explain.className = "panel explain";
  explain.innerHTML = "<div class=\"title\">Error maps</div><div class=\"stats\">Next to each " +
    "version: decoded &minus; original in stored units" + (D.unit ? ` (&times; ${Math.abs(D.slope)} ` +
    `for ${D.unit})` : "") + ", on a diverging scale from &minus;S (blue) through 0 (black) to " +
    "+S (red); S is each map's maximum unless set above.</div>";
  first.append(explain);
  D.versions.forEach((v, k) => {
    const card = makeCard();
    makePanel(card, "image", k, v.label);
    makePanel(card, "error", k, `${v.label}: error`);
  });

  // Panels as large as the window allows: each version's error map below its image
  // ("stacked", the default) or, when that leaves width unused, beside it ("side").
  function layout() {
    const gap = 10;
    const avail = Math.max(320, grid.clientWidth || document.documentElement.clientWidth - 32);
    const top = grid.getBoundingClientRect().top + window.scrollY;
    const caption = panels[0].title.offsetHeight + panels[0].stats.offsetHeight + 4;
    const room = window.innerHeight - top;
    const byHeight = (rows) => Math.floor((room - rows * caption - 30 - 12 * rows) / rows * C / R);
    const perRow = Math.max(1, Math.min(cards.length, Math.floor((avail + gap) / (200 + gap))));
    const stacked = Math.min(Math.floor((avail + gap) / perRow) - gap, byHeight(2));
    const sideBy = Math.min(Math.floor((avail + gap) / (1 + 2 * NV)) - gap, byHeight(1));
    const side = sideBy >= 200 && sideBy > 1.08 * stacked;
    const w = Math.max(120, Math.min(512, side ? sideBy : stacked));
    const h = Math.max(1, Math.round(w * R / C));
    grid.classList.toggle("side", side);
    const dpr = window.devicePixelRatio || 1;
    for (const card of cards) { card.style.width = side && card !== cards[0] ? `${2 * w + gap}px` : `${w}px`; }
    for (const p of panels) {
      p.box.style.width = `${w}px`;
      p.view.style.width = `${w}px`;
      p.view.style.height = `${h}px`;
      p.view.width = Math.round(w * dpr);
      p.view.height = Math.round(h * dpr);
    }
    explain.style.width = `${w}px`;
  }

  function scale() {  // device pixels per image pixel
    const v = panels[0].view;
    return Math.min(v.width / C, v.height / R) * state.zoom;
  }
  function imageToCanvas(x, y) {
    const v = panels[0].view, s = scale();
    return [(x - state.cx) * s + v.width / 2, (y - state.cy) * s + v.height / 2];
  }
  function canvasToImage(px, py) {
    const v = panels[0].view, s = scale();
    return [(px - v.width / 2) / s + state.cx, (py - v.height / 2) / s + state.cy];
  }

  function drawViews() {
    const s = scale();
    for (const p of panels) {
      const ctx = p.view.getContext("2d");
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, p.view.width, p.view.height);
      ctx.imageSmoothingEnabled = false;
      ctx.setTransform(s, 0, 0, s, p.view.width / 2 - state.cx * s,
                       p.view.height / 2 - state.cy * s);
      ctx.drawImage(p.off, 0, 0);
    }
    document.getElementById("zoom-label").textContent = `${Math.round(state.zoom * 100)}%`;
  }

  let current = null;  // the decoded data of the slice on screen
  function renderImages() {
    if (!current) { return; }
    const lut = windowLut(), lo = D.range[0];
    for (const p of panels) {
      if (p.kind !== "image") { continue; }
      const values = p.index < 0 ? current.original : current.versions[p.index];
      const ctx = p.off.getContext("2d");
      const img = ctx.createImageData(C, R);
      const px = img.data;
      for (let i = 0; i < P; i++) {
        const g = lut ? lut[values[i] - lo] : display(values[i]);
        px[4 * i] = g; px[4 * i + 1] = g; px[4 * i + 2] = g; px[4 * i + 3] = 255;
      }
      ctx.putImageData(img, 0, 0);
    }
    document.getElementById("win-width").value = String(+state.width.toFixed(1));
    document.getElementById("win-level").value = String(+state.level.toFixed(1));
    for (const b of document.querySelectorAll("#presets button")) {
      const preset = D.presets[+b.dataset.index];
      b.classList.toggle("active", preset.width === state.width && preset.level === state.level);
    }
  }

  function unitText(stored) {
    const hu = stored * Math.abs(D.slope);
    return D.unit ? `${stored} (${+hu.toFixed(3)} ${D.unit})` : `${stored}`;
  }

  function renderErrors() {
    if (!current) { return; }
    for (const p of panels) {
      if (p.kind !== "error") { continue; }
      const values = current.versions[p.index], orig = current.original;
      const S = errorScale(p.index);
      const ctx = p.off.getContext("2d");
      const img = ctx.createImageData(C, R);
      const px = img.data;
      let maxAbs = 0;
      for (let i = 0; i < P; i++) {
        const e = values[i] - orig[i];
        if (Math.abs(e) > maxAbs) { maxAbs = Math.abs(e); }
        const t = S > 0 ? Math.max(-1, Math.min(1, e / S)) : 0;
        const j = 3 * (Math.round(t * 127) + 128);
        px[4 * i] = LUT[j]; px[4 * i + 1] = LUT[j + 1]; px[4 * i + 2] = LUT[j + 2];
        px[4 * i + 3] = 255;
      }
      ctx.putImageData(img, 0, 0);
      p.maxAbs = maxAbs;
      p.stats.textContent = `max |err| ${unitText(maxAbs)}; all slices ` +
        `${D.versions[p.index].maxAbs}`;
      p.stats.title = p.stats.textContent;
      p.legend.innerHTML = "";
      const ticks = S > 0 ? [`\u2212${unitText(S)}`, "0", `+${unitText(S)}`] : ["0: identical"];
      for (const t of ticks) {
        const span = document.createElement("span");
        span.textContent = t;
        p.legend.append(span);
      }
    }
  }

  function fmt(x, digits) { return x === null || x === undefined ? "\u221e" : x.toFixed(digits); }
  function renderCaptions() {
    const s = state.slice;
    for (const p of panels) { p.stats.title = ""; }
    document.getElementById("slice-label").textContent =
      `${s + 1} / ${N} (slice ${D.slices[s]} of ${D.nSource} in the source)`;
    for (const p of panels) {
      if (p.kind !== "image") { continue; }
      if (p.index < 0) {
        p.stats.textContent = `stored range ${D.range[0]}..${D.range[1]}`;
        continue;
      }
      const st = D.versions[p.index].stats[s];
      const lossless = D.versions[p.index].mode === "lossless";
      p.stats.textContent = `${st.bytes} B, ${st.bpp.toFixed(3)} bpp, ` +
        `${lossless ? "\u221e" : fmt(st.psnr, 2)} dB, max |err| ${st.maxAbs}`;
      p.stats.title = p.stats.textContent;
    }
  }

  // ---------------------------------------------------------------- state changes
  let token = 0;
  async function setSlice(s) {
    s = Math.max(0, Math.min(N - 1, Math.round(s)));
    const mine = ++token;
    const data = await sliceData(s);
    if (mine !== token) { return state.slice; }
    state.slice = s;
    current = data;
    document.getElementById("slice").value = String(s);
    renderCaptions();
    renderImages();
    renderErrors();
    drawViews();
    if (s + 1 < N) { sliceData(s + 1); }  // decode ahead
    return s;
  }

  let frame = 0;
  function redraw(images, errors) {
    if (frame) { return; }
    frame = requestAnimationFrame(() => {
      frame = 0;
      if (images) { renderImages(); }
      if (errors) { renderErrors(); }
      drawViews();
    });
  }

  function setWindow(width, level) {
    if (!(width > 0) || !Number.isFinite(level)) { return; }
    state.width = width; state.level = level;
    renderImages();
    drawViews();
  }

  function setView(zoom, cx, cy) {
    state.zoom = Math.max(0.1, Math.min(64, zoom));
    state.cx = cx; state.cy = cy;
    drawViews();
  }
  function fit() { setView(1, C / 2, R / 2); }

  // ---------------------------------------------------------------- controls
  const slider = document.getElementById("slice");
  slider.max = String(N - 1);
  if (N < 2) { document.getElementById("slice-group").classList.add("single"); slider.disabled = true; }
  slider.addEventListener("input", () => { setSlice(+slider.value); });

  const presetBox = document.getElementById("presets");
  D.presets.forEach((preset, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.index = String(i);
    b.textContent = preset.name;
    b.title = `W ${+preset.width.toFixed(1)} / L ${+preset.level.toFixed(1)} ${D.unit}`;
    b.addEventListener("click", () => setWindow(preset.width, preset.level));
    presetBox.append(b);
  });
  document.getElementById("win-unit").textContent = D.unit;
  for (const id of ["win-width", "win-level"]) {
    document.getElementById(id).addEventListener("change", () => {
      setWindow(+document.getElementById("win-width").value,
                +document.getElementById("win-level").value);
    });
  }
  document.getElementById("zoom-in").addEventListener("click",
    () => setView(state.zoom * 1.25, state.cx, state.cy));
  document.getElementById("zoom-out").addEventListener("click",
    () => setView(state.zoom / 1.25, state.cx, state.cy));
  document.getElementById("zoom-fit").addEventListener("click", fit);
  const errInput = document.getElementById("err-scale");
  errInput.addEventListener("change", () => {
    const value = errInput.value.trim();
    state.errScale = value === "" || !(+value >= 0) ? null : +value;
    renderErrors(); drawViews();
  });
  document.getElementById("err-common").addEventListener("change", (e) => {
    state.errCommon = e.target.checked;
    renderErrors(); drawViews();
  });
  let dragMode = "wl";
  for (const radio of document.querySelectorAll("input[name=drag]")) {
    radio.addEventListener("change", () => { if (radio.checked) { dragMode = radio.value; } });
  }

  const readout = document.getElementById("readout");
  function showReadout(p, event) {
    if (!current) { return; }
    const dpr = window.devicePixelRatio || 1;
    const rect = p.view.getBoundingClientRect();
    const [x, y] = canvasToImage((event.clientX - rect.left) * dpr,
                                 (event.clientY - rect.top) * dpr);
    const ix = Math.floor(x), iy = Math.floor(y);
    if (ix < 0 || iy < 0 || ix >= C || iy >= R) { readout.textContent = "\u00a0"; return; }
    const i = iy * C + ix;
    const phys = (v) => (D.unit ? ` = ${+(v * D.slope + D.intercept).toFixed(2)} ${D.unit}` : "");
    const parts = [`x ${ix}, y ${iy}`, `original ${current.original[i]}${phys(current.original[i])}`];
    D.versions.forEach((v, k) => {
      const value = current.versions[k][i];
      parts.push(`${v.label} ${value} (err ${value - current.original[i]})`);
    });
    readout.textContent = parts.join(" | ");
  }

  let drag = null;
  for (const p of panels) {
    const view = p.view;
    view.addEventListener("contextmenu", (e) => e.preventDefault());
    view.addEventListener("pointerdown", (e) => {
      const pan = dragMode === "pan" || e.button === 1 || e.button === 2 || e.shiftKey ||
        p.kind === "error";
      drag = { pan, x: e.clientX, y: e.clientY, width: state.width, level: state.level,
               cx: state.cx, cy: state.cy };
      view.setPointerCapture(e.pointerId);
      e.preventDefault();
    });
    view.addEventListener("pointermove", (e) => {
      showReadout(p, e);
      if (!drag) { return; }
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (drag.pan) {
        const s = scale() / (window.devicePixelRatio || 1);
        state.cx = drag.cx - dx / s; state.cy = drag.cy - dy / s;
        redraw(false, false);
      } else {
        state.width = Math.max(1, drag.width * Math.exp(dx / 150));
        state.level = drag.level + dy * drag.width / 300;
        redraw(true, false);
      }
    });
    const end = () => { drag = null; };
    view.addEventListener("pointerup", end);
    view.addEventListener("pointercancel", end);
    view.addEventListener("dblclick", fit);
    view.addEventListener("wheel", (e) => {
      e.preventDefault();
      const dpr = window.devicePixelRatio || 1;
      const rect = view.getBoundingClientRect();
      const px = (e.clientX - rect.left) * dpr, py = (e.clientY - rect.top) * dpr;
      const [ix, iy] = canvasToImage(px, py);
      const zoom = Math.max(0.1, Math.min(64, state.zoom * Math.exp(-e.deltaY / 500)));
      state.zoom = zoom;
      const s = scale();
      state.cx = ix - (px - view.width / 2) / s;
      state.cy = iy - (py - view.height / 2) / s;
      redraw(false, false);
    }, { passive: false });
  }
  window.addEventListener("resize", () => { layout(); drawViews(); });

  // ---------------------------------------------------------------- start
  layout();
  let ready;
  if (typeof DecompressionStream === "undefined") {
    statusEl.textContent = "This browser cannot inflate the embedded images (it lacks " +
      "DecompressionStream: use Chrome/Edge 80+, Firefox 113+ or Safari 16.4+).";
    ready = Promise.reject(new Error("no DecompressionStream"));
    ready.catch(() => {});
  } else {
    ready = setSlice(0).catch((err) => {
      statusEl.textContent = `The embedded images could not be decoded: ${err}`;
      throw err;
    });
  }

  /* For tests and scripts: everything the controls do, plus where an image pixel lands. */
  window.medcodecReport = {
    ready,
    setSlice,
    setWindow,
    setView,
    state: () => ({ ...state, scale: scale() }),
    canvasPoint: (x, y) => imageToCanvas(x + 0.5, y + 0.5).map(Math.floor),
    panelIds: () => panels.map((p) => p.view.id),
    errorMax: () => panels.filter((p) => p.kind === "error").map((p) => p.maxAbs),
    values: async (s) => {
      const data = await sliceData(s);
      return { original: Array.from(data.original),
               versions: data.versions.map((v) => Array.from(v)) };
    },
  };
})();
