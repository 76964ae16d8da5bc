// The browser side of explorer/ui/live: live charts, a run's status line, a lesson's tally and a student's ballot,
// as one components-v2 element (no iframe). Every element of a page that watches the same run shares one long poll
// (a Hub): the server answers when the run moves, with only what this page does not hold yet (feed.patch), and the
// charts extend what they hold. Streamlit reruns the page only when the run's or lesson's state changes.

const hubs = new Map(); // poll URL -> Hub
const slots = new WeakMap(); // element root -> its Slot, kept across re-renders with the same data
let plotlyLoading = null;
const PLOTLY_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
const VOTER_KEY = "resnet-explorer-voter";

function loadPlotly(src) {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!plotlyLoading) {
    plotlyLoading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = src;
      script.async = true;
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => {
        plotlyLoading = null;
        reject(new Error("plotly.js did not load"));
      };
      document.head.appendChild(script);
    });
  }
  return plotlyLoading;
}

function loadStyle(href) {
  if (document.querySelector(`link[data-rx-style]`)) return;
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = href;
  link.dataset.rxStyle = "1";
  document.head.appendChild(link);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One long poll for everything a page watches of one subject (a run's views, or a lesson).
class Hub {
  constructor(url, withViews) {
    this.url = url;
    this.withViews = withViews;
    this.listeners = new Set();
    this.v = -1;
    this.running = false;
    this.controller = null;
  }

  views() {
    const keys = new Set();
    for (const listener of this.listeners) if (listener.view) keys.add(listener.view);
    return [...keys].sort();
  }

  add(listener) {
    this.listeners.add(listener);
    this.restart();
  }

  remove(listener) {
    this.listeners.delete(listener);
    if (this.listeners.size === 0 && this.controller) this.controller.abort();
  }

  restart() {
    this.v = -1;
    if (this.controller) this.controller.abort();
    if (!this.running) this.loop();
  }

  async loop() {
    this.running = true;
    while (this.listeners.size > 0) {
      const views = this.views();
      const query = this.withViews ? `views=${encodeURIComponent(views.join(","))}&v=${this.v}` : `v=${this.v}`;
      this.controller = new AbortController();
      let body = null;
      try {
        const response = await fetch(`${this.url}?${query}`, { signal: this.controller.signal, cache: "no-store" });
        body = await response.json();
        if (!response.ok) {
          for (const listener of this.listeners) listener.failed && listener.failed(body.error || response.status);
          await sleep(5000);
          continue;
        }
      } catch (error) {
        if (error.name !== "AbortError") await sleep(2000);
        continue;
      }
      if (this.withViews && views.join(",") !== this.views().join(",")) continue; // asked for other views meanwhile
      this.v = body.v;
      for (const listener of [...this.listeners]) listener.receive(body);
      if (body.status && body.status.final) break; // a finished run does not move: stop asking
    }
    this.running = false;
  }
}

function hub(url, withViews) {
  let found = hubs.get(url);
  if (!found) {
    found = new Hub(url, withViews);
    hubs.set(url, found);
  }
  return found;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// --- a live chart ------------------------------------------------------------------------------------------------
class ChartSlot {
  constructor(root, data) {
    this.view = data.view;
    this.figure = null;
    this.plot = element("div", "rx-plot");
    this.empty = element("div", "rx-caption");
    this.summary = element("div", "rx-caption");
    root.replaceChildren(this.plot, this.empty, this.summary);
    this.ready = loadPlotly(data.plotly);
    this.summaryPrefix = data.summary === false ? null : "In numbers: ";
  }

  receive(body) {
    const change = body.charts[this.view];
    if (change) this.apply(change);
    const text = body.summaries[this.view];
    if (text !== undefined && this.summaryPrefix !== null) this.summary.textContent = text ? this.summaryPrefix + text : "";
  }

  apply(change) {
    if (change.full && change.full.empty !== undefined) {
      this.figure = null;
      this.empty.textContent = change.full.empty;
      this.plot.style.display = "none";
      return;
    }
    let figure;
    if (change.full) {
      figure = change.full;
    } else if (this.figure) {
      const data = this.figure.data.slice();
      for (const trace of change.traces || []) {
        if (trace.trace) {
          data[trace.i] = trace.trace;
          continue;
        }
        const updated = { ...data[trace.i] };
        for (const [column, added] of Object.entries(trace.add)) {
          updated[column] = (updated[column] || []).slice(0, trace.keep).concat(added);
        }
        data[trace.i] = updated;
      }
      figure = { data, layout: change.layout || this.figure.layout };
    } else {
      return; // a patch without the figure it patches: the next full answer repairs it
    }
    this.figure = figure;
    this.empty.textContent = "";
    this.plot.style.display = "";
    this.ready.then((Plotly) => Plotly.react(this.plot, figure.data, figure.layout, PLOTLY_CONFIG));
  }

  failed(message) {
    this.empty.textContent = `Live chart unavailable: ${message}`;
  }

  dispose() {
    if (window.Plotly && this.plot.isConnected) window.Plotly.purge(this.plot);
  }
}

// --- a run's status line ------------------------------------------------------------------------------------------
class StatusSlot {
  constructor(root, data, setTriggerValue) {
    this.rendered = data.rendered; // the state the page was drawn for: a different one redraws the page
    this.owner = data.owner;
    this.trigger = setTriggerValue;
    this.line = element("div", "rx-status");
    this.bar = element("progress", "rx-progress");
    this.bar.max = 1;
    this.notice = element("div", "rx-notice");
    root.replaceChildren(this.line, this.bar, this.notice);
    this.fired = false;
  }

  receive(body) {
    const status = body.status;
    const rest = status.parts.length ? " · " + status.parts.join(" · ") : "";
    this.line.replaceChildren(element("strong", "", status.state), document.createTextNode(rest));
    this.bar.style.display = status.fraction === null ? "none" : "";
    if (status.fraction !== null) this.bar.value = status.fraction;
    this.notice.textContent = status.notice;
    this.notice.className = `rx-notice rx-${status.level || "none"}`;
    if (!this.fired && this.redraws(status.state)) {
      this.fired = true;
      this.trigger("state", status.state);
    }
  }

  redraws(state) {
    const phase = (s) => (["submitted", "queued"].includes(s) ? "waiting"
      : ["claimed", "running"].includes(s) ? "live" : s === "paused" ? "paused" : "final");
    const now = phase(state), drawn = phase(this.rendered);
    if (now === drawn) return false;
    const live = (p) => p === "live" || p === "paused";
    return this.owner || !(live(now) && live(drawn)); // only the owner's buttons differ between running and paused
  }

  failed(message) {
    this.notice.textContent = `Status unavailable: ${message}`;
  }
}

// --- a lesson: the teacher's tally and a student's ballot ------------------------------------------------------
function voterId() {
  let id = null;
  try {
    id = window.localStorage.getItem(VOTER_KEY);
  } catch (error) {
    /* storage blocked: one id for this page's life */
  }
  if (!id) {
    id = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2) + Date.now()).replace(/[^A-Za-z0-9-]/g, "");
    try {
      window.localStorage.setItem(VOTER_KEY, id);
    } catch (error) {
      /* keep it for this page */
    }
  }
  return id;
}

class TallySlot {
  constructor(root, data, setTriggerValue) {
    this.phase = data.phase;
    this.trigger = setTriggerValue;
    this.bars = element("div", "rx-tally");
    this.total = element("div", "rx-caption");
    root.replaceChildren(this.bars, this.total);
    this.fired = false;
  }

  receive(body) {
    const most = Math.max(1, ...Object.values(body.counts));
    const rows = Object.entries(body.counts).map(([key, count]) => {
      const row = element("div", "rx-tally-row");
      const bar = element("div", "rx-tally-bar");
      bar.style.width = `${(100 * count) / most}%`;
      row.append(element("div", "rx-tally-label", body.options[key]), element("div", "rx-tally-track"));
      row.lastChild.append(bar, element("span", "rx-tally-count", String(count)));
      return row;
    });
    this.bars.replaceChildren(...rows);
    this.total.textContent = `${body.total} vote${body.total === 1 ? "" : "s"} so far`;
    if (!this.fired && body.phase !== this.phase) {
      this.fired = true;
      this.trigger("phase", body.phase);
    }
  }
}

class BallotSlot {
  constructor(root, data, setTriggerValue) {
    this.phase = data.phase;
    this.url = data.url;
    this.trigger = setTriggerValue;
    this.voter = voterId();
    this.choice = null;
    this.fired = false;
    this.buttons = element("div", "rx-ballot");
    this.mine = element("div", "rx-caption", data.phase === "voting" ? "You have not voted yet." : "You did not vote.");
    this.error = element("div", "rx-notice rx-error");
    root.replaceChildren(this.buttons, this.mine, this.error);
    this.options = data.options;
    this.open = data.phase === "voting";
    this.draw();
    fetch(`${this.url}/mine?voter=${encodeURIComponent(this.voter)}`, { cache: "no-store" })
      .then((r) => r.json())
      .then((body) => body.mine && this.chosen(body.mine))
      .catch(() => {});
  }

  draw() {
    if (!this.open) {
      this.buttons.replaceChildren();
      return;
    }
    this.buttons.replaceChildren(...Object.entries(this.options).map(([key, label]) => {
      const button = element("button", `rx-option${key === this.choice ? " rx-chosen" : ""}`, label);
      button.type = "button";
      button.onclick = () => this.vote(key);
      return button;
    }));
  }

  chosen(key) {
    this.choice = key;
    this.mine.textContent = this.open ? `Your vote: ${this.options[key]} (you can change it until the reveal)`
      : `You predicted: ${this.options[key]}`;
    this.draw();
  }

  async vote(key) {
    this.error.textContent = "";
    try {
      const response = await fetch(`${this.url}/vote`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ voter: this.voter, choice: key }),
      });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error || response.status);
      this.chosen(body.mine);
    } catch (error) {
      this.error.textContent = `Not recorded: ${error.message}`;
    }
  }

  receive(body) {
    if (!this.fired && body.phase !== this.phase) {
      this.fired = true;
      this.trigger("phase", body.phase);
    }
  }
}

const KINDS = { chart: ChartSlot, status: StatusSlot, tally: TallySlot, ballot: BallotSlot };

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  loadStyle(data.css);
  const root = parentElement.querySelector(".rx-root") || parentElement;
  const signature = JSON.stringify(data);
  const held = slots.get(root);
  if (held && held.signature === signature) return held.cleanup; // a rerun with the same data: keep what is drawn
  if (held) held.cleanup();
  const slot = new KINDS[data.kind](root, data, setTriggerValue);
  const source = hub(data.url, data.kind === "chart" || data.kind === "status");
  source.add(slot);
  const cleanup = () => {
    source.remove(slot);
    if (slot.dispose) slot.dispose();
    slots.delete(root);
  };
  slots.set(root, { signature, cleanup });
  return cleanup;
}
