// The images of a finished job, each with its seed, download link and parameters; and the
// history of this browser's generations.
import { $, api } from "./common.js";
import { restoreState, useSeed } from "./form.js";
import { addToHistory, loadHistory, thumbnail } from "./history.js";

let lastSeed = null;

// The first seed of the latest images, or null.
export function latestSeed() {
  return lastSeed;
}

// ---- results ---------------------------------------------------------------------------------
export async function showResults(job, state) {
  const seconds = job.generation_seconds ? ` in ${job.generation_seconds.toFixed(1)} s` : "";
  $("status").textContent = `Done${seconds}.`;
  const cards = job.images.map((url, i) => resultCard(url, job, i));
  $("results").replaceChildren(...cards.map((c) => c.element));
  lastSeed = job.seeds[0];
  $("seed-reuse").disabled = false;
  const first = await cards[0]?.loaded;
  if (first) addToHistory({ at: Date.now(), form: state, seeds: job.seeds, model: job.model, thumb: thumbnail(first) });
  renderHistory();
}

function resultCard(url, job, index) {
  const seed = job.seeds[index];
  const element = document.createElement("figure");
  element.className = "result";
  const image = document.createElement("img");
  image.alt = `Generated image ${index + 1} of ${job.images.length}: ${job.parameters.prompt}`;
  const caption = document.createElement("figcaption");
  caption.innerHTML = `<div class="meta"><span class="seed">Seed <b></b></span>
    <a class="download" download>Download</a></div>
    <div class="meta"><button type="button" class="ghost small reuse">Reuse this seed</button>
    <details><summary>Parameters</summary><dl></dl></details></div>`;
  caption.querySelector(".seed b").textContent = seed;
  caption.querySelector(".reuse").addEventListener("click", () => useSeed(seed));
  const list = caption.querySelector("dl");
  for (const [name, value] of Object.entries(job.parameters)) {
    if (value === null || value === undefined || (Array.isArray(value) && !value.length)) continue;
    const term = document.createElement("dt");
    term.textContent = name;
    const detail = document.createElement("dd");
    detail.textContent = typeof value === "object" ? JSON.stringify(value) : String(value);
    list.append(term, detail);
  }
  element.append(image, caption);
  // Fetched with the key (an <img src> cannot send one), shown from a blob URL.
  const loaded = api(url).then(async (response) => {
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const blob = await response.blob();
    const objectUrl = URL.createObjectURL(blob);
    const link = caption.querySelector(".download");
    link.href = objectUrl;
    link.download = `${job.model}-${seed}.${(blob.type.split("/")[1] || "png").replace("jpeg", "jpg")}`;
    image.src = objectUrl;
    await image.decode();
    return image;
  }).catch((error) => {
    caption.prepend(Object.assign(document.createElement("p"), { className: "field-error", textContent: `Could not load the image: ${error.message}` }));
    return null;
  });
  return { element, loaded };
}

// ---- history ---------------------------------------------------------------------------------
export function renderHistory() {
  const entries = loadHistory();
  $("history").replaceChildren(...entries.map((entry) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "history-item";
    const when = new Date(entry.at).toLocaleString();
    button.setAttribute("aria-label", `Restore: ${entry.form.prompt} (seed ${entry.seeds[0]}, ${when})`);
    button.innerHTML = `<img alt=""><span class="h-prompt"></span><span class="h-meta"></span>`;
    button.querySelector("img").src = entry.thumb;
    button.querySelector(".h-prompt").textContent = entry.form.prompt;
    button.querySelector(".h-meta").textContent = `${entry.model} · seed ${entry.seeds[0]}`;
    button.addEventListener("click", () => {
      restoreState({ ...entry.form, random: false, seed: String(entry.seeds[0]) });
      $("status").textContent = "Restored the parameters from history.";
      $("prompt").focus();
    });
    item.append(button);
    return item;
  }));
  $("history-clear").hidden = !entries.length;
}

