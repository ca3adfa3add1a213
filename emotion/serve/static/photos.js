// Photos: each dropped or picked image goes to POST /api/predict; the answer (the same JSON
// as `emotion predict --json`) is drawn over the image and shown beside it.

import { drawFace, normalize } from "./draw.js";

const drop = document.getElementById("drop");
const input = document.getElementById("photo-input");
const results = document.getElementById("photo-results");

export function setupPhotos() {
  input.addEventListener("change", () => { for (const file of input.files) analyse(file); input.value = ""; });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    for (const file of event.dataTransfer.files) analyse(file);
  });
}

async function analyse(file) {
  const card = document.createElement("div");
  card.className = "result";
  const canvas = document.createElement("canvas");
  const json = document.createElement("pre");
  json.textContent = `${file.name}: analysing...`;
  card.append(canvas, json);
  results.prepend(card);

  const form = new FormData();
  form.append("image", file, file.name);
  let answer;
  try {
    const response = await fetch("/api/predict", { method: "POST", body: form });
    answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
  } catch (err) {
    canvas.remove();
    json.textContent = `${file.name}: ${err.message}`;
    json.classList.add("status", "error");
    return;
  }
  json.textContent = JSON.stringify(answer, null, 2);
  try {
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(1, 1200 / bitmap.width);
    canvas.width = Math.round(bitmap.width * scale);
    canvas.height = Math.round(bitmap.height * scale);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    answer.faces.forEach((face, i) => drawFace(ctx, normalize(face, i), scale));
  } catch {
    canvas.remove();  // the server read it, this browser cannot show it (e.g. a TIFF)
  }
}
