// Lepton Edge console: keyboard review, verdict buttons, live tiles. Plain JS, no build step, nothing fetched
// from outside this server.
"use strict";

function go(url) { if (url) { window.location.href = url; } }

function markVerdict(verdict) {
  const sel = document.getElementById("selected");
  if (!sel) { return; }
  const id = sel.dataset.eventId;
  const note = (document.getElementById("note") || {}).value || null;
  fetch(`/api/events/${encodeURIComponent(id)}/verdict`, {
    method: "POST", headers: {"Content-Type": "application/json"}, credentials: "same-origin",
    body: JSON.stringify({verdict: verdict, note: note}),
  }).then((r) => r.json().then((body) => ({ok: r.ok, body: body}))).then(({ok, body}) => {
    const shown = document.getElementById("verdict");
    if (!ok) { shown.textContent = body.error || "not stored"; return; }
    shown.textContent = body.verdict;
    shown.className = `verdict v-${body.verdict}`;
    const item = document.querySelector(`#events li[data-event-id="${CSS.escape(id)}"] .verdict`);
    if (item) { item.textContent = body.verdict; item.className = `verdict v-${body.verdict}`; }
  });
}

function toggleHeat() {
  const img = document.getElementById("snapshot");
  if (!img || !img.dataset.heat) { return; }
  img.src = img.src.endsWith(img.dataset.heat) ? img.dataset.plain : img.dataset.heat;
}

function reviewPage() {
  document.querySelectorAll(".verdict-bar button").forEach((b) => {
    b.addEventListener("click", () => markVerdict(b.dataset.verdict));
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT" || ev.metaKey || ev.ctrlKey) { return; }
    const sel = document.getElementById("selected");
    const keys = {
      j: () => go(sel && sel.dataset.next), ArrowDown: () => go(sel && sel.dataset.next),
      k: () => go(sel && sel.dataset.prev), ArrowUp: () => go(sel && sel.dataset.prev),
      n: () => markVerdict("normal"), r: () => markVerdict("real"), h: toggleHeat,
    };
    if (keys[ev.key]) { ev.preventDefault(); keys[ev.key](); }
  });
}

function sparkline(points, threshold) {
  const w = 220, h = 40;
  if (points.length < 2) { return `<svg class="sparkline" viewBox="0 0 ${w} ${h}"></svg>`; }
  const t0 = points[0][0], span = (points[points.length - 1][0] - t0) || 1;
  const top = Math.max(threshold * 1.6, ...points.map((p) => p[1]));
  const y = (v) => (h - 2 - Math.min(v, top) / top * (h - 4)).toFixed(1);
  const coords = points.map((p) => `${((p[0] - t0) / span * w).toFixed(1)},${y(p[1])}`).join(" ");
  return `<svg class="sparkline" viewBox="0 0 ${w} ${h}"><line x1="0" x2="${w}" y1="${y(threshold)}" ` +
    `y2="${y(threshold)}" stroke="#e99" stroke-dasharray="3 3"/><polyline fill="none" stroke="#111" ` +
    `stroke-width="1.2" points="${coords}"/></svg>`;
}

function when(iso) { return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace(/(\+00:00|Z)$/, " UTC") : ""; }

function updateTile(tile, cam) {
  const state = tile.querySelector(".state");
  state.textContent = cam.state || "not running";
  state.className = `state s-${cam.state || "unknown"}`;
  tile.querySelector(".since").textContent = cam.state_since ? `since ${when(cam.state_since)}` : "";
  tile.querySelector(".offline").textContent = cam.offline_since ? `offline since ${when(cam.offline_since)}` : "";
  tile.querySelector(".fps").textContent = cam.fps ? `${cam.fps.toFixed(1)} fps` : "– fps";
  tile.querySelector(".drops").textContent = `${cam.drops ?? "–"} dropped`;
  tile.querySelector(".spark").innerHTML = sparkline(cam.sparkline, 3.0);
  const frame = tile.querySelector(".frame");
  if (cam.frame_url) {
    let img = frame.querySelector("img");
    if (!img) { img = document.createElement("img"); img.alt = "last frame"; frame.appendChild(img); }
    img.src = `${cam.frame_url}?t=${Date.now()}`;
  }
}

function livePage() {
  const refresh = () => fetch("/api/cameras", {credentials: "same-origin"}).then((r) => r.json()).then((cams) => {
    cams.forEach((cam) => {
      const tile = document.querySelector(`.tile[data-camera="${CSS.escape(cam.camera_id)}"]`);
      if (tile) { updateTile(tile, cam); } else { window.location.reload(); }
    });
  }).catch(() => {});
  setInterval(refresh, 2000);
}

if (document.body.dataset.page === "review") { reviewPage(); }
if (document.body.dataset.page === "live") { livePage(); }
