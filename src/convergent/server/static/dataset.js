// The dataset browser: a paged grid of samples (images drawn from their pixels), filters,
// counts per label, relabel by click or key, bulk edits, uploads. Edits show at once (the
// cell is marked pending) and settle when the hub acks; a refusal puts the old value back.
import { h, fmt } from "./common.js";

const PAGE = 200;

function bytes(b64) {
  const bin = atob(b64);
  const out = new Uint8ClampedArray(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export class DatasetBrowser {
  constructor(root, app) {
    this.root = root;
    this.app = app;
    this.ids = [];
    this.labels = [];
    this.splits = [];
    this.tags = {};
    this.counts = {};
    this.index = new Map();
    this.thumbs = new Map();
    this.requested = new Set();
    this.selected = new Set();
    this.pending = new Map(); // id -> label shown before the hub confirms
    this.page = 0;
    this.focusId = null;
    this.anchor = null;
    this.shown = [];
    this.firstPaint = false;
    this.grid = root.querySelector("#grid");
    this.detail = root.querySelector("#detail");
    this.bind();
  }

  bind() {
    const $ = (id) => this.root.querySelector("#" + id);
    for (const id of ["f-label", "f-split", "f-tag"]) $(id).addEventListener("change", () => { this.page = 0; this.render(); });
    $("ds-prev").addEventListener("click", () => { this.page = Math.max(0, this.page - 1); this.render(); });
    $("ds-next").addEventListener("click", () => { this.page += 1; this.render(); });
    $("sel-page").addEventListener("click", () => { for (const id of this.shown) this.selected.add(id); this.render(); });
    $("sel-none").addEventListener("click", () => { this.selected.clear(); this.render(); });
    $("bulk-relabel").addEventListener("click", () => {
      const v = $("bulk-label").value.trim();
      if (v !== "") this.relabel([...this.selected], v);
    });
    $("bulk-move").addEventListener("click", () => this.edit({ type: "split", samples: [...this.selected], split: $("bulk-split").value }));
    $("bulk-tagit").addEventListener("click", () => {
      const t = $("bulk-tag").value.trim();
      if (t) this.edit({ type: "tag", samples: [...this.selected], tag: t });
    });
    $("bulk-remove").addEventListener("click", () => this.remove([...this.selected]));
    $("add-go").addEventListener("click", () => this.addSamples());
    this.grid.addEventListener("keydown", (e) => this.key(e));
  }

  // -- state from the hub ----------------------------------------------------------------
  update(ds) {
    if (ds.ids) {
      this.ids = ds.ids;
      this.labels = ds.labels;
      this.splits = ds.splits;
      this.index = new Map(ds.ids.map((id, i) => [id, i]));
      for (const id of this.selected) if (!this.index.has(id)) this.selected.delete(id);
    }
    if (ds.changes) {
      for (const [id, label, split] of ds.changes) {
        const i = this.index.get(id);
        if (i !== undefined) { this.labels[i] = label; this.splits[i] = split; }
      }
    }
    if (ds.tags) this.tags = ds.tags;
    if (ds.thumbs) for (const [id, t] of Object.entries(ds.thumbs)) this.thumbs.set(id, t);
    this.counts = ds.counts;
    this.total = ds.total;
    this.render();
  }

  label(id) {
    if (this.pending.has(id)) return this.pending.get(id);
    return this.labels[this.index.get(id)];
  }

  filtered() {
    const $ = (id) => this.root.querySelector("#" + id).value;
    const label = $("f-label"), split = $("f-split"), tag = $("f-tag");
    const out = [];
    for (let i = 0; i < this.ids.length; i++) {
      const id = this.ids[i];
      if (label !== "" && String(this.label(id)) !== label) continue;
      if (split !== "" && this.splits[i] !== split) continue;
      if (tag !== "" && !(this.tags[id] || []).includes(tag)) continue;
      out.push(id);
    }
    return out;
  }

  // -- drawing ---------------------------------------------------------------------------
  renderFilters() {
    const sel = this.root.querySelector("#f-label");
    const labels = Object.keys(this.counts).sort((a, b) => (+a - +b) || a.localeCompare(b));
    const want = ["", ...labels].join("\u0001");
    if (sel.dataset.options !== want) {
      const cur = sel.value;
      sel.replaceChildren(h("option", { value: "" }, "all"), ...labels.map((l) => h("option", { value: l }, l)));
      sel.value = labels.includes(cur) ? cur : "";
      sel.dataset.options = want;
    }
    const tagSel = this.root.querySelector("#f-tag");
    const tags = [...new Set(Object.values(this.tags).flat())].sort();
    const wantTags = ["", ...tags].join("\u0001");
    if (tagSel.dataset.options !== wantTags) {
      const cur = tagSel.value;
      tagSel.replaceChildren(h("option", { value: "" }, "any"), ...tags.map((t) => h("option", { value: t }, t)));
      tagSel.value = tags.includes(cur) ? cur : "";
      tagSel.dataset.options = wantTags;
    }
    const max = Math.max(1, ...Object.values(this.counts));
    this.root.querySelector("#counts").replaceChildren(...labels.map((l) =>
      h("button.count", {
        type: "button", title: `show label ${l}`, "data-label": l,
        onclick: () => { sel.value = sel.value === l ? "" : l; this.page = 0; this.render(); },
      },
      h("span.count-label", {}, l),
      h("span.count-bar", { style: `width:${Math.round((60 * this.counts[l]) / max)}px` }),
      h("span.count-n", {}, fmt(this.counts[l])))));
  }

  render() {
    this.renderFilters();
    const ids = this.filtered();
    const pages = Math.max(1, Math.ceil(ids.length / PAGE));
    this.page = Math.min(this.page, pages - 1);
    this.shown = ids.slice(this.page * PAGE, (this.page + 1) * PAGE);
    this.root.querySelector("#ds-total").textContent = `${fmt(ids.length)} of ${fmt(this.ids.length)} samples`;
    this.root.querySelector("#ds-page").textContent = `page ${this.page + 1} / ${pages}`;
    this.root.querySelector("#sel-count").textContent = `${fmt(this.selected.size)} selected`;
    const hadFocus = this.grid.contains(document.activeElement);
    const missing = this.shown.filter((id) => !this.thumbs.has(id) && !this.requested.has(id));
    if (missing.length) this.fetchThumbs(missing);
    if (!this.focusId || !this.shown.includes(this.focusId)) this.focusId = this.shown[0] || null;
    const drawn = this.shown.filter((id) => this.thumbs.get(id)?.px).length;
    const key = this.shown.join(",") + "/" + drawn;
    if (key === this.pageKey) {
      // The same page: refresh the cells in place (a relabel elsewhere redraws no images).
      this.shown.forEach((id, k) => this.refreshCell(this.grid.children[k], id));
    } else {
      this.pageKey = key;
      this.sprite = this.makeSprite(this.shown);
      this.grid.replaceChildren(...this.shown.map((id) => this.cell(id)));
    }
    if (hadFocus && this.focusId) this.grid.querySelector(`[data-id="${this.focusId}"]`)?.focus();
    this.renderDetail();
    if (!this.firstPaint && this.shown.length && this.shown.some((id) => this.thumbs.has(id))) {
      this.firstPaint = true;
      const ready = this.sprite ? this.sprite.ready : Promise.resolve();
      ready.then(() => requestAnimationFrame(() => this.app.mark("grid")));
    }
  }

  cell(id) {
    const i = this.index.get(id);
    const label = this.label(id);
    const btn = h("button.cell", {
      type: "button", "data-id": id,
      tabIndex: id === this.focusId ? 0 : -1,
      "aria-pressed": this.selected.has(id) ? "true" : "false",
      "aria-label": `sample ${id}, label ${label ?? "none"}, ${this.splits[i]}`,
      onclick: (e) => this.click(id, e),
      onfocus: () => { this.focusId = id; this.app.look(id); this.grid.querySelectorAll(".cell").forEach((c) => (c.tabIndex = c.dataset.id === id ? 0 : -1)); this.renderDetail(); },
    });
    if (this.pending.has(id)) btn.classList.add("pending");
    if (this.selected.has(id)) btn.classList.add("selected");
    this.markOthers(btn, id);
    btn.append(this.thumb(id), h("span.cell-label", {}, label ?? "·"));
    if (this.splits[i] !== "train") btn.append(h("span.cell-split", {}, this.splits[i]));
    if ((this.tags[id] || []).length) btn.append(h("span.cell-tag", { title: this.tags[id].join(", ") }, "●"));
    return btn;
  }

  refreshCell(btn, id) {
    const i = this.index.get(id);
    const label = this.label(id);
    btn.classList.toggle("pending", this.pending.has(id));
    btn.classList.toggle("selected", this.selected.has(id));
    btn.setAttribute("aria-pressed", this.selected.has(id) ? "true" : "false");
    btn.setAttribute("aria-label", `sample ${id}, label ${label ?? "none"}, ${this.splits[i]}`);
    btn.tabIndex = id === this.focusId ? 0 : -1;
    this.markOthers(btn, id);
    const text = String(label ?? "·");
    const el = btn.querySelector(".cell-label");
    if (el.textContent !== text) el.textContent = text;
    const split = this.splits[i] !== "train" ? this.splits[i] : "";
    const tagged = (this.tags[id] || []).length > 0;
    const oldSplit = btn.querySelector(".cell-split")?.textContent || "";
    const oldTag = btn.querySelector(".cell-tag") !== null;
    if (split !== oldSplit || tagged !== oldTag) btn.replaceWith(this.cell(id)); // rarely
  }

  /** Someone else's focus on this sample: an outline in their color. */
  markOthers(btn, id) {
    const others = this.app.others("dataset", id);
    btn.style.outline = others.length ? `3px solid ${others[0].color}` : "";
    btn.title = others.length ? `${others.map((o) => o.user).join(", ")} looking` : "";
  }

  /** The page's thumbnails drawn once into one image: each cell shows its slot of it as a
   * background (one canvas for 200 cells instead of 200 canvases). */
  makeSprite(ids) {
    const drawn = ids.filter((id) => this.thumbs.get(id)?.px);
    if (!drawn.length) return null;
    const w = Math.max(...drawn.map((id) => this.thumbs.get(id).w));
    const hgt = Math.max(...drawn.map((id) => this.thumbs.get(id).h));
    const c = document.createElement("canvas");
    c.width = w * drawn.length;
    c.height = hgt;
    const ctx = c.getContext("2d");
    const slots = new Map();
    drawn.forEach((id, k) => {
      const t = this.thumbs.get(id);
      ctx.putImageData(inkImage(t), k * w, 0);
      slots.set(id, k);
    });
    const url = c.toDataURL();
    const img = new Image();
    img.src = url;
    const ready = img.decode().catch(() => {}); // the grid counts as shown once decoded
    return { url, w, h: hgt, n: drawn.length, slots, ready };
  }

  thumb(id) {
    const sp = this.sprite;
    const t = this.thumbs.get(id);
    if (!sp || !sp.slots.has(id)) return h("span.thumb-text", {}, t ? t.text : "…");
    const scale = 32 / Math.max(sp.w, sp.h);
    const el = h("span.px", { role: "img", "aria-label": `sample ${id}` });
    el.style.cssText = `width:${t.w * scale}px;height:${t.h * scale}px;` +
      `background-image:url(${sp.url});background-size:${sp.n * sp.w * scale}px ${sp.h * scale}px;` +
      `background-position:-${sp.slots.get(id) * sp.w * scale}px 0`;
    return el;
  }

  picture(id, scale) {
    const t = this.thumbs.get(id);
    if (t && t.px) {
      const c = h("canvas.px", { width: t.w, height: t.h });
      c.style.width = `${t.w * scale * (8 / Math.max(t.w, 8))}px`;
      c.getContext("2d").putImageData(inkImage(t), 0, 0);
      return c;
    }
    return h("span.thumb-text", {}, t ? t.text : "…");
  }

  renderDetail() {
    const id = this.focusId;
    if (!id || !this.index.has(id)) {
      this.detail.replaceChildren(h("p.muted", {}, "Select a sample."));
      return;
    }
    const i = this.index.get(id);
    const label = this.label(id);
    const known = Object.keys(this.counts);
    const choices = [...new Set([...known, ..."0123456789".split("")])].sort((a, b) => (+a - +b) || a.localeCompare(b)).slice(0, 20);
    this.detail.replaceChildren(
      this.picture(id, 14),
      h("p", {}, h("code", {}, id)),
      h("p", {}, "Label ", h("strong.detail-label", {}, label ?? "none"), " · ", this.splits[i]),
      h("p.small", {}, "Tags: ", (this.tags[id] || []).join(", ") || "none"),
      h("div.labels.edit", { role: "group", "aria-label": "Relabel" },
        choices.map((l) => h("button.label-btn", {
          type: "button", "data-label": l, "aria-pressed": String(String(label) === l),
          onclick: () => this.relabel([id], l),
        }, l))),
      h("div.edit", {},
        h("button", { type: "button", onclick: () => this.edit({ type: "split", samples: [id], split: this.splits[i] === "val" ? "train" : "val" }) },
          this.splits[i] === "val" ? "Move to train" : "Move to val"),
        h("button.danger", { type: "button", onclick: () => this.remove([id]) }, "Remove")),
    );
  }

  // -- interaction -----------------------------------------------------------------------
  click(id, e) {
    if (e.shiftKey && this.anchor) {
      const a = this.shown.indexOf(this.anchor), b = this.shown.indexOf(id);
      for (const x of this.shown.slice(Math.min(a, b), Math.max(a, b) + 1)) this.selected.add(x);
    } else if (e.ctrlKey || e.metaKey) {
      this.toggle(id);
    }
    this.anchor = id;
    this.focusId = id;
    this.render();
    this.grid.querySelector(`[data-id="${id}"]`)?.focus();
  }

  toggle(id) {
    if (this.selected.has(id)) this.selected.delete(id); else this.selected.add(id);
  }

  key(e) {
    const id = this.focusId;
    if (!id) return;
    const at = this.shown.indexOf(id);
    const cells = [...this.grid.children];
    const cols = Math.max(1, cells.filter((c) => c.offsetTop === cells[0].offsetTop).length);
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols, Home: -at, End: this.shown.length - 1 - at };
    if (e.key in moves) {
      e.preventDefault();
      const next = this.shown[Math.max(0, Math.min(this.shown.length - 1, at + moves[e.key]))];
      this.focusId = next;
      const el = this.grid.querySelector(`[data-id="${next}"]`);
      cells.forEach((c) => (c.tabIndex = c === el ? 0 : -1));
      el?.focus();
      return;
    }
    if (!this.app.canEdit) return;
    const targets = this.selected.has(id) && this.selected.size > 1 ? [...this.selected] : [id];
    if (/^[0-9]$/.test(e.key) && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      this.relabel(targets, e.key);
    } else if (e.key === " ") {
      e.preventDefault();
      this.toggle(id);
      this.render();
    } else if (e.key === "Delete" || e.key === "Backspace") {
      e.preventDefault();
      this.remove(targets);
    }
  }

  async edit(msg) {
    if (!msg.samples || !msg.samples.length) { this.app.toast("Select samples first."); return; }
    try {
      await this.app.request(msg);
    } catch (err) {
      this.app.toast(err.message);
    }
  }

  async relabel(samples, value) {
    if (!samples.length) { this.app.toast("Select samples first."); return; }
    const label = /^-?\d+$/.test(String(value)) ? Number(value) : String(value);
    for (const id of samples) this.pending.set(id, label);
    this.render();
    try {
      await this.app.request({ type: "relabel", samples, label });
    } catch (err) {
      this.app.toast(err.message);
    } finally {
      for (const id of samples) if (this.pending.get(id) === label) this.pending.delete(id);
      this.render();
    }
  }

  async remove(samples) {
    if (!samples.length) { this.app.toast("Select samples first."); return; }
    if (samples.length > 1 && !confirm(`Remove ${samples.length} samples? (Their past influence on the model stays.)`)) return;
    await this.edit({ type: "remove", samples });
    for (const id of samples) this.selected.delete(id);
  }

  async fetchThumbs(ids) {
    for (const id of ids) this.requested.add(id);
    try {
      const reply = await this.app.request({ type: "thumbs", samples: ids });
      for (const [id, t] of Object.entries(reply.thumbs)) this.thumbs.set(id, t);
      this.render();
    } catch (err) {
      for (const id of ids) this.requested.delete(id);
    }
  }

  async addSamples() {
    const $ = (id) => this.root.querySelector("#" + id);
    const status = $("add-status");
    const labelText = $("add-label").value.trim();
    const label = labelText === "" ? null : (/^-?\d+$/.test(labelText) ? Number(labelText) : labelText);
    const samples = [];
    for (const line of $("add-numbers").value.split("\n")) {
      const nums = line.split(/[\s,;]+/).filter(Boolean).map(Number);
      if (nums.length) samples.push({ pixels: nums, label });
    }
    for (const file of $("add-files").files) samples.push({ pixels: await pixelsOf(file), label });
    if (!samples.length) { status.textContent = "Choose images or paste numbers first."; return; }
    status.textContent = `adding ${samples.length}…`;
    try {
      const reply = await this.app.request({ type: "add_samples", samples, split: $("add-split").value });
      status.textContent = `added ${reply.result.length} sample(s)`;
      $("add-numbers").value = "";
      $("add-files").value = "";
    } catch (err) {
      status.textContent = err.message;
    }
  }
}

/** A thumbnail's grey values as dark ink on white. */
function inkImage(t) {
  const img = new ImageData(t.w, t.h);
  const px = bytes(t.px);
  for (let k = 0; k < px.length; k++) {
    const v = 255 - px[k];
    img.data[4 * k] = img.data[4 * k + 1] = img.data[4 * k + 2] = v;
    img.data[4 * k + 3] = 255;
  }
  return img;
}

/** An image file as 64 numbers 0..16 (dark ink on a light background becomes high values,
 * as in the digits dataset). */
async function pixelsOf(file) {
  const bitmap = await createImageBitmap(file);
  const c = document.createElement("canvas");
  c.width = c.height = 8;
  const ctx = c.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, 8, 8);
  ctx.drawImage(bitmap, 0, 0, 8, 8);
  const d = ctx.getImageData(0, 0, 8, 8).data;
  const out = [];
  for (let k = 0; k < 64; k++) {
    const grey = (d[4 * k] + d[4 * k + 1] + d[4 * k + 2]) / 3;
    out.push(Math.round(((255 - grey) / 255) * 16));
  }
  return out;
}
