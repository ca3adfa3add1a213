// Drawing a face's answer on a canvas: the box, "#id emotion p", intensity and phase, an
// emoji and the seven probability bars. Used by the live view and the photo results.

export const EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];
// The same colours as emotion/io/draw.py (there in BGR).
export const COLORS = {
  angry: "#dc2828", disgust: "#3ca03c", fear: "#a078c8", happy: "#fad228",
  sad: "#2882c8", surprise: "#faa028", neutral: "#bebebe",
};
export const EMOJI = {
  angry: "\u{1F620}", disgust: "\u{1F922}", fear: "\u{1F628}", happy: "\u{1F604}",
  sad: "\u{1F622}", surprise: "\u{1F62E}", neutral: "\u{1F610}",
};

// A face in either schema: a live/video row {x, y, w, h, angry, ...} or a predict record
// {box: [x, y, w, h], probabilities: {...}}. Both may carry the head pose and the parts
// (issue 17: "pose": {yaw, pitch, roll} in degrees, "parts": {eyes, eyebrows, mouth} in
// frame pixels, null where not found) and the 68 landmarks ("landmarks": [[x, y], ...]);
// a server without them sends none, and then nothing of them is drawn.
export function normalize(face, index) {
  const box = face.box || [face.x, face.y, face.w, face.h];
  const probabilities = face.probabilities || Object.fromEntries(EMOTIONS.map((e) => [e, face[e]]));
  return { id: face.track_id ?? index + 1, box, probabilities, emotion: face.emotion,
           intensity: face.intensity || "", phase: face.phase || "",
           pose: face.pose || null, parts: face.parts || null,
           landmarks: parseLandmarks(face.landmarks) };
}

// The landmarks as [[x, y], ...]: a record's list, or a CSV row's JSON text; null if none.
function parseLandmarks(points) {
  if (typeof points === "string") {
    try { points = JSON.parse(points); } catch { return null; }
  }
  return Array.isArray(points) && points.length ? points : null;
}

// The 68 points as small dots.
function drawLandmarks(ctx, points, scale) {
  const r = Math.max(1, Math.round(scale * 1.5));
  ctx.fillStyle = LANDMARK_COLOR;
  for (const [px, py] of points) {
    ctx.beginPath();
    ctx.arc(px * scale, py * scale, r, 0, 2 * Math.PI);
    ctx.fill();
  }
}

// "yaw 12 pitch -3 roll 5" (degrees; "?" where the server could not tell), or "".
export function poseText(pose) {
  if (!pose) return "";
  const deg = (v) => (typeof v === "number" ? Math.round(v).toString() : "?");
  return `yaw ${deg(pose.yaw)} pitch ${deg(pose.pitch)} roll ${deg(pose.roll)}`;
}

export const PARTS_COLOR = "#00e5ff";
const LANDMARK_COLOR = "#ffe14d";  // the points: apart from the parts' boxes

// The eyes, eyebrows and mouth as thin boxes; missing ones (null) are skipped.
function drawParts(ctx, parts, scale) {
  const boxes = [...(parts.eyes || []), ...(parts.eyebrows || []), parts.mouth]
    .filter((b) => Array.isArray(b) && b.length === 4);
  ctx.lineWidth = Math.max(1, Math.round(scale * 1.5));
  ctx.strokeStyle = PARTS_COLOR;
  for (const b of boxes) {
    const [x, y, w, h] = b.map((v) => v * scale);
    ctx.strokeRect(x, y, w, h);
  }
}

export function drawFace(ctx, face, scale = 1) {
  const [x, y, w, h] = face.box.map((v) => v * scale);
  const color = COLORS[face.emotion] || "#fff";
  const p = face.probabilities[face.emotion] ?? 0;
  const line = Math.max(2, Math.round(w / 60));
  ctx.lineWidth = line;
  ctx.strokeStyle = color;
  ctx.strokeRect(x, y, w, h);

  const font = Math.max(12, Math.round(Math.min(22, w / 7)));
  ctx.font = `${font}px system-ui, sans-serif`;
  const label = `#${face.id} ${face.emotion} ${p.toFixed(2)} ${face.intensity} ${face.phase}`.trim();
  const width = ctx.measureText(label).width + 8;
  const top = y - font - 8 >= 0 ? y - font - 8 : y + h;
  ctx.fillStyle = color;
  ctx.fillRect(x - line / 2, top, width, font + 8);
  ctx.fillStyle = "#000";
  ctx.fillText(label, x + 4, top + font + 1);

  if (face.landmarks) drawLandmarks(ctx, face.landmarks, scale);
  if (face.parts) drawParts(ctx, face.parts, scale);
  const pose = poseText(face.pose);
  if (pose) {  // under the box (and under the label, if that went below it), else inside
    const small = Math.max(11, Math.round(font * 0.75));
    ctx.font = `${small}px system-ui, sans-serif`;
    const below = top === y + h ? top + font + 8 : y + h;
    const py = below + small + 6 <= ctx.canvas.height ? below + 2 : y + h - small - 6;
    ctx.fillStyle = "rgba(0,0,0,.6)";
    ctx.fillRect(x, py, ctx.measureText(pose).width + 8, small + 4);
    ctx.fillStyle = PARTS_COLOR;
    ctx.fillText(pose, x + 4, py + small);
  }

  // The emoji and the bars in a column beside the box (right if it fits, else left).
  const barW = Math.max(60, w * 0.6), barH = Math.max(8, Math.round(font * 0.6));
  const side = x + w + 8 + barW + 70 <= ctx.canvas.width ? x + w + 8 : Math.max(0, x - barW - 78);
  ctx.font = `${font * 1.6}px system-ui, sans-serif`;
  ctx.fillText(EMOJI[face.emotion] || "", side, y + font * 1.6);
  ctx.font = `${Math.max(10, barH)}px system-ui, sans-serif`;
  EMOTIONS.forEach((name, i) => {
    const by = y + font * 2.2 + i * (barH + 4);
    ctx.fillStyle = "rgba(0,0,0,.55)";
    ctx.fillRect(side, by, barW + 66, barH + 2);
    ctx.fillStyle = COLORS[name];
    ctx.fillRect(side + 62, by + 1, barW * (face.probabilities[name] ?? 0), barH);
    ctx.fillStyle = "#fff";
    ctx.fillText(name, side + 2, by + barH);
  });
}

// Seven bars as HTML (the Inside view).
export function barsHtml(element, probabilities) {
  element.replaceChildren(...EMOTIONS.map((name) => {
    const row = document.createElement("div");
    row.className = "bar";
    const label = document.createElement("span");
    label.textContent = `${EMOJI[name]} ${name}`;
    const bar = document.createElement("div");
    bar.style.width = `${Math.round(100 * probabilities[name])}%`;
    bar.style.background = COLORS[name];
    const value = document.createElement("span");
    value.textContent = probabilities[name].toFixed(2);
    row.append(label, bar, value);
    return row;
  }));
}
