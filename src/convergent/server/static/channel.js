// The dashboard channel (PROTOCOL.md, "The dashboard channel"): JSON over a WebSocket, the
// token in the first message. Edits are promises settled by the hub's ack or error; a lost
// connection is shown and retried with backoff, and the next welcome brings the whole view.

export class Channel {
  constructor(run, hello, { onWelcome, onUpdate, onStatus, onFatal }) {
    this.run = run;
    this.hello = hello;
    this.handlers = { onWelcome, onUpdate, onStatus, onFatal };
    this.pending = new Map();
    this.nextId = 1;
    this.delay = 500;
    this.ws = null;
    this.stopped = false;
    // After the page's module has finished setting up: an adopted socket may hold the
    // welcome already, and handling it needs every view ready.
    queueMicrotask(() => this.connect());
  }

  connect() {
    // The page's inline script may have opened the socket already (and sent the hello).
    const early = window.convergentEarly;
    window.convergentEarly = null;
    const adopt = early && early.ws.readyState <= WebSocket.OPEN;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = adopt ? early.ws : new WebSocket(`${scheme}//${location.host}/runs/${encodeURIComponent(this.run)}/ui`);
    this.ws = ws;
    this.handlers.onStatus("connecting");
    if (adopt) {
      if (early.opened) this.handlers.onStatus("open");
      else {
        const sendHello = ws.onopen;
        ws.onopen = (ev) => { sendHello(ev); this.handlers.onStatus("open"); };
      }
    } else {
      ws.onopen = () => {
        this.handlers.onStatus("open");
        ws.send(JSON.stringify({ type: "hello", ...this.hello() }));
      };
    }
    ws.onmessage = (ev) => this.receive(JSON.parse(ev.data), ev.data.length);
    if (adopt) for (const data of early.messages) this.receive(JSON.parse(data), data.length);
    ws.onclose = () => {
      if (this.ws !== ws) return;
      for (const [, p] of this.pending) p.reject(new Error("connection lost; not confirmed"));
      this.pending.clear();
      if (this.stopped) return;
      const wait = this.delay;
      this.delay = Math.min(this.delay * 2, 10000);
      this.handlers.onStatus("offline", wait);
      setTimeout(() => this.connect(), wait);
    };
  }

  receive(msg, size) {
    if (msg.type === "welcome") {
      msg.size = size;
      this.delay = 500;
      this.handlers.onStatus("live");
      this.handlers.onWelcome(msg);
    } else if (msg.type === "update") {
      this.handlers.onUpdate(msg);
    } else if (msg.type === "ack" || msg.type === "thumbs") {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (p) p.resolve(msg);
    } else if (msg.type === "error") {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (p) p.reject(new Error(msg.message));
      else if (msg.fatal) {
        this.stopped = true;
        this.handlers.onFatal(msg.message);
      } else this.handlers.onFatal(msg.message, false);
    }
  }

  /** Send a message; resolves with the hub's ack (after its commit), rejects with its error. */
  request(msg) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new Error("offline: not sent (reconnecting)"));
        return;
      }
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ ...msg, id }));
    });
  }

  /** A message that needs no answer (presence). */
  tell(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  reconnect() {
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
    this.stopped = false;
    this.connect();
  }
}
