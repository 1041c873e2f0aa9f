// The generation page: the form, submitting to /jobs, live progress, the images and the history.
import { addToHistory, clearHistory, loadHistory, thumbnail } from "./history.js";
import { followJob } from "./jobs.js";
import { setUpImageInput } from "./mask.js";

const $ = (id) => document.getElementById(id);
const config = JSON.parse($("config").textContent);
const KEY_STORAGE = "t2i.apiKey";
const RATIOS = [["1:1", 1, 1], ["4:3", 4, 3], ["3:4", 3, 4], ["3:2", 3, 2], ["2:3", 2, 3], ["16:9", 16, 9], ["9:16", 9, 16]];
const ALIASES = { num_inference_steps: "steps", cfg_scale: "guidance_scale", n: "num_images", denoising_strength: "strength" };
const FIELDS = ["prompt", "negative_prompt", "model", "width", "height", "steps", "guidance_scale", "scheduler", "num_images"];

let models = [];
let loras = [];
let lastSeed = null;
let current = null; // {id, controller, finished} of the job being followed
const form = $("form");
const imageInput = setUpImageInput({
  file: $("init-image"), tools: $("init-tools"), preview: $("init-preview"), canvas: $("mask"),
  brush: $("brush"), clear: $("mask-clear"), remove: $("init-remove"),
});

// fetch() with the stored API key, if any.
function api(path, options = {}) {
  const key = localStorage.getItem(KEY_STORAGE);
  const headers = new Headers(options.headers || {});
  if (key) headers.set("X-API-Key", key);
  return fetch(path, { ...options, headers });
}

// ---- field errors -------------------------------------------------------------------------
function showError(field, message) {
  const slot = $(`err-${field}`) || $("err-form");
  const text = slot.id === "err-form" && field !== "form" ? `${field}: ${message}` : message;
  slot.textContent = slot.textContent ? `${slot.textContent} ${text}` : text;
  const input = $(field);
  if (input) input.setAttribute("aria-invalid", "true");
}

function clearErrors() {
  for (const slot of document.querySelectorAll(".field-error")) slot.textContent = "";
  for (const input of document.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

function showApiErrors(status, body) {
  if (status === 401) {
    openKeyPanel();
    return showError("api_key", body.error || "An API key is required.");
  }
  const details = body.details && typeof body.details === "object" ? body.details : {};
  const fields = Object.keys(details).filter((name) => messagesOf(details[name]).length);
  if (!fields.length) return showError("form", body.error || `The server answered ${status}.`);
  for (const name of fields) {
    const field = ALIASES[name] || name;
    showError(field, messagesOf(details[name]).join(" "));
  }
}

// Error details as sentences: a list of messages, or nested per item ({"0": {"weight": [...]}}).
function messagesOf(value, prefix = "") {
  if (typeof value === "string") return [prefix + value];
  if (Array.isArray(value)) return value.flatMap((item) => messagesOf(item, prefix));
  if (value && typeof value === "object") {
    return Object.entries(value).flatMap(([key, item]) => messagesOf(item, `${prefix}${/^\d+$/.test(key) ? `#${Number(key) + 1}` : key}: `));
  }
  return [];
}

// ---- models, sizes, LoRAs -------------------------------------------------------------------
function selectedModel() {
  return models.find((model) => model.name === $("model").value) || models[0];
}

function sizePresets(model) {
  const multiple = config.size_multiples[model.family] || 8;
  const { width, height } = model.defaults;
  const area = width * height;
  const presets = [];
  for (const [label, rw, rh] of RATIOS) {
    const unit = Math.sqrt(area / (rw * rh));
    const w = Math.max(config.limits.min_side, Math.round((unit * rw) / multiple) * multiple);
    const h = Math.max(config.limits.min_side, Math.round((unit * rh) / multiple) * multiple);
    if (w <= config.limits.max_width && h <= config.limits.max_height && w * h <= config.limits.max_pixels) {
      presets.push({ label: `${label} · ${w}×${h}`, w, h });
    }
  }
  return presets;
}

function onModelChange(keepValues = false) {
  const model = selectedModel();
  if (!model) return;
  const presets = sizePresets(model);
  const select = $("size-preset");
  select.replaceChildren(
    ...presets.map((p, i) => new Option(p.label, i)),
    new Option("Custom", "custom"),
  );
  if (!keepValues) {
    $("width").value = model.defaults.width;
    $("height").value = model.defaults.height;
  }
  syncPreset();
  $("steps").placeholder = Math.min(model.defaults.steps, config.limits.max_steps);
  $("guidance_scale").placeholder = model.defaults.guidance_scale;
  const multiple = config.size_multiples[model.family] || 8;
  for (const side of ["width", "height"]) $(side).step = multiple;
  $("size-hint").textContent = `${model.family.toUpperCase()} · multiples of ${multiple}`;
  renderLoras(model);
}

function syncPreset() {
  const presets = sizePresets(selectedModel());
  const index = presets.findIndex((p) => p.w === Number($("width").value) && p.h === Number($("height").value));
  $("size-preset").value = index < 0 ? "custom" : String(index);
}

function renderLoras(model) {
  const fitting = loras.filter((lora) => lora.family === model.family || lora.family === "unknown");
  $("loras-box").hidden = !fitting.length;
  $("loras").replaceChildren(...fitting.map((lora, i) => {
    const row = document.createElement("div");
    row.className = "lora row";
    row.innerHTML = `<label class="check"><input type="checkbox" id="lora-${i}"> <span></span></label>
      <label class="visually-hidden" for="lora-weight-${i}"></label>
      <input type="number" id="lora-weight-${i}" step="0.05" value="1" class="weight">`;
    row.querySelector("span").textContent = lora.name;
    row.querySelector(".visually-hidden").textContent = `Weight of ${lora.name}`;
    row.dataset.name = lora.name;
    return row;
  }));
}

function chosenLoras() {
  return [...document.querySelectorAll("#loras .lora")]
    .filter((row) => row.querySelector("input[type=checkbox]").checked)
    .map((row) => ({ name: row.dataset.name, weight: Number(row.querySelector(".weight").value || 1) }));
}

// ---- form state ------------------------------------------------------------------------------
function formState() {
  const state = {};
  for (const name of FIELDS) state[name] = $(name).value;
  state.seed = $("seed").value;
  state.random = $("seed-random").checked;
  state.previews = $("previews").checked;
  state.loras = chosenLoras();
  return state;
}

function restoreState(state) {
  if (state.model && models.some((m) => m.name === state.model)) $("model").value = state.model;
  onModelChange(true);
  for (const name of FIELDS) if (name in state && name !== "model") $(name).value = state[name] ?? "";
  $("seed").value = state.seed ?? "";
  $("seed-random").checked = !!state.random;
  $("seed").disabled = !!state.random;
  $("previews").checked = !!state.previews;
  for (const row of document.querySelectorAll("#loras .lora")) {
    const chosen = (state.loras || []).find((l) => l.name === row.dataset.name);
    row.querySelector("input[type=checkbox]").checked = !!chosen;
    if (chosen) row.querySelector(".weight").value = chosen.weight;
  }
  syncPreset();
  clearErrors();
}

// Checks the API would make, done first so the answer is instant. Returns whether all passed.
function checkLocally(state) {
  const { limits } = config;
  const model = selectedModel();
  const multiple = config.size_multiples[model.family] || 8;
  if (!state.prompt.trim()) showError("prompt", "Must not be empty.");
  if (state.prompt.length > config.max_prompt_length) showError("prompt", `At most ${config.max_prompt_length} characters.`);
  const sides = { width: [limits.min_side, limits.max_width], height: [limits.min_side, limits.max_height] };
  for (const [side, [low, high]] of Object.entries(sides)) {
    const value = Number(state[side]);
    if (state[side] === "") continue;
    if (!Number.isInteger(value) || value < low || value > high) showError(side, `Must be between ${low} and ${high}.`);
    else if (value % multiple) showError(side, `Must be a multiple of ${multiple}.`);
  }
  const w = Number(state.width), h = Number(state.height);
  if (w * h > limits.max_pixels && !$("err-width").textContent && !$("err-height").textContent) {
    const message = `${w}x${h} is ${w * h} pixels, more than the limit of ${limits.max_pixels}.`;
    for (const side of ["width", "height"]) showError(side, message);
  }
  const ranges = { steps: [1, limits.max_steps], num_images: [1, limits.max_images], guidance_scale: [0, 30] };
  for (const [name, [low, high]] of Object.entries(ranges)) {
    if (state[name] === "") continue;
    const value = Number(state[name]);
    if (Number.isNaN(value) || value < low || value > high) showError(name, `Must be between ${low} and ${high}.`);
  }
  if (!state.random && state.seed !== "" && !(Number(state.seed) >= 0)) showError("seed", "Must be a whole number, 0 or more.");
  return !document.querySelector("[aria-invalid]") && !$("err-form").textContent;
}

function requestBody(state) {
  const body = { prompt: state.prompt };
  if (state.negative_prompt.trim()) body.negative_prompt = state.negative_prompt;
  body.model = state.model;
  for (const name of ["width", "height", "steps", "num_images"]) if (state[name] !== "") body[name] = Number(state[name]);
  if (state.guidance_scale !== "") body.guidance_scale = Number(state.guidance_scale);
  if (state.scheduler) body.scheduler = state.scheduler;
  if (!state.random && state.seed !== "") body.seed = Number(state.seed);
  if (state.loras.length) body.loras = state.loras;
  if (state.previews) {
    const steps = Number(state.steps || $("steps").placeholder || 10);
    body.preview_every = Math.max(1, Math.round(steps / 8)); // about eight previews a run
  }
  return body;
}

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

// ---- results ---------------------------------------------------------------------------------
async function showResults(job, state) {
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

function useSeed(seed) {
  $("seed-random").checked = false;
  $("seed").disabled = false;
  $("seed").value = seed;
  $("seed").focus();
}

// ---- history ---------------------------------------------------------------------------------
function renderHistory() {
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

// ---- API key -----------------------------------------------------------------------------------
function openKeyPanel() {
  $("key-panel").hidden = false;
  $("key-toggle").setAttribute("aria-expanded", "true");
  $("api-key").focus();
}

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

// The models and LoRAs; false (and the reason shown) when the server refused.
async function loadServerLists() {
  const [modelsResponse, lorasResponse] = await Promise.all([api("/models"), api("/loras")]);
  if (!modelsResponse.ok) {
    showApiErrors(modelsResponse.status, await modelsResponse.json().catch(() => ({})));
    return false;
  }
  const listing = await modelsResponse.json();
  models = listing.models.filter((m) => m.exists);
  loras = lorasResponse.ok ? (await lorasResponse.json()).loras : [];
  const previous = $("model").value;
  $("model").replaceChildren(...models.map((m) => new Option(m.name, m.name)));
  $("model").value = models.some((m) => m.name === previous) ? previous : listing.default;
  if (!$("model").value && models.length) $("model").value = models[0].name;
  onModelChange(!!previous);
  return true;
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
  $("seed-reuse").addEventListener("click", () => lastSeed !== null && useSeed(lastSeed));
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
