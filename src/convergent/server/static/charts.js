// Live metric charts (uPlot): points arrive pushed over the channel, columnar (base64 of
// little-endian float64), only those since the last push. One chart per metric, x = step,
// the raw series faint and an exponential moving average on top (TensorBoard's debiased
// smoothing), vertical dashed lines where the config changed, zoom shared by every chart.
import { h, fmt } from "./common.js";

const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d"];

function positive(values) {
  for (let i = 0; i < values.length; i++) if (!(values[i] > 0) && Number.isFinite(values[i])) return false;
  return values.length > 0;
}

function f64(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Float64Array(bytes.buffer);
}

class Series {
  constructor() {
    this.n = 0;
    this.x = new Float64Array(1024);
    this.y = new Float64Array(1024);
    this.s = new Float64Array(1024);
  }
  grow(need) {
    if (need <= this.x.length) return;
    let cap = this.x.length;
    while (cap < need) cap *= 2;
    for (const k of ["x", "y", "s"]) {
      const a = new Float64Array(cap);
      a.set(this[k].subarray(0, this.n));
      this[k] = a;
    }
  }
  set(x, y) {
    this.n = 0;
    this.append(x, y);
  }
  append(x, y) {
    const start = this.n;
    this.grow(this.n + x.length);
    this.x.set(x, this.n);
    this.y.set(y, this.n);
    this.n += x.length;
    if (start > 0 && x.length && x[0] < this.x[start - 1]) this.sort();
  }
  sort() {
    const idx = Array.from({ length: this.n }, (_, i) => i).sort((a, b) => this.x[a] - this.x[b]);
    const x = idx.map((i) => this.x[i]);
    const y = idx.map((i) => this.y[i]);
    this.x.set(x);
    this.y.set(y);
  }
  smooth(weight) {
    // Debiased EMA: the first points are not pulled towards zero.
    let last = 0, debias = 0;
    const { y, s, n } = this;
    for (let i = 0; i < n; i++) {
      const v = y[i];
      if (!Number.isFinite(v)) { s[i] = v; continue; }
      last = last * weight + (1 - weight) * v;
      debias = debias * weight + (1 - weight);
      s[i] = last / debias;
    }
  }
  data() {
    return [this.x.subarray(0, this.n), this.y.subarray(0, this.n), this.s.subarray(0, this.n)];
  }
}

export class Charts {
  constructor(container, { onFirstDraw }) {
    this.container = container;
    this.series = new Map();
    this.plots = new Map();
    this.markers = [];
    this.weight = 0.6;
    this.logY = false;
    this.zoomed = null; // [min, max] while someone zoomed, shared by every chart
    this.onFirstDraw = onFirstDraw;
    this.drawn = false;

    new ResizeObserver(() => this.resize()).observe(container);
  }

  update(metrics) {
    for (const [name, m] of Object.entries(metrics)) {
      let s = this.series.get(name);
      if (!s) this.series.set(name, (s = new Series()));
      const x = f64(m.step), y = f64(m.value);
      if (m.mode === "append") s.append(x, y); else s.set(x, y); // "full" or a "preview"
      s.smooth(this.weight);
    }
    this.render();
  }

  setSmoothing(weight) {
    this.weight = weight;
    for (const s of this.series.values()) s.smooth(weight);
    this.render();
  }

  /** Log-scale y axes (for the charts whose values are all positive). */
  setLog(on) {
    this.logY = on;
    for (const u of this.plots.values()) {
      u.root.parentElement.remove();
      u.destroy();
    }
    this.plots.clear();
    this.render();
  }

  setMarkers(markers) {
    this.markers = markers;
    for (const u of this.plots.values()) u.redraw(false, false);
  }

  resetZoom() {
    this.zoomed = null;
    for (const [name, u] of this.plots) u.setData(this.series.get(name).data(), true);
  }

  width() {
    // Two charts a row on a laptop screen or wider, one on narrow ones.
    const wide = this.container.clientWidth >= 1000;
    this.container.classList.toggle("two", wide);
    const w = wide ? (this.container.clientWidth - 12) / 2 : this.container.clientWidth;
    return Math.max(300, Math.floor(w - 26));
  }

  resize() {
    const width = this.width();
    for (const u of this.plots.values()) u.setSize({ width, height: 200 });
  }

  render() {
    const names = [...this.series.keys()].sort();
    const empty = this.container.querySelector(".empty");
    if (empty && names.length) empty.remove();
    names.forEach((name) => {
      const s = this.series.get(name);
      let u = this.plots.get(name);
      if (!u) {
        u = this.create(name, COLORS[this.plots.size % COLORS.length], s.data());
        this.plots.set(name, u);
        if (this.zoomed !== null) u.setScale("x", { min: this.zoomed[0], max: this.zoomed[1] });
      } else {
        u.setData(s.data(), this.zoomed === null);
        if (this.zoomed !== null) u.setScale("x", { min: this.zoomed[0], max: this.zoomed[1] });
      }
      const last = s.n ? s.y[s.n - 1] : null;
      u.root.parentElement.querySelector(".last").textContent =
        s.n ? `${fmt(last)} at step ${fmt(s.x[s.n - 1])} · ${fmt(s.n)} points` : "";
    });
    // Charts in name order, whichever metric was logged first.
    const cards = names.map((name) => this.plots.get(name).root.parentElement);
    if (cards.some((card, k) => this.container.children[k] !== card)) this.container.append(...cards);
  }

  create(name, color, data) {
    const card = h("figure.card.chart", { "data-metric": name },
      h("figcaption", {}, h("strong", {}, name), " ", h("span.muted.last", {})));
    this.container.append(card);
    const charts = this;
    const opts = {
      width: this.width(),
      height: 200,
      scales: { x: { time: false }, y: { distr: this.logY && positive(data[1]) ? 3 : 1 } },
      legend: { show: true },
      cursor: { drag: { x: true, y: false, setScale: false } },
      series: [
        { label: "step", value: (u, v) => (v == null ? "—" : fmt(v)) },
        { label: name, stroke: color + "66", width: 1, points: { show: false } },
        { label: "smoothed", stroke: color, width: 2, points: { show: false },
          value: (u, v) => (v == null ? "—" : fmt(v)) },
      ],
      axes: [{ values: (u, vals) => vals.map((v) => fmt(v)) }, { size: 60 }],
      hooks: {
        draw: [(u) => charts.drawMarkers(u)],
        // A drag selects a range; zooming to it is ours to do, for every chart at once.
        setSelect: [(u) => {
          if (u.select.width < 2) return;
          const min = u.posToVal(u.select.left, "x");
          const max = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          charts.zoomTo(min, max);
        }],
      },
    };
    const u = new uPlot(opts, data, card);
    this.wheelAndPan(u);
    if (!this.drawn && data[0].length) {
      this.drawn = true;
      requestAnimationFrame(() => this.onFirstDraw());
    }
    return u;
  }

  /** A person's zoom or pan: every chart shows the same steps, kept while points arrive. */
  zoomTo(min, max) {
    if (!(max > min)) return;
    this.zoomed = [min, max];
    for (const u of this.plots.values()) u.setScale("x", { min, max });
  }

  wheelAndPan(u) {
    const over = u.over;
    over.addEventListener("wheel", (e) => {
      e.preventDefault();
      const { min, max } = u.scales.x;
      const at = u.posToVal(e.offsetX, "x");
      const f = e.deltaY < 0 ? 0.8 : 1.25;
      this.zoomTo(at - (at - min) * f, at + (max - at) * f);
    }, { passive: false });
    over.addEventListener("dblclick", () => this.resetZoom());
    over.addEventListener("mousedown", (e) => {
      if (!e.shiftKey) return;
      e.stopPropagation();
      e.preventDefault();
      const x0 = e.clientX, { min, max } = u.scales.x;
      const per = (max - min) / u.bbox.width * devicePixelRatio;
      const move = (ev) => {
        const d = (ev.clientX - x0) * per;
        this.zoomTo(min - d, max - d);
      };
      const up = () => { removeEventListener("mousemove", move); removeEventListener("mouseup", up); };
      addEventListener("mousemove", move);
      addEventListener("mouseup", up);
    }, true);
  }

  drawMarkers(u) {
    const ctx = u.ctx;
    const { top, height } = u.bbox;
    ctx.save();
    ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    ctx.textAlign = "left"; // uPlot leaves the axes' alignment in the context
    let row = 0;
    for (const m of this.markers) {
      if (m.step < u.scales.x.min || m.step > u.scales.x.max) continue;
      const x = Math.round(u.valToPos(m.step, "x", true));
      ctx.strokeStyle = "#6b7280";
      ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, top + height);
      ctx.stroke();
      ctx.fillStyle = "#374151";
      const label = m.label;
      const w = ctx.measureText(label).width;
      const right = u.bbox.left + u.bbox.width;
      const tx = x + 4 + w <= right ? x + 4 : Math.max(u.bbox.left, x - 4 - w);
      const ty = top + 4 + (row % 4) * 14 * devicePixelRatio;
      ctx.fillStyle = "rgba(255, 255, 255, 0.85)"; // readable over the lines
      ctx.fillRect(tx - 2, ty - 1, w + 4, 13 * devicePixelRatio);
      ctx.fillStyle = "#374151";
      ctx.fillText(label, tx, ty);
      row++;
    }
    ctx.restore();
  }
}

/** Chart markers from the history: config changes with the step they took effect at. */
export function markersFrom(history) {
  return history
    .filter((e) => e.part === "config" && e.step !== null && e.key)
    .map((e) => ({
      step: e.step,
      label: `${e.key} ${e.old === null ? "" : fmt(e.old) + " → "}${fmt(e.new)}, ${e.user}, step ${fmt(e.step)}`,
    }));
}
