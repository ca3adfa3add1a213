// Video: upload a file to POST /api/video (a progress bar while it uploads), then poll
// GET /api/jobs/{id} (the bar follows the frames done); when done, the annotated video, the
// CSV and JSONL links, and one chart per face track: its seven probabilities over time.

import { COLORS, EMOTIONS } from "./draw.js";

const input = document.getElementById("video-input");
const status = document.getElementById("video-status");
const progress = document.getElementById("video-progress");
const results = document.getElementById("video-results");
const player = document.getElementById("video-player");
const links = document.getElementById("video-links");
const charts = document.getElementById("video-charts");

function say(text, error = false) {
  status.textContent = text;
  status.classList.toggle("error", error);
}

export function setupVideo() {
  input.addEventListener("change", () => { if (input.files[0]) upload(input.files[0]); input.value = ""; });
}

function upload(file) {
  results.hidden = true;
  progress.hidden = false;
  progress.value = 0;
  say(`uploading ${file.name}...`);
  const form = new FormData();
  form.append("video", file, file.name);
  const request = new XMLHttpRequest();
  request.open("POST", "/api/video");
  request.upload.onprogress = (event) => { if (event.lengthComputable) progress.value = event.loaded / event.total; };
  request.onerror = () => say("the upload failed: the server could not be reached", true);
  request.onload = () => {
    let answer = {};
    try { answer = JSON.parse(request.responseText); } catch { /* not JSON: use the status */ }
    if (request.status !== 202) {
      progress.hidden = true;
      say(`the server refused the video: ${answer.error || request.statusText}`, true);
      return;
    }
    progress.value = 0;
    poll(answer.id);
  };
  request.send(form);
}

async function poll(id) {
  let job, response;
  try {
    response = await fetch(`/api/jobs/${id}`);
    job = await response.json();
  } catch {
    say("lost the server while the video was being analysed; retrying...", true);
    setTimeout(() => poll(id), 2000);
    return;
  }
  if (!response.ok) {  // 404: the server restarted (jobs live in its memory) or it expired
    progress.hidden = true;
    say(`the server no longer knows this job (${job.error || response.status}): upload the video again`, true);
    return;
  }
  if (job.status === "error") { progress.hidden = true; say(`the analysis failed: ${job.error}`, true); return; }
  if (job.status !== "done") {
    if (job.progress !== null) progress.value = job.progress;
    else progress.removeAttribute("value");  // no frame count: an indeterminate bar
    say(`${job.status}: ${job.frames}${job.total ? ` of ${job.total}` : ""} frames`);
    setTimeout(() => poll(id), 500);
    return;
  }
  progress.value = 1;
  say(`done: ${job.frames} frames, ${job.tracks} face track${job.tracks === 1 ? "" : "s"}, ${job.rows} rows` +
      ` (kept on the server for ${Math.round(job.expires_in_s / 60)} minutes)`);
  player.src = job.outputs.video;
  links.replaceChildren(...[["video", "annotated video (WebM)"], ["csv", "faces.csv"], ["jsonl", "faces.jsonl"]]
    .flatMap(([key, text], i) => {
      const a = document.createElement("a");
      a.href = job.outputs[key];
      a.textContent = text;
      a.download = "";
      return i ? [" · ", a] : [a];
    }));
  results.hidden = false;
  const rows = (await (await fetch(job.outputs.jsonl)).text()).split("\n").filter(Boolean).map((l) => JSON.parse(l));
  drawCharts(rows);
}

function drawCharts(rows) {
  const tracks = new Map();
  for (const row of rows) {
    if (!tracks.has(row.track_id)) tracks.set(row.track_id, []);
    tracks.get(row.track_id).push(row);
  }
  const end = Math.max(1e-6, ...rows.map((r) => r.time_s));
  charts.replaceChildren();
  if (!tracks.size) { charts.textContent = "no face was found in the video"; return; }
  for (const [id, track] of tracks) {
    const canvas = document.createElement("canvas");
    canvas.width = 640; canvas.height = 150;
    const ctx = canvas.getContext("2d");
    const left = 40, top = 18, width = canvas.width - left - 10, height = canvas.height - top - 22;
    ctx.fillStyle = "#0b0d10"; ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = "#9aa4ae"; ctx.font = "12px system-ui, sans-serif";
    ctx.fillText(`track #${id}: probability of each emotion (smoothed) over ${end.toFixed(1)} s`, left, 13);
    ctx.fillText("1", 24, top + 8); ctx.fillText("0", 24, top + height);
    ctx.fillText("0 s", left, canvas.height - 6); ctx.fillText(`${end.toFixed(1)} s`, left + width - 30, canvas.height - 6);
    for (const name of EMOTIONS) {
      ctx.strokeStyle = COLORS[name];
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      track.forEach((row, i) => {
        const x = left + (row.time_s / end) * width, y = top + (1 - row[name]) * height;
        i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
      });
      ctx.stroke();
    }
    EMOTIONS.forEach((name, i) => { ctx.fillStyle = COLORS[name]; ctx.fillText(name, left + 70 + i * 66, canvas.height - 6); });
    charts.append(canvas);
  }
}
