/*
 * An invocation's trace, drawn by hand so that the page never waits for it:
 *  - SequenceDiagram: the seed's sequence diagram as SVG. Each trace row (<li class="trace-event">,
 *    appended by htmx as its event arrives) becomes one arrow, appended to what is drawn: nothing
 *    already drawn is drawn again (a full Mermaid render per event blocked the page for a second).
 *    Phases are bands of the seed's colours; a run of worker-lifecycle steps folds into one line
 *    of its phase (click to unfold); labels are short, the full text is the arrow's tooltip.
 *  - Waterfall: bars true to time (the invocation, each phase, each span) from the server's
 *    waterfall document, the critical path marked, exact times on hover or focus; bars still
 *    open grow with the clock while the invocation runs.
 *  - TraceView: one panel ([data-trace-view]) with both, the view switch, the lifecycle toggle
 *    and replay (play, pause, step; paced, real time or slowed down).
 * Phases, participants and event kinds come from the page (the trace vocabulary, declared once
 * in platform_core/invocations/vocabulary.py); nothing here spells them.
 */
(function () {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";
  const VOCABULARY = JSON.parse(document.getElementById("trace-vocabulary").textContent);
  const KINDS = VOCABULARY.kinds;
  const PHASES = VOCABULARY.phases;
  const PARTICIPANTS = VOCABULARY.participants;
  const COLUMN = Object.fromEntries(PARTICIPANTS.map((p, i) => [p.key, i]));

  // Geometry of the diagram (px): a gutter of offsets, then one column per participant.
  const G = { gutter: 62, first: 58, column: 114, header: 48, row: 26, band: 22, group: 24, char: 6.2 };
  const WIDTH = G.gutter + 2 * G.first + G.column * (PARTICIPANTS.length - 1);
  const columnX = (key) => G.gutter + G.first + G.column * (key in COLUMN ? COLUMN[key] : 1);
  // More steps than this fold into one row of the waterfall (click to unfold).
  const STEPS_SHOWN = 12;
  let instances = 0;

  function svg(name, attributes, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    if (parent) parent.appendChild(node);
    return node;
  }

  function shorten(text, max) {
    return text.length > max ? text.slice(0, Math.max(max - 1, 1)) + "…" : text;
  }

  const styleOf = (kind) => (KINDS[kind] ? KINDS[kind].style : "call");
  const isDetail = (kind) => Boolean(KINDS[kind] && KINDS[kind].detail);
  const labelOf = (key) => (PARTICIPANTS[COLUMN[key]] || { label: key }).label;
  const ms = (value) => `${value.toFixed(1)} ms`;

  // A row of the trace list as data.
  function rowOf(li) {
    const data = li.dataset;
    return {
      seq: Number(data.seq),
      phase: Number(data.phase),
      source: data.source,
      target: data.target,
      kind: data.kind,
      offset: Number(data.offset),
      label: data.label || data.detail || data.kind,
      detail: data.detail || "",
      hints: { worker: data.worker, backend: data.backend, runtime: data.runtime },
    };
  }

  // --- the sequence diagram ------------------------------------------------------------------

  // The diagram is a stack of <svg> tiles of CHUNK px, each laid out and painted on its own:
  // a new arrow touches only the last tile. (One growing <svg> is laid out again whole whenever
  // its size changes: 90 ms for 800 arrows.) Nothing drawn straddles two tiles.
  const CHUNK = 1040;

  class SequenceDiagram {
    constructor(host, hints, live) {
      this.host = host;
      this.id = `seq${++instances}`;
      this.rows = [];
      this.bySeq = new Map();
      this.groups = new Map();
      this.tiles = [];
      this.limit = Infinity;
      this.expandAll = false;
      this.hints = { worker: hints.worker || "", backend: hints.backend || "", runtime: hints.runtime || "" };
      // A live diagram follows its newest arrow while the reader stays at the bottom.
      this.atBottom = live;
      this.build();
    }

    build() {
      this.host.textContent = "";
      const head = document.createElement("div");
      head.className = "seq-head";
      this.head = svg("svg", { viewBox: `0 0 ${WIDTH} ${G.header}`, width: WIDTH, height: G.header, "aria-hidden": "true" }, head);
      const defs = svg("defs", {}, this.head);
      const marker = (name, path, extra) => {
        const m = svg("marker", { id: `${this.id}-${name}`, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" }, defs);
        svg("path", { d: path, ...extra }, m);
      };
      marker("call", "M0,0 L10,5 L0,10 z", { class: "mk-call" });
      marker("note", "M0,0 L10,5 L0,10 z", { class: "mk-note" });
      marker("reply", "M0,0 L10,5 L0,10", { class: "mk-reply" });
      marker("failure", "M1,1 L9,9 M9,1 L1,9", { class: "mk-failure" });
      this.participants = PARTICIPANTS.map((p) => {
        const x = columnX(p.key);
        const group = svg("g", { class: "seq-actor" }, this.head);
        svg("rect", { x: x - 52, y: 4, width: 104, height: 38, rx: 7 }, group);
        const name = svg("text", { x, y: 20, "text-anchor": "middle", class: "seq-actor-name" }, group);
        name.textContent = p.label;
        const sub = svg("text", { x, y: 34, "text-anchor": "middle", class: "seq-actor-sub" }, group);
        return { key: p.key, sub };
      });
      this.clip = document.createElement("div");
      this.clip.className = "seq-clip";
      this.host.append(head, this.clip);
      // Only a reader's own scrolling says whether to keep following (reading the scroll height
      // after our own scroll would lay the page out again).
      this.host.addEventListener("scroll", () => {
        if (this.ownScroll) {
          this.ownScroll = false;
          return;
        }
        this.atBottom = this.host.scrollTop + this.host.clientHeight >= this.host.scrollHeight - 40;
      }, { passive: true });
      this.showHints();
    }

    tile(index) {
      while (this.tiles.length <= index) {
        const root = svg("svg", { width: WIDTH, height: CHUNK, class: "seq-tile", "aria-hidden": "true" }, this.clip);
        const lifelines = svg("g", { class: "seq-lifelines" }, root);
        PARTICIPANTS.forEach((p) => svg("line", { x1: columnX(p.key), x2: columnX(p.key), y1: 0, y2: CHUNK }, lifelines));
        this.tiles.push({ root, bands: svg("g", { class: "seq-bands" }, root), arrows: svg("g", { class: "seq-arrows" }, root), segments: [] });
      }
      return this.tiles[index];
    }

    reset() {
      this.rows = [];
      this.bySeq.clear();
      this.groups.clear();
      this.tiles.forEach((t) => t.root.remove());
      this.tiles = [];
      this.layout();
    }

    showHints() {
      const h = this.hints;
      const subs = {
        gateway: "Django ASGI",
        runtime_client: "gRPC",
        supervisor: h.runtime ? `${h.runtime} runtime` : "",
        backend: h.backend ? `${h.backend} backend` : "",
        worker: h.worker ? `${h.worker}${h.runtime ? ` (${h.runtime})` : ""}` : "",
      };
      for (const p of this.participants) p.sub.textContent = subs[p.key] || "";
    }

    add(rows) {
      let hintsChanged = false;
      for (const row of rows) {
        if (this.bySeq.has(row.seq)) continue;
        row.node = this.arrow(row);
        this.bySeq.set(row.seq, row);
        const last = this.rows[this.rows.length - 1];
        if (!last || last.seq < row.seq) this.rows.push(row);
        else this.rows.splice(this.rows.findIndex((r) => r.seq > row.seq), 0, row);
        for (const key of Object.keys(this.hints)) {
          if (row.hints[key] && row.hints[key] !== this.hints[key]) {
            this.hints[key] = row.hints[key];
            hintsChanged = true;
          }
        }
      }
      if (hintsChanged) this.showHints();
      this.layout();
    }

    arrow(row) {
      const style = styleOf(row.kind);
      const g = svg("g", { class: `seq-row style-${style}` });
      const title = svg("title", {}, g);
      title.textContent = `${row.seq}. +${ms(row.offset)} · ${labelOf(row.source)} → ${labelOf(row.target)} · ${row.kind}: ${row.detail}`;
      const offset = svg("text", { x: G.gutter - 6, y: 18, "text-anchor": "end", class: "seq-offset" }, g);
      offset.textContent = `+${row.offset.toFixed(1)}`;
      const x1 = columnX(row.source);
      const x2 = columnX(row.target);
      const end = `url(#${this.id}-${style})`;
      let label;
      if (x1 === x2) {
        // A lifeline's own step: a loop beside it, to the left of the last lifeline (no room right).
        const side = COLUMN[row.source] === PARTICIPANTS.length - 1 ? -1 : 1;
        svg("path", { d: `M${x1},8 h${24 * side} v11 h${-22 * side}`, class: "seq-line", "marker-end": end }, g);
        label = svg("text", { x: x1 + 30 * side, y: 18, class: "seq-label", "text-anchor": side > 0 ? "start" : "end" }, g);
        label.textContent = shorten(row.label, 30);
      } else {
        svg("line", { x1, y1: 19, x2: x2 + (x2 > x1 ? -1 : 1), y2: 19, class: "seq-line", "marker-end": end }, g);
        label = svg("text", { x: (x1 + x2) / 2, y: 14, "text-anchor": "middle", class: "seq-label" }, g);
        label.textContent = shorten(row.label, Math.floor((Math.abs(x2 - x1) - 14) / G.char));
      }
      svg("circle", { cx: x1, cy: 19, r: 7.5, class: "seq-num" }, g);
      const number = svg("text", { x: x1, y: 22, "text-anchor": "middle", class: "seq-num-text" }, g);
      number.textContent = String(row.seq);
      return g;
    }

    group(first) {
      let group = this.groups.get(first.seq);
      if (!group) {
        const node = svg("g", { class: "seq-group", role: "button", tabindex: "0" });
        group = { node, expanded: this.expandAll, rect: svg("rect", { rx: 5, height: G.group - 6 }, node), text: svg("text", { class: "seq-group-text" }, node), title: svg("title", {}, node) };
        const toggle = () => {
          group.expanded = !group.expanded;
          this.layout();
          group.node.focus();
        };
        node.addEventListener("click", toggle);
        node.addEventListener("keydown", (event) => {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            toggle();
          }
        });
        this.groups.set(first.seq, group);
      }
      group.rows = [];
      return group;
    }

    groupText(group) {
      const rows = group.rows;
      const state = (row) => row.label.split(":")[0];
      const span = rows[rows.length - 1].offset - rows[0].offset;
      return `${group.expanded ? "▾" : "▸"} ${rows.length} lifecycle step${rows.length === 1 ? "" : "s"}: ${state(rows[0])}${rows.length > 1 ? ` → ${state(rows[rows.length - 1])}` : ""} · ${ms(span)}`;
    }

    drawGroup(group) {
      const text = this.groupText(group);
      if (group.drawn === text) return;
      group.drawn = text;
      const xs = group.rows.flatMap((r) => [columnX(r.source), columnX(r.target)]);
      const left = Math.min(...xs) - 40;
      group.node.setAttribute("aria-expanded", String(group.expanded));
      group.node.setAttribute("aria-label", `${text.slice(2)}; ${group.expanded ? "fold" : "unfold"} them`);
      group.rect.setAttribute("x", left);
      group.rect.setAttribute("y", 3);
      group.rect.setAttribute("width", Math.max(...xs) + 90 - left);
      group.text.setAttribute("x", left + 8);
      group.text.setAttribute("y", 16);
      group.text.textContent = text;
      group.title.textContent = group.rows.map((r) => `${r.seq}. +${ms(r.offset)} ${r.detail}`).join("\n");
    }

    // Put `node` (an arrow or a fold) at `y` in the tile that holds it.
    place(item, node, y) {
      const index = Math.floor(y / CHUNK);
      const tile = this.tile(index);
      if (node.parentNode !== tile.arrows) tile.arrows.appendChild(node);
      const local = y - index * CHUNK;
      if (item.local !== local || item.tileIndex !== index) {
        node.setAttribute("transform", `translate(0, ${local})`);
        item.local = local;
        item.tileIndex = index;
      }
      if (item.hidden) {
        node.style.display = "";
        item.hidden = false;
      }
    }

    hide(item, node) {
      if (!item.hidden && node.parentNode) node.style.display = "none";
      item.hidden = true;
    }

    layout() {
      let y = 4;
      // The next free y for something `height` tall that must not straddle two tiles.
      const at = (height) => {
        if (Math.floor(y / CHUNK) !== Math.floor((y + height - 1) / CHUNK)) y = Math.ceil(y / CHUNK) * CHUNK + 2;
        const top = y;
        y += height;
        return top;
      };
      const bands = [];
      let band = null;
      let group = null;
      const used = new Set();
      const closeGroup = () => {
        if (group) this.drawGroup(group);
        group = null;
      };
      this.rows.forEach((row, index) => {
        const visible = index < this.limit;
        if (visible && (!band || row.phase !== band.phase)) {
          closeGroup();
          if (band) band.end = y;
          band = { phase: row.phase, start: at(G.band) };
          bands.push(band);
        }
        let show = visible;
        if (visible && isDetail(row.kind)) {
          if (!group) {
            group = this.group(row);
            used.add(group);
            this.place(group, group.node, at(G.group));
          }
          group.rows.push(row);
          show = group.expanded;
        } else if (visible) {
          closeGroup();
        }
        if (show) this.place(row, row.node, at(G.row));
        else this.hide(row, row.node);
      });
      closeGroup();
      if (band) band.end = y;
      this.groups.forEach((g) => {
        if (!used.has(g)) this.hide(g, g.node);
      });
      this.drawBands(bands);
      const height = Math.max(y + 8, 40);
      this.tiles.slice(Math.ceil(height / CHUNK)).forEach((t) => t.root.remove());
      this.tiles.length = Math.min(this.tiles.length, Math.ceil(height / CHUNK));
      if (height !== this.height) {
        this.clip.style.height = `${height}px`;
        this.height = height;
        // The box is sized from our own numbers (never measured): once it is as tall as it may
        // be, a new arrow changes nothing outside it (CSS size containment makes it a layout root).
        const box = Math.min(height + G.header + 2, Math.round(window.innerHeight * 0.72));
        if (box !== this.box) {
          this.host.style.height = `${Math.max(box, 96)}px`;
          this.box = box;
        }
      }
      const drawn = Math.min(this.rows.length, this.limit);
      this.host.dataset.arrows = String(drawn);
      this.host.setAttribute(
        "aria-label",
        drawn
          ? `Sequence diagram: ${drawn} arrows in ${bands.length} phases between ${PARTICIPANTS.length} participants. Every arrow is also listed as text under Trace events.`
          : "Sequence diagram, no arrows yet. Every arrow is also listed as text under Trace events.",
      );
      // Scrolled in the next frame: reading the height now would lay the page out in this task.
      if (this.atBottom && this.limit === Infinity && !this.scrolling) {
        this.scrolling = true;
        requestAnimationFrame(() => {
          this.scrolling = false;
          this.ownScroll = true;
          this.host.scrollTop = 1e9; // clamped to the bottom
        });
      }
    }

    // Each phase is a band of its colour, cut where it crosses from one tile to the next.
    drawBands(bands) {
      const counts = this.tiles.map(() => 0);
      for (const band of bands) {
        const known = PHASES[band.phase];
        const rgb = known ? known.rgb.join(", ") : "160, 160, 160";
        for (let index = Math.floor(band.start / CHUNK); index * CHUNK < band.end && index < this.tiles.length; index++) {
          const tile = this.tiles[index];
          const top = Math.max(band.start, index * CHUNK) - index * CHUNK;
          const bottom = Math.min(band.end + 2, (index + 1) * CHUNK) - index * CHUNK;
          const title = band.start >= index * CHUNK ? (known ? `${band.phase}. ${known.title}` : `Phase ${band.phase}`) : "";
          this.segment(tile, counts[index]++, { rgb, top, height: bottom - top, title });
        }
      }
      this.tiles.forEach((tile, index) => tile.segments.slice(counts[index]).forEach((segment) => {
        if (!segment.hidden) segment.node.style.display = "none";
        segment.hidden = true;
      }));
    }

    segment(tile, index, want) {
      let segment = tile.segments[index];
      if (!segment) {
        const node = svg("g", { class: "seq-band" }, tile.bands);
        segment = { node, rect: svg("rect", { x: G.gutter - 4, width: WIDTH - G.gutter }, node), text: svg("text", { x: G.gutter + 2, class: "seq-band-title" }, node) };
        tile.segments[index] = segment;
      }
      const key = `${want.rgb}|${want.top}|${want.height}|${want.title}`;
      if (segment.hidden) {
        segment.node.style.display = "";
        segment.hidden = false;
      }
      if (segment.key === key) return;
      segment.key = key;
      segment.rect.setAttribute("fill", `rgba(${want.rgb}, 0.10)`);
      segment.rect.setAttribute("stroke", `rgba(${want.rgb}, 0.45)`);
      segment.rect.setAttribute("y", want.top);
      segment.rect.setAttribute("height", Math.max(want.height, 0));
      segment.text.setAttribute("fill", `rgb(${want.rgb})`);
      segment.text.setAttribute("y", want.top + 15);
      segment.text.textContent = want.title;
    }

    setLimit(limit) {
      this.limit = limit;
      this.layout();
    }

    setExpandAll(expanded) {
      this.expandAll = expanded;
      this.groups.forEach((g) => (g.expanded = expanded));
      this.layout();
    }
  }

  // --- the waterfall -------------------------------------------------------------------------

  function niceStep(span) {
    const rough = span / 5;
    const power = 10 ** Math.floor(Math.log10(rough || 1));
    return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= rough) || power;
  }

  class Waterfall {
    constructor(host, pathHost, scaleMs) {
      this.host = host;
      this.pathHost = pathHost;
      this.scaleMs = scaleMs || 0;
      this.doc = null;
      this.time = null;
      this.rows = new Map();
      this.stepsOpen = false;
      this.host.textContent = "";
      this.axis = document.createElement("div");
      this.axis.className = "wf-axis";
      this.axis.setAttribute("aria-hidden", "true");
      this.list = document.createElement("ul");
      this.list.className = "wf-rows";
      this.list.setAttribute("aria-label", "Phases and spans, with their times");
      this.tip = document.createElement("div");
      this.tip.className = "wf-tip";
      this.tip.setAttribute("role", "tooltip");
      this.tip.id = `wf-tip-${++instances}`;
      this.tip.hidden = true;
      this.cursor = document.createElement("div");
      this.cursor.className = "wf-cursor";
      this.cursor.hidden = true;
      this.host.append(this.axis, this.list, this.cursor, this.tip);
      const show = (event) => {
        const li = event.target.closest && event.target.closest("li.wf-row");
        if (li) this.showTip(li);
      };
      this.list.addEventListener("pointerover", show);
      this.list.addEventListener("focusin", show);
      this.list.addEventListener("pointerleave", () => (this.tip.hidden = true));
      this.list.addEventListener("focusout", () => (this.tip.hidden = true));
      this.list.addEventListener("click", (event) => {
        const li = event.target.closest && event.target.closest("li.wf-row[data-steps]");
        if (li) this.toggleSteps();
      });
      this.list.addEventListener("keydown", (event) => {
        const li = event.target.closest && event.target.closest("li.wf-row[data-steps]");
        if (li && (event.key === "Enter" || event.key === " ")) {
          event.preventDefault();
          this.toggleSteps();
        }
      });
    }

    toggleSteps() {
      this.stepsOpen = !this.stepsOpen;
      this.render();
      const folded = this.list.querySelector("li[data-steps]");
      if (folded) folded.focus();
    }

    update(doc) {
      this.doc = doc;
      this.receivedAt = performance.now();
      this.render();
      clearInterval(this.ticker);
      // Open bars grow with the clock between two updates while the invocation runs.
      if (!doc.finished && doc.bars.length) this.ticker = setInterval(() => this.render(), 200);
    }

    setTime(time) {
      this.time = time;
      this.render();
    }

    now() {
      const doc = this.doc;
      if (this.time !== null) return this.time;
      if (doc.finished || !this.receivedAt) return doc.now_ms;
      return doc.now_ms + Math.min(performance.now() - this.receivedAt, 600000);
    }

    bars(now) {
      let bars = this.doc.bars
        .filter((bar) => bar.start <= now)
        .map((bar) => {
          const open = bar.end === null || bar.end > now;
          return { ...bar, open, end: open ? now : bar.end };
        });
      const steps = bars.filter((bar) => bar.kind === "step");
      if (steps.length > STEPS_SHOWN) {
        const first = steps[0];
        const last = steps[steps.length - 1];
        const folded = {
          ...first, key: "steps", label: `${this.stepsOpen ? "▾" : "▸"} ${steps.length} steps`, title: "",
          end: last.end, open: last.open, steps: true, critical_ms: steps.reduce((sum, s) => sum + s.critical_ms, 0),
        };
        const at = bars.indexOf(first);
        bars = bars.filter((bar) => bar.kind !== "step" || this.stepsOpen);
        bars.splice(at, 0, folded);
      }
      return bars;
    }

    render() {
      const doc = this.doc;
      if (!doc) return;
      if (!doc.bars.length) {
        this.list.textContent = "";
        this.rows.clear();
        this.pathHost && (this.pathHost.textContent = "");
        return;
      }
      const now = this.now();
      const scale = Math.max(doc.total_ms || 0, now, this.scaleMs, 0.001);
      const pct = (value) => `${Math.max(0, Math.min(100, (100 * value) / scale)).toFixed(3)}%`;
      // Bars are placed by transforms against --scale: when the scale grows (a running
      // invocation), one property changes and nothing is laid out again.
      if (this.scale !== scale) {
        this.host.style.setProperty("--scale", String(scale));
        this.scale = scale;
      }
      this.renderAxis(scale, pct);
      const critical = new Map();
      for (const [key, start, end] of doc.critical) {
        if (start > now) continue;
        if (!critical.has(key)) critical.set(key, []);
        critical.get(key).push([start, Math.min(end, now)]);
      }
      const seen = new Set();
      let previous = null;
      for (const bar of this.bars(now)) {
        seen.add(bar.key);
        let li = this.rows.get(bar.key);
        if (!li) {
          li = this.row();
          this.rows.set(bar.key, li);
        }
        const expected = previous ? previous.nextSibling : this.list.firstChild;
        if (expected !== li) this.list.insertBefore(li, expected);
        previous = li;
        this.fill(li, bar, critical.get(bar.key) || (bar.steps ? this.stepSegments(critical) : []));
      }
      for (const [key, li] of this.rows) {
        if (!seen.has(key)) {
          li.remove();
          this.rows.delete(key);
        }
      }
      this.cursor.hidden = this.time === null;
      if (this.time !== null) this.cursor.style.left = `calc(var(--wf-label) + (100% - var(--wf-label) - var(--wf-ms)) * ${Math.min(this.time / scale, 1)})`;
      this.renderPath(doc);
      if (doc.finished || this.time !== null) clearInterval(this.ticker);
    }

    stepSegments(critical) {
      return [...critical.entries()].filter(([key]) => /^step-\d+$/.test(key)).flatMap(([, segments]) => segments);
    }

    row() {
      const li = document.createElement("li");
      li.className = "wf-row";
      li.tabIndex = 0;
      li.innerHTML = '<span class="wf-label"></span><span class="wf-track"><span class="wf-bar"></span></span><span class="wf-ms"></span>';
      li.setAttribute("aria-describedby", this.tip.id);
      return li;
    }

    fill(li, bar, segments) {
      const signature = `${bar.label}|${bar.start}|${bar.end}|${bar.open}|${bar.failed}|${bar.critical_ms}|${segments.join(";")}|${this.stepsOpen}`;
      if (li.signature === signature) return;
      li.signature = signature;
      const classes = `wf-row depth-${bar.depth} kind-${bar.kind}${bar.open ? " open" : ""}${bar.failed ? " failure" : ""}${bar.critical_ms > 0 || segments.length ? " critical" : ""}`;
      if (li.className !== classes) li.className = classes;
      const duration = bar.end - bar.start;
      const text = `${bar.label}`;
      const label = li.firstChild;
      if (label.textContent !== text) label.textContent = text;
      const track = li.children[1];
      const fill = track.firstChild;
      fill.className = `wf-bar phase-${bar.phase}`;
      fill.style.setProperty("--start", bar.start.toFixed(3));
      fill.style.setProperty("--length", duration.toFixed(3));
      track.querySelectorAll(".wf-crit").forEach((node) => node.remove());
      for (const [start, end] of segments) {
        const crit = document.createElement("span");
        crit.className = "wf-crit";
        crit.style.setProperty("--start", start.toFixed(3));
        crit.style.setProperty("--length", (end - start).toFixed(3));
        track.appendChild(crit);
      }
      li.lastChild.textContent = `${duration.toFixed(1)}${bar.open ? "…" : ""}`;
      li.dataset.key = bar.key;
      li.dataset.start = bar.start.toFixed(3);
      li.dataset.end = bar.end.toFixed(3);
      if (bar.steps) li.dataset.steps = "true";
      else delete li.dataset.steps;
      if (bar.steps) li.setAttribute("aria-expanded", String(this.stepsOpen));
      else li.removeAttribute("aria-expanded");
      li.setAttribute("aria-label", `${bar.label.replace(/^[▸▾] /, "")}: ${ms(duration)}${bar.open ? " so far" : ""}, from +${ms(bar.start)} to +${ms(bar.end)}${bar.failed ? ", failed" : ""}${bar.critical_ms > 0 ? `, ${ms(bar.critical_ms)} of it on the critical path` : ""}`);
      li.dataset.tip = `${bar.label.replace(/^[▸▾] /, "")}\n+${ms(bar.start)} → +${ms(bar.end)}${bar.open ? " (still running)" : ""}\n${ms(duration)}${bar.critical_ms > 0 ? ` · critical path: ${ms(bar.critical_ms)}` : ""}${bar.failed ? " · failed" : ""}${bar.title ? `\n${bar.title}` : ""}`;
    }

    renderAxis(scale, pct) {
      const step = niceStep(scale);
      const key = `${scale.toFixed(1)}`;
      if (this.axis.dataset.scale === key) return;
      this.axis.dataset.scale = key;
      const ticks = [];
      for (let t = 0; t <= scale + 1e-9; t += step) ticks.push(`<span class="tick" style="left: ${pct(t)}">${t >= 1000 ? `${(t / 1000).toFixed(step >= 1000 ? 0 : 1)} s` : `${+t.toFixed(3)} ms`}</span>`);
      this.axis.innerHTML = `<span class="wf-label"></span><span class="wf-track">${ticks.join("")}</span><span class="wf-ms">ms</span>`;
    }

    renderPath(doc) {
      if (!this.pathHost) return;
      const parts = doc.path.map((p) => `${p.label} ${ms(p.ms)} (${p.percent}%)`);
      const text = parts.length ? `Critical path${doc.finished ? "" : " so far"}, its biggest parts: ${parts.join(" · ")}` : "";
      if (this.pathHost.textContent !== text) this.pathHost.textContent = text;
    }

    showTip(li) {
      this.tip.textContent = li.dataset.tip || "";
      this.tip.hidden = false;
      this.tip.style.top = `${li.offsetTop + li.offsetHeight + 2}px`;
    }
  }

  // --- one panel: diagram, waterfall, list, toolbar, replay --------------------------------------

  const PACED = { shortest: 150, longest: 1500 };

  class TraceView {
    constructor(section) {
      this.section = section;
      this.diagram = new SequenceDiagram(section.querySelector(".sequence-diagram"), section.dataset, section.classList.contains("live-panel"));
      const view = section.querySelector("[data-waterfall-view]");
      this.waterfall = new Waterfall(view, section.querySelector("[data-critical-path]"));
      this.replay = { index: null, timer: null, playing: false };
      this.pending = { replace: false, rows: [], waterfall: false };
      this.frame = null;
      this.waterfallId = `${section.querySelector(".trace-events").id}-waterfall`;
      this.loadRows();
      this.loadWaterfall();
      new MutationObserver((mutations) => this.onRows(mutations)).observe(section.querySelector(".trace-wrap"), { childList: true, subtree: true });
      new MutationObserver((mutations) => this.onPanel(mutations)).observe(section, { childList: true });
      this.setUpToolbar();
      this.enableReplay();
    }

    items() {
      return Array.from(this.section.querySelectorAll(".trace-events > li.trace-event"));
    }

    loadRows() {
      this.diagram.reset();
      this.diagram.add(this.items().map(rowOf));
    }

    // What arrives (rows appended by htmx, a new waterfall document) is drawn in the next frame:
    // htmx's swap and the drawing are two short tasks instead of one long one, and a burst of
    // messages within one frame is drawn once.
    onRows(mutations) {
      for (const mutation of mutations) {
        for (const node of mutation.addedNodes) {
          if (node.nodeType !== 1) continue;
          if (node.matches("ol.trace-events")) {
            this.pending.replace = true;
            this.pending.rows = [];
          } else if (node.matches("li.trace-event")) {
            this.pending.rows.push(rowOf(node));
          }
        }
      }
      this.schedule();
    }

    onPanel(mutations) {
      for (const mutation of mutations) {
        for (const node of mutation.addedNodes) {
          if (node.nodeType !== 1) continue;
          if (node.id === this.waterfallId) this.pending.waterfall = true;
          if (node.matches("#live-header")) this.enableReplay();
        }
      }
      this.schedule();
    }

    schedule() {
      if (this.frame) return;
      this.frame = requestAnimationFrame(() => {
        this.frame = null;
        const { replace, rows, waterfall } = this.pending;
        this.pending = { replace: false, rows: [], waterfall: false };
        if (replace) {
          this.stopReplay();
          this.loadRows();
        } else if (rows.length) {
          this.diagram.add(rows);
        }
        if (waterfall) this.loadWaterfall();
      });
    }

    loadWaterfall() {
      const data = document.getElementById(this.waterfallId);
      if (data && this.replay.index === null) this.waterfall.update(JSON.parse(data.textContent));
    }

    setUpToolbar() {
      const panes = this.section.querySelector(".trace-panes");
      const buttons = this.section.querySelectorAll("[data-view]");
      const choose = (view) => {
        panes.dataset.panes = view;
        buttons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.view === view)));
      };
      buttons.forEach((button) =>
        button.addEventListener("click", () => {
          choose(button.dataset.view);
          try {
            localStorage.setItem("trace-view", button.dataset.view);
          } catch (error) {
            /* storage may be disabled: the choice lasts for this page */
          }
        }),
      );
      let saved = null;
      try {
        saved = localStorage.getItem("trace-view");
      } catch (error) {
        saved = null;
      }
      if (saved && this.section.querySelector(`[data-view="${saved}"]`)) choose(saved);
      const detail = this.section.querySelector("[data-detail-toggle]");
      if (detail)
        detail.addEventListener("click", () => {
          const expanded = detail.getAttribute("aria-pressed") !== "true";
          detail.setAttribute("aria-pressed", String(expanded));
          detail.textContent = expanded ? "Fold lifecycle detail" : "Show lifecycle detail";
          this.diagram.setExpandAll(expanded);
        });
      this.play = this.section.querySelector("[data-replay=play]");
      this.stepButton = this.section.querySelector("[data-replay=step]");
      this.speed = this.section.querySelector("[data-replay-speed]");
      this.position = this.section.querySelector("[data-replay-position]");
      if (this.play) this.play.addEventListener("click", () => (this.replay.playing ? this.pause() : this.start()));
      if (this.stepButton) this.stepButton.addEventListener("click", () => this.step());
      if (this.speed)
        this.speed.addEventListener("change", () => {
          if (this.replay.playing) this.start(true);
        });
    }

    // Replay is possible once the invocation has ended (a live panel says so in its header).
    enableReplay() {
      if (!this.play) return;
      const header = this.section.querySelector("#live-header [data-final]");
      const ended = !header || header.dataset.final === "true";
      this.play.disabled = !ended;
      this.stepButton.disabled = !ended;
    }

    offsets() {
      return this.diagram.rows.map((row) => row.offset);
    }

    showUpTo(index, time) {
      this.replay.index = index;
      this.diagram.setLimit(index);
      this.waterfall.setTime(time);
      const total = this.diagram.rows.length;
      this.position.textContent = `${index} / ${total} arrows · +${ms(Math.max(time, 0))}`;
      this.section.dataset.replaying = "true";
    }

    start(keepPosition) {
      const offsets = this.offsets();
      if (!offsets.length) return;
      clearTimeout(this.replay.timer);
      if (!keepPosition && (this.replay.index === null || this.replay.index >= offsets.length)) this.showUpTo(0, 0);
      this.replay.playing = true;
      this.play.textContent = "❚❚ Pause";
      const speed = this.speed.value;
      if (speed === "paced") {
        const next = () => {
          const index = this.replay.index;
          if (index >= offsets.length) return this.finish();
          const gap = index === 0 ? PACED.shortest : Math.min(PACED.longest, Math.max(PACED.shortest, offsets[index] - offsets[index - 1]));
          this.replay.timer = setTimeout(() => {
            this.showUpTo(index + 1, offsets[index]);
            next();
          }, gap);
        };
        next();
        return;
      }
      // Real time (or slowed down): the clock runs from where the replay stands.
      const factor = Number(speed);
      const from = this.replay.index ? offsets[this.replay.index - 1] : 0;
      const began = performance.now();
      const end = Math.max(...offsets);
      const tick = () => {
        const time = from + (performance.now() - began) * factor;
        let index = this.replay.index;
        while (index < offsets.length && offsets[index] <= time) index++;
        this.showUpTo(index, Math.min(time, end));
        if (time >= end) return this.finish();
        this.replay.timer = setTimeout(tick, 40);
      };
      tick();
    }

    pause() {
      clearTimeout(this.replay.timer);
      this.replay.playing = false;
      this.play.textContent = "▶ Resume";
    }

    step() {
      const offsets = this.offsets();
      if (!offsets.length) return;
      this.pause();
      const index = this.replay.index === null || this.replay.index >= offsets.length ? 0 : this.replay.index;
      this.showUpTo(index + 1, offsets[index]);
      if (index + 1 >= offsets.length) this.finish();
    }

    finish() {
      clearTimeout(this.replay.timer);
      this.replay.playing = false;
      this.play.textContent = "▶ Replay";
      this.position.textContent = `${this.diagram.rows.length} / ${this.diagram.rows.length} arrows · replayed`;
      this.replay.index = this.diagram.rows.length;
      delete this.section.dataset.replaying;
    }

    stopReplay() {
      if (this.replay.index === null) return;
      clearTimeout(this.replay.timer);
      this.replay = { index: null, timer: null, playing: false };
      this.diagram.setLimit(Infinity);
      this.waterfall.setTime(null);
      if (this.play) this.play.textContent = "▶ Replay";
      delete this.section.dataset.replaying;
    }
  }

  // Waterfalls without a panel (the compare page): drawn once from their document.
  function setUpStandaloneWaterfall(view) {
    const source = document.querySelector(view.dataset.waterfallSource);
    if (!source) return;
    const waterfall = new Waterfall(view, view.parentElement.querySelector("[data-critical-path]"), Number(view.dataset.scaleMs) || 0);
    waterfall.update(JSON.parse(source.textContent));
  }

  function setUp(root) {
    root.querySelectorAll("[data-trace-view]").forEach((section) => {
      if (!section.traceView) section.traceView = new TraceView(section);
    });
    root.querySelectorAll("[data-waterfall-source]").forEach(setUpStandaloneWaterfall);
  }

  // A trace list replaced whole (a new invocation, or the stored trace) is emptied first: htmx
  // would otherwise fire two cleanup events per element of the old rows (thousands for a long
  // trace), and rows hold nothing of htmx's to clean up.
  document.addEventListener("htmx:oobBeforeSwap", (event) => {
    const { target, fragment } = event.detail;
    const incoming = fragment && fragment.firstElementChild;
    // Replaced whole (outerHTML): the fragment holds the new list itself; rows appended
    // (beforeend) come as bare rows.
    if (incoming && incoming.matches("ol.trace-events") && target.matches && target.matches("ol.trace-events")) target.textContent = "";
  });

  window.traceViews = { setUp };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => setUp(document));
  else setUp(document);
})();
