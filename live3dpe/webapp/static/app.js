// live3dpe browser client: sends the camera over WebRTC, shows the edited stream, and
// drives the live settings over a data channel (protocol: live3dpe/webapp/protocol.py).
"use strict";

const $ = (id) => document.getElementById(id);
const live3dpe = {
  pc: null, channel: null, state: null, stats: null, errors: [], knownStyles: null, promptMatch: null, switchedToView: false,
};
window.live3dpe = live3dpe;

function setStatus(text) { $("status").textContent = text; }

function showError(message) {
  live3dpe.errors.push(message);
  $("error").textContent = message;
}

// aiortc does not trickle ICE: send the offer once gathering is complete.
function iceGatheringDone(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
  });
}

// One line naming the server's settings, e.g. "golden statue · paste".
function settingsSummary(s) {
  const parts = [s.prompt_image ? "reference image" : (s.prompt || "no prompt")];
  parts.push(s.mode === "view" ? `view ${s.view}` : s.mode);
  if (s.passthrough) parts.push("pass-through");
  if (s.mirror) parts.push("mirrored");
  return parts.join(" · ");
}

// "Applied" only once a frame made with the settings version the server acknowledged has
// left the server (stats.applied_version), so the page never claims more than the video shows.
function showApplied() {
  const s = live3dpe.state;
  if (!s) { $("applied").textContent = ""; return; }
  const applied = live3dpe.stats ? live3dpe.stats.applied_version : null;
  const done = applied != null && applied >= s.version;
  $("applied").textContent = done ? `Applied: ${settingsSummary(s)}` : `applying… ${settingsSummary(s)}`;
  $("applied").className = done ? "" : "pending";
}

// The form shows the server's settings, so it never contradicts them (a `serve --prompt`
// included). The prompt box is only rewritten when the server's prompt changes, so a state
// reply to some other control does not wipe text being typed.
function fillControls(s, previous) {
  if (!previous || previous.prompt !== s.prompt || previous.prompt_image !== s.prompt_image) {
    $("prompt").value = s.prompt || "";
    if (!s.prompt_image) $("prompt-image").value = "";
  }
  $("view").value = s.view_angles ? "fixed" : s.view;
  $("yaw").value = s.view_angles ? s.view_angles.yaw : 0;
  $("pitch").value = s.view_angles ? s.view_angles.pitch : 0;
  $("mode").value = s.mode;
  for (const name of ["smoothing", "passthrough", "mirror"]) $(name).checked = s[name];
}

// A virtual camera only shows in full view mode: say so rather than let a view change do nothing visible.
function showViewNote(s) {
  let note = "";
  if (s.view !== "frontal" && s.mode !== "view") {
    note = `views other than frontal show in full view mode, not in ${$("mode").selectedOptions[0].textContent}`;
  } else if (s.view !== "frontal" && live3dpe.switchedToView) {
    note = "switched to full view mode: views other than frontal show only there";
  }
  $("view-note").textContent = note;
}

function onMessage(event) {
  let msg;
  try { msg = JSON.parse(event.data); } catch (err) { showError("bad message from server"); return; }
  if (msg.type === "stats") {
    live3dpe.stats = msg;
    const lat = msg.latency_ms_p50 == null ? "–" : msg.latency_ms_p50.toFixed(0);
    const stages = Object.entries(msg.stage_ms).map(([k, v]) => `${k} ${v.toFixed(1)} ms`).join("  ");
    $("stats").textContent = `${msg.fps.toFixed(1)} fps   latency ${lat} ms   dropped ${msg.dropped}\n${stages}`;
    showApplied();
  } else if (msg.type === "state") {
    const previous = live3dpe.state;
    live3dpe.state = msg;
    $("error").textContent = "";
    fillControls(msg, previous);
    showViewNote(msg);
    showApplied();
  } else if (msg.type === "prompt_match") {
    live3dpe.promptMatch = msg;
    $("prompt-match").textContent = msg.message;
    $("prompt-match").className = msg.known === false ? "warning" : "";
  } else if (msg.type === "error") {
    showError(msg.message);
  }
}

function sendControl(changes) {
  const ch = live3dpe.channel;
  if (!ch || ch.readyState !== "open") { showError("not connected"); return false; }
  ch.send(JSON.stringify({ type: "control", ...changes }));
  return true;
}
live3dpe.sendControl = sendControl;

async function start() {
  $("start").disabled = true;
  setStatus("asking for the camera…");
  try {
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    $("local").srcObject = media;
    const pc = new RTCPeerConnection({ iceServers: [] });
    live3dpe.pc = pc;
    pc.addEventListener("track", (ev) => { $("remote").srcObject = new MediaStream([ev.track]); });
    pc.addEventListener("connectionstatechange", () => {
      setStatus(pc.connectionState);
      if (pc.connectionState === "failed") showError("connection failed");
    });
    const channel = pc.createDataChannel("control");
    live3dpe.channel = channel;
    channel.addEventListener("message", onMessage);
    for (const track of media.getVideoTracks()) pc.addTrack(track, media);
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringDone(pc);
    setStatus("connecting…");
    const resp = await fetch("offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
    });
    const answer = await resp.json();
    if (!resp.ok) throw new Error(answer.error || `server answered ${resp.status}`);
    await pc.setRemoteDescription(answer);
    $("stop").disabled = false;
  } catch (err) {
    showError(err.message || String(err));
    setStatus("idle");
    stop();
  }
}

function stop() {
  if (live3dpe.pc) live3dpe.pc.close();
  for (const id of ["local", "remote"]) {
    const v = $(id);
    if (v.srcObject) v.srcObject.getTracks().forEach((t) => t.stop());
    v.srcObject = null;
  }
  live3dpe.pc = null;
  live3dpe.channel = null;
  // the next session starts from its own state and versions
  live3dpe.state = null;
  live3dpe.stats = null;
  live3dpe.switchedToView = false;
  showApplied();
  $("view-note").textContent = "";
  $("start").disabled = false;
  $("stop").disabled = true;
  setStatus("idle");
}

function currentView() {
  const kind = $("view").value;
  if (kind !== "fixed") return kind;
  return { yaw: Number($("yaw").value), pitch: Number($("pitch").value) };
}

// The reference image travels in one data-channel message (aiortc accepts 64 KiB), so it is
// shrunk to REF_SIDE pixels and sent as JPEG; the prompt encoder works at about this size.
const REF_SIDE = 256;

async function referenceDataUrl(file) {
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, REF_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  return canvas.toDataURL("image/jpeg", 0.9);
}

// What the model was trained on (GET /styles): a line under the prompt and its examples as suggestions.
async function loadKnownStyles() {
  try {
    const resp = await fetch("styles");
    const info = await resp.json();
    live3dpe.knownStyles = info.known_styles;
    $("known-styles").textContent = info.line;
    for (const style of info.known_styles || []) {
      const option = document.createElement("option");
      option.value = style.example;
      option.label = style.label;
      $("style-examples").appendChild(option);
    }
  } catch (err) {
    $("known-styles").textContent = "known styles: could not be read from the server";
  }
}
loadKnownStyles();

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
$("controls").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sendControl({ prompt: $("prompt").value });
});
$("prompt-image").addEventListener("change", async () => {
  const file = $("prompt-image").files[0];
  if (!file) return;
  try {
    sendControl({ prompt_image: await referenceDataUrl(file) });
  } catch (err) {
    showError(`cannot read ${file.name}: ${err.message || err}`);
  }
});
// A virtual camera only shows in full view mode, so picking one in another mode switches to
// it (as `v` does in the live window) and the note under the view says so.
for (const id of ["view", "yaw", "pitch"]) {
  $(id).addEventListener("change", () => {
    if (id !== "view") $("view").value = "fixed";
    const changes = { view: currentView() };
    if ($("view").value !== "frontal" && $("mode").value !== "view") {
      changes.mode = "view";
      live3dpe.switchedToView = true;
    }
    sendControl(changes);
  });
}
$("mode").addEventListener("change", () => {
  live3dpe.switchedToView = false;
  sendControl({ mode: $("mode").value });
});
$("smoothing").addEventListener("change", () => sendControl({ smoothing: $("smoothing").checked }));
$("passthrough").addEventListener("change", () => sendControl({ passthrough: $("passthrough").checked }));
$("mirror").addEventListener("change", () => sendControl({ mirror: $("mirror").checked }));
