// Inside the network: the newest live frame (or a picked photo) goes to POST /api/explain,
// at most every 400 ms and one request at a time; the answer is `emotion explain`'s figure
// as images: the preprocessing steps, the conv layers' feature maps, saliency and Grad-CAM.

import { barsHtml } from "./draw.js";
import * as live from "./live.js";

const status = document.getElementById("inside-status");
const view = document.getElementById("inside-view");
const input = document.getElementById("inside-input");
const back = document.getElementById("inside-live");
const PERIOD_MS = 400;
let busy = false, photo = null;

function figure(png, caption) {
  const f = document.createElement("figure");
  const img = document.createElement("img");
  img.src = `data:image/png;base64,${png}`;
  const c = document.createElement("figcaption");
  c.textContent = caption;
  f.append(img, c);
  return f;
}

export function setupInside(isVisible) {
  // A picked photo holds the view (the live frames would replace it within 400 ms) until
  // "back to the live camera".
  input.addEventListener("change", () => {
    photo = input.files[0] || null;
    back.hidden = !photo;
    explain(photo);
  });
  back.addEventListener("click", () => { photo = null; input.value = ""; back.hidden = true; });
  setInterval(() => {
    if (!isVisible() || photo) return;
    if (live.cameraProblem) {  // nothing new will come: say so (unless a view is up)
      if (view.hidden) {
        status.textContent = `No live camera (${live.cameraProblem.replace(/[.]$/, "")}): pick a photo instead.`;
        status.classList.add("error");
      }
    } else if (live.latestFrame) explain(live.latestFrame);
  }, PERIOD_MS);
}

async function explain(blob) {
  if (busy || !blob) return;
  busy = true;
  try {
    const response = await fetch("/api/explain", { method: "POST", body: blob });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    show(answer);
  } catch (err) {
    status.textContent = `could not explain this frame: ${err.message}`;
    status.classList.add("error");
  } finally {
    busy = false;
  }
}

function show(a) {
  status.classList.remove("error");
  status.textContent = (a.box ? `the ${a.faces_found > 1 ? `largest of ${a.faces_found} faces` : "face found"}` :
    "no face found: the centre of the picture is used") + `: ${a.emotion} (${a.probabilities[a.emotion].toFixed(2)}), model ${a.model}`;
  document.getElementById("inside-steps").replaceChildren(...a.steps.map((s, i) => figure(s.png, `${i + 1}. ${s.name}`)));
  document.getElementById("inside-maps").replaceChildren(...a.conv_maps.map((m) => figure(m.png, m.title)));
  document.getElementById("inside-why").replaceChildren(
    figure(a.saliency, `saliency for ${a.explained}`), figure(a.grad_cam, `Grad-CAM for ${a.explained}`));
  barsHtml(document.getElementById("inside-bars"), a.probabilities);
  view.hidden = false;
}
