// The runs list: every run this token may read, with its state, last metrics and who is on it.
import { credentials, setToken, h, fmt } from "./common.js";

const { token, user } = credentials();
document.getElementById("who").textContent = user;
const form = document.getElementById("token-form");
const message = document.getElementById("message");
form.addEventListener("submit", (e) => {
  e.preventDefault();
  setToken(document.getElementById("token-input").value.trim());
  location.reload();
});

async function load() {
  const tok = localStorage.getItem("convergent.token") || token;
  if (!tok) {
    form.classList.remove("hidden");
    return;
  }
  let runs;
  try {
    const resp = await fetch("/api/overview", { headers: { Authorization: "Bearer " + tok } });
    if (resp.status === 401) {
      form.classList.remove("hidden");
      message.textContent = "This token is not valid on this hub.";
      return;
    }
    runs = await resp.json();
  } catch (err) {
    message.textContent = "The hub is not answering; retrying…";
    return;
  }
  message.textContent = runs.length ? "" : "No runs yet: convergent serve --run NAME creates one.";
  const table = document.getElementById("runs");
  table.classList.toggle("hidden", !runs.length);
  const body = table.querySelector("tbody");
  body.replaceChildren(
    ...runs.map((r) =>
      h("tr", {},
        h("td", {}, h("a", { href: "/runs/" + encodeURIComponent(r.name) }, r.name)),
        h("td", {}, h("span.badge.state-" + r.state, {}, r.state)),
        h("td", {}, Object.entries(r.metrics).map(([k, m]) =>
          h("span.metric", {}, `${k} ${fmt(m.last)} `, h("span.muted", {}, `@${fmt(m.step)}`)))),
        h("td", {}, fmt(r.samples)),
        h("td", {}, [...r.online.map((u) => h("span.chip", {}, u)),
                     ...r.clients.map((u) => h("span.chip.client", { title: "sync client" }, u))]),
      )),
  );
}

load();
setInterval(load, 5000);
