// Live: the camera through getUserMedia, its frames as JPEG over the socket /api/live, the
// answers drawn over the picture. One frame in flight at a time: the next is sent when the
// answer to the last comes back, so the picture's boxes are one round trip old, never more
// (the server also keeps only the newest frame, for clients that do not wait).
// window.emotionLatest is the last message the socket delivered, as it delivered it.

import { drawFace, normalize } from "./draw.js";

const canvas = document.getElementById("live-canvas");
const ctx = canvas.getContext("2d");
const video = document.getElementById("live-video");
const status = document.getElementById("live-status");
const stats = document.getElementById("live-stats");
const grab = document.createElement("canvas");  // the frame as sent, at most 640 wide

let socket = null, waiting = false, sentAt = 0, faces = [], fps = 0, lastAnswer = 0, rtt = 0;
let retry = 1000;
export let latestFrame = null;  // the newest JPEG sent (the Inside view explains it)
export let cameraProblem = null;  // why there is no camera picture, once that is known

function say(text, error = false) {
  status.textContent = text;
  status.classList.toggle("error", error);
}

export async function startCamera() {
  if (!navigator.mediaDevices?.getUserMedia) {
    cameraProblem = "this browser gives no camera to this page";
    say("This browser gives no camera to this page: a camera needs https or http://localhost " +
        "(or 127.0.0.1). Photos and Video still work.", true);
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    video.srcObject = stream;
    await video.play();
    stream.getVideoTracks()[0].addEventListener("ended", () => {
      cameraProblem = "The camera stopped (unplugged, or taken by another program).";
      say(cameraProblem, true);
    });
  } catch (err) {
    const why = {
      NotAllowedError: "Camera access was refused. Allow the camera for this page (the icon in the address bar) and reload.",
      NotFoundError: "No camera was found on this device.",
      NotReadableError: "The camera is in use by another program, or the system would not start it.",
      OverconstrainedError: "The camera cannot give a picture this page asks for.",
    }[err.name] || `The camera did not start: ${err.name}: ${err.message}`;
    cameraProblem = why;
    say(why + " Photos and Video still work.", true);
    return;
  }
  say("camera on; connecting...");
  connect();
  requestAnimationFrame(paint);
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/api/live`);
  socket.binaryType = "arraybuffer";
  socket.onopen = () => { retry = 1000; waiting = false; say("live: the model is watching"); send(); };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    window.emotionLatest = message;
    waiting = false;
    const now = performance.now();
    rtt = now - sentAt;
    if (lastAnswer) fps = fps ? 0.9 * fps + 0.1 * (1000 / (now - lastAnswer)) : 1000 / (now - lastAnswer);
    lastAnswer = now;
    if (message.error) say(`the server could not read a frame: ${message.error}`, true);
    else {
      faces = message.faces.map(normalize);
      if (status.classList.contains("error")) say("live: the model is watching");  // recovered
    }
    stats.textContent = `${fps.toFixed(1)} answers/s  round trip ${rtt.toFixed(0)} ms  ` +
      `server ${message.latency_ms} ms  ${faces.length} face${faces.length === 1 ? "" : "s"}`;
    send();
  };
  socket.onclose = (event) => {
    waiting = false;
    const why = event.code === 1013 ? `the server is busy (${event.reason})`
      : event.code === 1000 && event.reason ? `the server closed the idle session (${event.reason})`
      : "the connection to the server dropped";
    say(`${why}: reconnecting in ${retry / 1000} s...`, true);
    setTimeout(connect, retry);
    retry = Math.min(10000, retry * 2);
  };
}

function send() {
  if (!socket || socket.readyState !== WebSocket.OPEN || waiting || !video.videoWidth) {
    if (socket && socket.readyState === WebSocket.OPEN && !waiting) setTimeout(send, 50);
    return;
  }
  const scale = Math.min(1, 640 / video.videoWidth);
  grab.width = Math.round(video.videoWidth * scale);
  grab.height = Math.round(video.videoHeight * scale);
  grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
  waiting = true;
  grab.toBlob((blob) => {
    latestFrame = blob;
    sentAt = performance.now();
    if (socket.readyState === WebSocket.OPEN) socket.send(blob);
    else waiting = false;
  }, "image/jpeg", 0.8);
}

function paint() {
  if (video.videoWidth) {
    if (canvas.width !== grab.width && grab.width) { canvas.width = grab.width; canvas.height = grab.height; }
    ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
    for (const face of faces) drawFace(ctx, face);
  }
  requestAnimationFrame(paint);
}
