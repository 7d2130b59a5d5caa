// tokenwatch dashboard: the little JavaScript there is. The live feed
// (EventSource) and the overview's refresh. Everything from the server is
// put on the page as text, never as HTML, except the overview fragment,
// which the server renders (and escapes) itself.
"use strict";

(function () {
  const page = document.body.dataset.page;
  if (page === "overview") overview();
  if (page === "live") live();

  function overview() {
    const box = document.getElementById("overview-body");
    if (!box) return;
    setInterval(async () => {
      try {
        const r = await fetch(box.dataset.refresh, { credentials: "same-origin", redirect: "manual" });
        if (r.type === "opaqueredirect" || r.status === 401) { location.reload(); return; }
        if (r.ok) box.innerHTML = await r.text();
      } catch (e) { /* the next tick tries again */ }
    }, 5000);
  }

  function live() {
    const body = document.querySelector("#feed tbody");
    const status = document.getElementById("live-status");
    const waiting = document.getElementById("waiting");
    const counts = document.getElementById("counts");
    const pauseBtn = document.getElementById("pause");
    const fKind = document.getElementById("f-kind");
    const fSev = document.getElementById("f-sev");
    const fText = document.getElementById("f-text");
    const MAX_ROWS = 500;
    let paused = false;
    let queue = [];
    let skipped = 0;

    function cell(tr, text, cls) {
      const td = document.createElement("td");
      if (cls) td.className = cls;
      td.textContent = text == null ? "" : String(text);
      tr.appendChild(td);
      return td;
    }

    function matches(item) {
      const k = fKind.value, s = fSev.value, t = fText.value.trim().toLowerCase();
      if (k === "action" && item.type !== "action") return false;
      if (k && k !== "action" && item.kind !== k) return false;
      if (s && item.severity !== s) return false;
      if (t && !JSON.stringify(item).toLowerCase().includes(t)) return false;
      return true;
    }

    function row(item) {
      const tr = document.createElement("tr");
      tr.className = "new " + item.type;
      tr.dataset.item = JSON.stringify(item);
      if (item.type === "finding") {
        cell(tr, (item.event_time || "").replace("T", " "), "mono");
        const what = cell(tr, "");
        const a = document.createElement("a");
        a.href = "/incidents/" + encodeURIComponent(item.incident_id || "");
        a.textContent = item.kind + (item.mode === "observe" ? " (observe)" : "");
        what.appendChild(a);
        const sev = cell(tr, "");
        const span = document.createElement("span");
        span.className = "sev sev-" + item.severity;
        span.textContent = item.severity;
        sev.appendChild(span);
        cell(tr, (item.subject ? item.subject + " · " : "") + item.token_id, "mono");
        cell(tr, [item.city, item.country].filter(Boolean).join(", ") + " AS" + item.asn + " " + item.network);
        cell(tr, item.summary);
      } else {
        cell(tr, "decided", "muted");
        const what = cell(tr, "");
        const a = document.createElement("a");
        a.href = "/incidents/" + encodeURIComponent(item.incident_id || "");
        a.textContent = item.kind + " → " + item.state;
        what.appendChild(a);
        cell(tr, "rule " + item.rule, "muted");
        cell(tr, item.token_id, "mono");
        cell(tr, "");
        cell(tr, item.why ? item.summary + " (" + item.why + ")" : item.summary);
      }
      tr.hidden = !matches(item);
      return tr;
    }

    function show(item) {
      body.insertBefore(row(item), body.firstChild);
      while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
    }

    function refilter() {
      for (const tr of body.rows) tr.hidden = !matches(JSON.parse(tr.dataset.item));
    }
    [fKind, fSev].forEach((e) => e.addEventListener("change", refilter));
    fText.addEventListener("input", refilter);

    pauseBtn.addEventListener("click", () => {
      paused = !paused;
      pauseBtn.textContent = paused ? "Resume" : "Pause";
      if (!paused) {
        queue.forEach(show);
        queue = [];
      }
      waiting.textContent = "";
    });

    const es = new EventSource("/live/stream");
    es.onopen = () => { status.textContent = "live"; status.className = "pill ok"; };
    es.onerror = () => { status.textContent = "reconnecting…"; status.className = "pill warn"; };
    es.addEventListener("item", (e) => {
      let item;
      try { item = JSON.parse(e.data); } catch (_) { return; }
      if (paused) {
        queue.push(item);
        waiting.textContent = queue.length + " new while paused";
      } else {
        show(item);
      }
    });
    es.addEventListener("lagged", (e) => {
      skipped += Number(e.data) || 0;
    });
    es.addEventListener("stats", (e) => {
      try {
        const s = JSON.parse(e.data);
        counts.textContent = Math.round(s.events_per_second) + " events/s · " + s.events_total +
          " events · " + s.findings_total + " findings · lag " + s.consumer_lag +
          (skipped ? " · " + skipped + " items skipped (this browser fell behind)" : "");
      } catch (_) { /* ignore */ }
    });
  }
})();
