/*
 * The dashboard's behaviour besides the trace views (trace-view.js), on top of htmx:
 *  - forms that run something wait until the live WebSocket is subscribed, are checked in the
 *    browser first (what was typed stays), keep the keyboard focus after the answer replaces them,
 *    and say the result to screen readers; a re-run link runs its form once the socket is live;
 *  - the socket's state, "copy" buttons, history rows that open, two rows ticked to compare;
 *  - the workers' lifecycle state diagram (Mermaid, on the workers page only).
 */
(function () {
  "use strict";

  // --- Live socket state, and forms that wait for it -----------------------------------------
  let socketOpen = false;
  const waiting = [];

  function showSocketState(element, text, state) {
    const scope = element.closest("[ws-connect]") || document;
    scope.querySelectorAll("[data-socket-state]").forEach((badge) => {
      badge.textContent = text;
      badge.dataset.state = state;
    });
  }

  document.addEventListener("htmx:wsOpen", (event) => {
    socketOpen = true;
    showSocketState(event.target, "live", "open");
    waiting.splice(0).forEach((go) => go());
    document.querySelectorAll("form[data-autorun]").forEach(autorun);
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

  // "Re-run": the page was opened with the arguments of an earlier run; run them once, and
  // drop the flag from the address so that reloading the page does not run them again.
  function autorun(form) {
    delete form.dataset.autorun;
    const url = new URL(window.location.href);
    url.searchParams.delete("autorun");
    window.history.replaceState(null, "", url);
    form.requestSubmit();
  }

  // --- Checked in the browser first, what was typed kept --------------------------------------
  function numberProblem(input) {
    const text = input.value.trim();
    if (!text) return input.required ? "Enter a value: this field is required." : "";
    const integer = input.dataset.kind === "integer";
    if (input.validity.patternMismatch || !Number.isFinite(Number(text)))
      return integer ? `"${text}" is not a whole number.` : `"${text}" is not a number (e.g. 10, -2.5 or 1e3).`;
    const value = Number(text);
    if (input.dataset.minimum !== undefined && value < Number(input.dataset.minimum)) return `Must be at least ${input.dataset.minimum}.`;
    if (input.dataset.maximum !== undefined && value > Number(input.dataset.maximum)) return `Must be at most ${input.dataset.maximum}.`;
    return "";
  }

  function jsonProblem(textarea) {
    const text = textarea.value.trim();
    if (!text) return textarea.required ? "Enter a value: this field is required." : "";
    try {
      JSON.parse(text);
      return "";
    } catch (error) {
      return `Not valid JSON: ${error.message}`;
    }
  }

  function check(field) {
    let problem = "";
    if (field.dataset.kind === "number" || field.dataset.kind === "integer") problem = numberProblem(field);
    else if (field.dataset.kind === "json") problem = jsonProblem(field);
    field.setCustomValidity(problem);
    return problem || field.validationMessage;
  }

  function showProblem(field, message) {
    const error = document.getElementById(`${field.id}-error`);
    if (message) field.setAttribute("aria-invalid", "true");
    else field.removeAttribute("aria-invalid");
    field.closest(".field")?.classList.toggle("has-error", Boolean(message));
    if (error) {
      error.textContent = message;
      error.hidden = !message;
    }
  }

  document.addEventListener("input", (event) => {
    const field = event.target;
    if (!field.matches || !field.matches("[data-needs-live] [data-kind]")) return;
    check(field);
    if (field.getAttribute("aria-invalid") === "true") showProblem(field, field.validity.valid ? "" : field.validationMessage);
  });

  // htmx checks the form (checkValidity) before it sends it; say why it did not.
  document.addEventListener("htmx:validation:validate", (event) => {
    if (event.target.matches && event.target.matches("[data-kind]")) check(event.target);
  });
  document.addEventListener("htmx:validation:halted", (event) => {
    const form = event.target;
    let first = null;
    form.querySelectorAll("input, select, textarea").forEach((field) => {
      if (!field.willValidate) return;
      const message = field.validity.valid ? "" : field.validationMessage;
      showProblem(field, message);
      if (message && !first) first = field;
    });
    if (first) first.focus();
    announce(first ? `Not run: ${first.labels[0]?.textContent.replace("*", "").trim() || first.name}: ${first.validationMessage}` : "");
  });

  // --- Focus and announcements across the swap of a run form -----------------------------------
  let focusedId = null;
  document.addEventListener("htmx:beforeRequest", (event) => {
    const form = event.detail.elt;
    if (form.matches && form.matches("[data-needs-live]")) focusedId = (document.activeElement && document.activeElement.id) || form.querySelector("[type=submit]").id;
  });

  document.addEventListener("htmx:afterSettle", () => {
    if (focusedId === null) return;
    const form = document.querySelector("form[data-needs-live]");
    const invalid = form && form.querySelector("[aria-invalid=true]");
    const target = invalid || document.getElementById(focusedId);
    if (target && document.activeElement !== target) target.focus();
    focusedId = null;
    const result = document.querySelector(".run-result");
    if (result) announce(result.dataset.announce || "");
  });

  function announce(text) {
    const region = document.getElementById("page-announce");
    if (region) region.textContent = text;
  }

  // --- Copy buttons ----------------------------------------------------------------------------
  document.addEventListener("click", async (event) => {
    const button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) return;
    const source = document.querySelector(button.dataset.copy);
    if (!source) return;
    const label = button.textContent;
    try {
      await navigator.clipboard.writeText(source.textContent);
      button.textContent = "Copied";
    } catch (error) {
      // No clipboard (an insecure origin): select the text for the user to copy.
      const details = source.closest("details");
      if (details) details.open = true;
      window.getSelection().selectAllChildren(source);
      button.textContent = "Selected: press Ctrl+C";
    }
    announce(button.textContent);
    setTimeout(() => (button.textContent = label), 2000);
  });

  // --- History: rows open their invocation; two ticked rows compare -----------------------------
  document.addEventListener("click", (event) => {
    const row = event.target.closest && event.target.closest("tr[data-href]");
    if (row && !event.target.closest("a, button, input, label, .pick")) window.location.assign(row.dataset.href);
  });

  function updateCompare(form) {
    const ticked = form.querySelectorAll("input[name=ids]:checked").length;
    const button = form.querySelector("[data-compare-button]");
    const hint = form.querySelector("[data-compare-hint]");
    if (button) button.disabled = ticked !== 2;
    if (hint) hint.textContent = ticked === 2 ? "Ready to compare." : `Tick two rows to compare them side by side (${ticked} ticked).`;
  }
  document.addEventListener("change", (event) => {
    const form = event.target.closest && event.target.closest("[data-compare-form]");
    if (form) updateCompare(form);
  });
  document.addEventListener("htmx:afterSettle", () => document.querySelectorAll("[data-compare-form]").forEach(updateCompare));

  // --- Workers: the seed's lifecycle state diagram ---------------------------------------------
  const STATES = {
    requested: "Requested", allocating: "Allocating", spawning: "Spawning", starting: "Starting",
    ready: "Ready", idle: "Idle", executing: "Executing", completed: "Completed", releasing: "Releasing",
    stopping: "Stopping", removed: "Removed", failed: "Failed", stem_cell: "StemCell",
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
    "Starting --> StemCell: stem cell, no plugin yet (our addition)",
    "StemCell --> Requested: bound to a plugin at allocation",
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

  let mermaidReady = false;
  let diagramCount = 0;
  function ensureMermaid() {
    if (mermaidReady || typeof window.mermaid === "undefined") return mermaidReady;
    window.mermaid.initialize({
      startOnLoad: false,
      securityLevel: "strict",
      theme: "default",
      suppressErrorRendering: true,
      fontFamily: "system-ui, -apple-system, 'Segoe UI', sans-serif",
      state: { useMaxWidth: true },
    });
    mermaidReady = true;
    return true;
  }

  // The state diagram changes rarely (a worker changes state): redrawn at most every 250 ms.
  function setUpStateDiagram(panel) {
    if (panel.dataset.stateReady) return;
    panel.dataset.stateReady = "1";
    const target = panel.querySelector(".state-diagram");
    let timer = null;
    let drawn = "";
    const render = async () => {
      timer = null;
      const data = panel.querySelector("#state-counts-data");
      const counts = data ? JSON.parse(data.textContent) : {};
      const text = stateText(counts);
      if (text === drawn || !ensureMermaid()) return;
      try {
        const { svg } = await window.mermaid.render(`state-diagram-${++diagramCount}`, text);
        target.innerHTML = svg;
        target.dataset.states = String(Object.keys(counts).length);
        drawn = text;
      } catch (error) {
        target.dataset.error = String((error && error.message) || error);
        console.warn("state diagram not drawn:", error);
      }
    };
    const schedule = () => {
      if (timer === null) timer = setTimeout(render, 250);
    };
    new MutationObserver(schedule).observe(panel.querySelector(".state-wrap"), { childList: true, subtree: true });
    schedule();
  }

  function setUp(root) {
    root.querySelectorAll("[data-state-diagram]").forEach(setUpStateDiagram);
    root.querySelectorAll("[data-compare-form]").forEach(updateCompare);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => setUp(document));
  else setUp(document);
})();
