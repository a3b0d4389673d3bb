/*
 * The dashboard's behaviour, on top of htmx (swaps, WebSockets) and Mermaid (drawing):
 *  - sequence diagrams built from trace rows (<li class="trace-event" data-...>), redrawn at
 *    most every 100 ms while rows arrive over the WebSocket, with the seed's phases and colours;
 *  - replay of a stored trace, arrow by arrow, at the pace of its offsets;
 *  - the workers' lifecycle state diagram with the states workers are in highlighted;
 *  - forms that run something wait until the live WebSocket is subscribed.
 */
(function () {
  "use strict";

  const RENDER_INTERVAL_MS = 100;
  // Longer details widen the diagram past the page; the trace list below it has them whole.
  const MESSAGE_CHARS = 40;

  // The seed's participants, in its order; labels take what the trace tells (worker id, backend).
  const PARTICIPANTS = [
    { key: "client", id: "C", type: "actor", label: () => "Client" },
    { key: "gateway", id: "GW", label: () => "Gateway<br/>(Django ASGI)" },
    { key: "registry", id: "REG", label: () => "Plugin Registry" },
    { key: "runtime_client", id: "RSC", label: () => "Runtime Client<br/>(gRPC)" },
    { key: "supervisor", id: "SUP", label: (h) => (h.runtime ? title(h.runtime) + " Runtime" : "Runtime") + "<br/>Supervisor" },
    { key: "backend", id: "BE", label: (h) => (h.backend ? title(h.backend) : "Process/Docker") + "<br/>backend" },
    { key: "worker", id: "W", label: (h) => (h.worker || "Worker") + (h.runtime ? "<br/>(" + title(h.runtime) + " worker)" : "") },
  ];
  const IDS = Object.fromEntries(PARTICIPANTS.map((p) => [p.key, p.id]));

  // The trace's vocabulary (phases, event kinds and how each is drawn), declared once in Python
  // (platform_core/invocations/vocabulary.py) and rendered into the page.
  const VOCABULARY = JSON.parse(document.getElementById("trace-vocabulary").textContent);
  const PHASES = Object.fromEntries(
    Object.entries(VOCABULARY.phases).map(([number, p]) => [
      number,
      [`${number}. ${p.title.toUpperCase()}`, p.rgb.join(", "), IDS[p.span[0]], IDS[p.span[1]]],
    ]),
  );
  const kindsWithStyle = (style) =>
    new Set(Object.entries(VOCABULARY.kinds).filter(([, k]) => k.style === style).map(([name]) => name));
  const REPLIES = kindsWithStyle("reply");
  const FAILURES = kindsWithStyle("failure");

  function title(text) {
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  // Mermaid message text: ';', '#' and newlines would end a message, '<' '>' read as HTML.
  // Look-alikes, not entity codes: wrapping long messages would split an entity code.
  const LOOK_ALIKES = { "#": "\uff03", ";": "\u037e", "<": "\u2039", ">": "\u203a" };
  function escapeText(text) {
    return text.replace(/[\r\n]+/g, " ").replace(/[#;<>]/g, (c) => LOOK_ALIKES[c]);
  }

  function shorten(text, max) {
    return text.length > max ? text.slice(0, max - 1) + "…" : text;
  }

  // A lifecycle event's detail starts with its worker's id, which the diagram already shows.
  function label(row) {
    const detail = row.detail || row.kind;
    return row.kind.startsWith("worker_") ? detail.replace(/^worker-\d+ /, "") : detail;
  }

  function arrow(kind) {
    if (FAILURES.has(kind)) return "--x";
    return REPLIES.has(kind) ? "-->>" : "->>";
  }

  function rowsOf(container) {
    return Array.from(container.querySelectorAll(".trace-events > li.trace-event:not([hidden])")).map((li) => ({
      seq: Number(li.dataset.seq),
      phase: Number(li.dataset.phase),
      source: li.dataset.source,
      target: li.dataset.target,
      kind: li.dataset.kind,
      offset: Number(li.dataset.offset),
      detail: li.dataset.detail || "",
      hints: { worker: li.dataset.worker, backend: li.dataset.backend, runtime: li.dataset.runtime },
    })).sort((a, b) => a.seq - b.seq);
  }

  function hintsOf(container, rows) {
    const hints = {
      worker: container.dataset.worker || "",
      backend: container.dataset.backend || "",
      runtime: container.dataset.runtime || "",
    };
    for (const row of rows) {
      for (const key of Object.keys(hints)) {
        if (row.hints[key]) hints[key] = row.hints[key];
      }
    }
    return hints;
  }

  function sequenceText(rows, hints) {
    const lines = ["sequenceDiagram", "autonumber"];
    for (const p of PARTICIPANTS) lines.push(`${p.type || "participant"} ${p.id} as ${p.label(hints)}`);
    let phase = null;
    for (const row of rows) {
      if (row.phase !== phase) {
        if (phase !== null) lines.push("end");
        phase = row.phase;
        const known = PHASES[phase];
        lines.push(`rect rgba(${known ? known[1] : "160, 160, 160"}, 0.16)`);
        if (known) lines.push(`Note over ${known[2]},${known[3]}: ${known[0]}`);
      }
      const from = IDS[row.source] || "GW";
      const to = IDS[row.target] || "GW";
      const text = `+${row.offset.toFixed(1)} ms ${shorten(label(row), MESSAGE_CHARS)}`;
      lines.push(`${from}${arrow(row.kind)}${to}: ${escapeText(text)}`);
    }
    if (phase !== null) lines.push("end");
    return lines.join("\n");
  }

  let mermaidReady = false;
  function ensureMermaid() {
    if (mermaidReady || typeof window.mermaid === "undefined") return mermaidReady;
    window.mermaid.initialize({
      startOnLoad: false,
      securityLevel: "strict",
      theme: "default",
      suppressErrorRendering: true,
      fontFamily: "system-ui, -apple-system, 'Segoe UI', sans-serif",
      sequence: {
        useMaxWidth: true, mirrorActors: true, showSequenceNumbers: true, wrap: true,
        width: 150, actorMargin: 40, boxMargin: 6, messageMargin: 28,
        messageFontSize: 13, noteFontSize: 13, actorFontSize: 13,
      },
      state: { useMaxWidth: true },
    });
    mermaidReady = true;
    return true;
  }

  let diagramCount = 0;

  // Redraw `target` from `textOf()` at most every RENDER_INTERVAL_MS, one render at a time.
  function throttledRenderer(target, textOf) {
    let timer = null;
    let rendering = false;
    let again = false;
    let drawn = "";
    async function render() {
      timer = null;
      if (rendering) {
        again = true;
        return;
      }
      const spec = textOf();
      if (spec === null || spec.text === drawn || !ensureMermaid()) return;
      rendering = true;
      try {
        const { svg } = await window.mermaid.render(`diagram-${++diagramCount}`, spec.text);
        target.innerHTML = svg;
        target.dataset.arrows = String(spec.arrows || 0);
        delete target.dataset.error;
        drawn = spec.text;
      } catch (error) {
        target.dataset.error = String((error && error.message) || error);
        console.warn("diagram not drawn:", error);
      } finally {
        rendering = false;
        if (again) {
          again = false;
          schedule();
        }
      }
    }
    function schedule() {
      if (timer === null) timer = setTimeout(render, RENDER_INTERVAL_MS);
    }
    return schedule;
  }

  function setUpSequence(container) {
    if (container.dataset.sequenceReady) return;
    container.dataset.sequenceReady = "1";
    const target = container.querySelector(".sequence-diagram");
    const schedule = throttledRenderer(target, () => {
      const rows = rowsOf(container);
      if (!rows.length) return null;
      return { text: sequenceText(rows, hintsOf(container, rows)), arrows: rows.length };
    });
    const observer = new MutationObserver(schedule);
    container.querySelectorAll(".trace-wrap").forEach((wrap) =>
      observer.observe(wrap, { childList: true, subtree: true, attributes: true, attributeFilter: ["hidden"] }),
    );
    const replay = container.querySelector("[data-replay]");
    if (replay) replay.addEventListener("click", () => replayTrace(container, replay));
    schedule();
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  // Show a stored trace again arrow by arrow, at the pace of its offsets (kept watchable:
  // at least 150 ms and at most 1.5 s between two arrows).
  async function replayTrace(container, button) {
    const items = Array.from(container.querySelectorAll(".trace-events > li.trace-event"));
    if (!items.length) return;
    button.disabled = true;
    const label = button.textContent;
    items.forEach((li) => (li.hidden = true));
    let previous = 0;
    for (const [index, li] of items.entries()) {
      const offset = Number(li.dataset.offset);
      await sleep(index === 0 ? 150 : Math.min(1500, Math.max(150, offset - previous)));
      previous = offset;
      li.hidden = false;
      button.textContent = `Replaying ${index + 1}/${items.length}`;
    }
    button.textContent = label;
    button.disabled = false;
  }

  // --- Workers: the seed's lifecycle state diagram -------------------------------------------
  const STATES = {
    requested: "Requested", allocating: "Allocating", spawning: "Spawning", starting: "Starting",
    ready: "Ready", idle: "Idle", executing: "Executing", completed: "Completed", releasing: "Releasing",
    stopping: "Stopping", removed: "Removed", failed: "Failed",
  };
  const STATE_DIAGRAM = [
    "stateDiagram-v2",
    "[*] --> Requested: Gateway requests worker",
    "Requested --> Allocating: Supervisor receives request",
    "Allocating --> Spawning: backend start issued",
    "Spawning --> Starting: process or container created",
    "Starting --> Ready: PPP Health answers (probed, no DNS wait)",
    "Ready --> Executing: gRPC Init + Invoke",
    "Executing --> Completed: Result returned",
    "Completed --> Releasing: Gateway calls ReleaseWorker",
    "Releasing --> Stopping: SIGTERM (docker stop)",
    "Stopping --> Removed: reaped, auto-removed",
    "Removed --> [*]",
    "Ready --> Idle: pooled, warm",
    "Completed --> Idle: pooled, back in the pool",
    "Idle --> Executing: reused",
    "Idle --> Releasing: retired",
    "Allocating --> Failed: backend error",
    "Spawning --> Failed: image or program not found",
    "Starting --> Failed: Startup timeout",
    "Executing --> Failed: Plugin crash",
    "Failed --> Stopping: Cleanup",
  ];

  function stateText(counts) {
    const lines = STATE_DIAGRAM.slice();
    const live = Object.keys(counts).filter((state) => STATES[state] && counts[state] > 0);
    lines.push("classDef live fill:#f59e0b,stroke:#92400e,stroke-width:3px,color:#111,font-weight:bold");
    for (const state of live) {
      lines.push(`${STATES[state]}: ${STATES[state]} · ${counts[state]} worker${counts[state] === 1 ? "" : "s"}`);
      lines.push(`class ${STATES[state]} live`);
    }
    return lines.join("\n");
  }

  function setUpStateDiagram(panel) {
    if (panel.dataset.stateReady) return;
    panel.dataset.stateReady = "1";
    const target = panel.querySelector(".state-diagram");
    const schedule = throttledRenderer(target, () => {
      const data = panel.querySelector("#state-counts-data");
      const counts = data ? JSON.parse(data.textContent) : {};
      return { text: stateText(counts), arrows: Object.keys(counts).length };
    });
    new MutationObserver(schedule).observe(panel.querySelector(".state-wrap"), { childList: true, subtree: true });
    schedule();
  }

  // --- Live socket state, and forms that wait for it -----------------------------------------
  let socketOpen = false;
  const waiting = [];

  function showSocketState(element, text, state) {
    const panel = element.closest(".live-panel, .workers-layout") || document;
    panel.querySelectorAll("[data-socket-state]").forEach((badge) => {
      badge.textContent = text;
      badge.dataset.state = state;
    });
  }

  document.addEventListener("htmx:wsOpen", (event) => {
    socketOpen = true;
    showSocketState(event.target, "live", "open");
    waiting.splice(0).forEach((go) => go());
  });
  document.addEventListener("htmx:wsClose", (event) => {
    socketOpen = false;
    showSocketState(event.target, "reconnecting…", "closed");
  });

  // A run waits (up to 3 s) until the live view is subscribed, so that no arrow is missed.
  document.addEventListener("htmx:confirm", (event) => {
    const form = event.detail.elt.closest && event.detail.elt.closest("[data-needs-live]");
    if (!form || socketOpen || !document.querySelector("[ws-connect]")) return;
    event.preventDefault();
    let done = false;
    const go = () => {
      if (!done) {
        done = true;
        event.detail.issueRequest(true);
      }
    };
    waiting.push(go);
    setTimeout(go, 3000);
  });

  // History rows open their invocation.
  document.addEventListener("click", (event) => {
    const row = event.target.closest && event.target.closest("tr[data-href]");
    if (row && !event.target.closest("a, button")) window.location.assign(row.dataset.href);
  });

  function setUp(root) {
    root.querySelectorAll("[data-sequence]").forEach(setUpSequence);
    root.querySelectorAll("[data-state-diagram]").forEach(setUpStateDiagram);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => setUp(document));
  } else {
    setUp(document);
  }
})();
