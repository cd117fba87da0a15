// Shared by the runs list and the run page: the token, the user name, small DOM helpers.

const TOKEN = "convergent.token";
const USER = "convergent.user";

/** The token and user name: from the URL fragment (#token=...&user=...) the first time,
 * kept in this browser's storage, and taken out of the address bar at once so the token
 * never lands in a screenshot, a bookmark or a server log. */
export function credentials() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) localStorage.setItem(TOKEN, hash.get("token"));
  if (hash.get("user")) localStorage.setItem(USER, hash.get("user"));
  if (hash.has("token") || hash.has("user")) {
    hash.delete("token");
    hash.delete("user");
    const rest = hash.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  }
  let user = localStorage.getItem(USER);
  if (!user) {
    user = "guest-" + Math.random().toString(36).slice(2, 6);
    localStorage.setItem(USER, user);
  }
  return { token: localStorage.getItem(TOKEN) || "", user };
}

export function setToken(token) {
  localStorage.setItem(TOKEN, token);
}

export function setUser(user) {
  localStorage.setItem(USER, user);
}

/** h("button.primary", {onclick}, "text", child...) */
export function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else if (k in el && k !== "list" && k !== "role") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function fmt(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return v.toLocaleString("en-US");
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : String(+v.toPrecision(5));
  }
  if (Array.isArray(v)) return "[" + v.map(fmt).join(", ") + "]";
  return String(v);
}

export function ago(iso) {
  const t = typeof iso === "number" ? iso : Date.parse(iso);
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return new Date(t).toLocaleDateString();
}

export function clock(iso) {
  return new Date(iso).toLocaleTimeString([], { hour12: false });
}
