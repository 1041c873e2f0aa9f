// The generation page: submitting to /jobs, following the job, the API key, and the wiring.
import { $, api, clearErrors, config, KEY_STORAGE, showApiErrors, showError } from "./common.js";
import {
  checkLocally, formState, loadServerLists, onModelChange, requestBody, selectedModel, sizePresets, syncPreset, useSeed,
} from "./form.js";
import { clearHistory } from "./history.js";
import { followJob } from "./jobs.js";
import { setUpImageInput } from "./mask.js";
import { latestSeed, renderHistory, showResults } from "./results.js";

let current = null; // {id, controller, finished, state} of the job being followed
const form = $("form");
const imageInput = setUpImageInput({
  file: $("init-image"), tools: $("init-tools"), preview: $("init-preview"), canvas: $("mask"),
  brush: $("brush"), clear: $("mask-clear"), remove: $("init-remove"),
});

// ---- submitting and following ------------------------------------------------------------------
async function submit(event) {
  event?.preventDefault();
  if (current && !current.finished) return;
  clearErrors();
  const state = formState();
  if (!checkLocally(state)) return;
  const body = requestBody(state);
  let response;
  try {
    const image = imageInput.image();
    if (image) {
      const data = new FormData();
      for (const [name, value] of Object.entries(body)) data.append(name, typeof value === "string" ? value : JSON.stringify(value));
      data.append("image", image);
      data.append("strength", $("strength").value);
      const mask = await imageInput.mask();
      if (mask) data.append("mask", mask, "mask.png");
      response = await api("/jobs/edit", { method: "POST", body: data });
    } else {
      response = await api("/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    }
  } catch (error) {
    return showError("form", `The server could not be reached (${error.message}).`);
  }
  const answer = await response.json().catch(() => ({}));
  if (response.status !== 202) return showApiErrors(response.status, answer);
  start(answer, state);
}

function start(job, state) {
  const controller = new AbortController();
  current = { id: job.id, controller, finished: false, state };
  $("status").dataset.job = job.id;
  $("generate").disabled = true;
  $("cancel").hidden = false;
  $("preview").hidden = true;
  $("results").replaceChildren();
  const progress = $("progress");
  progress.hidden = false;
  progress.value = 0;
  showJob("queued", job);
  // On a phone the results are below the form: bring the progress into view.
  if (matchMedia("(max-width: 800px)").matches) $("status").scrollIntoView({ behavior: "smooth" });
  followJob(api, job.id, (name, data) => onEvent(current, name, data), controller.signal)
    .catch((error) => finish(current, () => showError("form", `Lost the job: ${error.message}`)));
}

function showJob(name, job) {
  const status = $("status");
  const { step, total } = job.progress || { step: 0, total: 0 };
  if (name === "queued") {
    const ahead = job.queue_position;
    status.textContent = ahead ? `Queued: ${ahead} ${ahead === 1 ? "job" : "jobs"} ahead.` : "Queued: next in line.";
    $("progress").removeAttribute("value"); // an indeterminate bar while waiting
  } else {
    status.textContent = `Generating: step ${step} of ${total}.`;
    $("progress").value = total ? step / total : 0;
  }
}

function onEvent(job, name, data) {
  if (job !== current || job.finished) return;
  if (name === "queued" || name === "started" || name === "progress") return showJob(name, data);
  if (name === "preview") {
    const preview = $("preview");
    preview.src = data.image;
    preview.hidden = false;
    $("progress").value = data.total_steps ? data.step / data.total_steps : 0;
    return;
  }
  if (name === "succeeded") return finish(job, () => showResults(data, job.state));
  if (name === "cancelled") return finish(job, () => { $("status").textContent = "Cancelled."; });
  if (name === "failed") {
    return finish(job, () => {
      $("status").textContent = "Failed.";
      showApiErrors(400, { error: data.error || data.job?.error || "The job failed.", details: data.details });
    });
  }
}

function finish(job, then) {
  if (!job || job.finished) return;
  job.finished = true;
  job.controller.abort();
  $("generate").disabled = false;
  $("cancel").hidden = true;
  $("progress").hidden = true;
  $("preview").hidden = true;
  then();
}

async function cancel() {
  const job = current;
  if (!job || job.finished) return;
  $("status").textContent = "Cancelling…";
  const response = await api(`/jobs/${encodeURIComponent(job.id)}`, { method: "DELETE" }).catch(() => null);
  if (response && response.ok) {
    const body = await response.json();
    if (body.status === "cancelled") finish(job, () => { $("status").textContent = "Cancelled."; });
  }
}

// ---- API key -----------------------------------------------------------------------------------
function setUpKey() {
  $("api-key").value = localStorage.getItem(KEY_STORAGE) || "";
  $("key-toggle").addEventListener("click", () => {
    const open = $("key-panel").hidden;
    $("key-panel").hidden = !open;
    $("key-toggle").setAttribute("aria-expanded", String(open));
    if (open) $("api-key").focus();
  });
  $("key-panel").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
    $("err-api_key").textContent = "";
    if (await loadServerLists()) $("err-api_key").textContent = "Saved.";
  });
  $("key-clear").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORAGE);
    $("api-key").value = "";
    $("err-api_key").textContent = "Forgotten.";
  });
}

// ---- wiring ----------------------------------------------------------------------------------
function init() {
  $("scheduler").append(...config.schedulers.map((name) => new Option(name, name)));
  $("num_images").max = config.limits.max_images;
  $("steps").max = config.limits.max_steps;
  form.addEventListener("submit", submit);
  $("cancel").addEventListener("click", cancel);
  $("model").addEventListener("change", () => onModelChange());
  $("size-preset").addEventListener("change", () => {
    const preset = sizePresets(selectedModel())[Number($("size-preset").value)];
    if (preset) { $("width").value = preset.w; $("height").value = preset.h; }
    for (const side of ["width", "height"]) { $(`err-${side}`).textContent = ""; $(side).removeAttribute("aria-invalid"); }
  });
  for (const side of ["width", "height"]) $(side).addEventListener("input", syncPreset);
  $("seed-random").addEventListener("change", () => { $("seed").disabled = $("seed-random").checked; });
  $("seed-reuse").addEventListener("click", () => latestSeed() !== null && useSeed(latestSeed()));
  $("strength").addEventListener("input", () => { $("strength-out").value = $("strength").value; });
  $("history-clear").addEventListener("click", () => { clearHistory(); renderHistory(); });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  setUpKey();
  renderHistory();
  loadServerLists().finally(() => document.body.classList.add("ready"));
}

init();
