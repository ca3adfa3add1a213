// The page's entry point: the tabs, the server's health line, and each tab's module.
// Plain ES modules, no build step, nothing loaded from elsewhere.

import { startCamera } from "./live.js";
import { setupPhotos } from "./photos.js";
import { setupVideo } from "./video.js";
import { setupInside } from "./inside.js";

let current = "live";
for (const button of document.querySelectorAll("nav button")) {
  button.addEventListener("click", () => {
    current = button.dataset.tab;
    for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b === button);
    for (const s of document.querySelectorAll(".tab")) s.classList.toggle("active", s.id === current);
  });
}

async function health() {
  const line = document.getElementById("server");
  try {
    const h = await (await fetch("/api/health")).json();
    line.textContent = `server: model ${h.model} on nnlite's ${h.backend} backend`;
    line.classList.remove("error");
  } catch {
    line.textContent = "the server does not answer (stopped, or the network is down)";
    line.classList.add("error");
  }
}

health();
setInterval(health, 10000);
setupPhotos();
setupVideo();
setupInside(() => current === "inside");
startCamera();
