// The form: models and their sizes, LoRAs, the seed, checks made before submitting, the body
// sent, and putting back a previous generation's parameters.
import { $, api, clearErrors, config, showApiErrors, showError } from "./common.js";

const RATIOS = [["1:1", 1, 1], ["4:3", 4, 3], ["3:4", 3, 4], ["3:2", 3, 2], ["2:3", 2, 3], ["16:9", 16, 9], ["9:16", 9, 16]];
const FIELDS = ["prompt", "negative_prompt", "model", "width", "height", "steps", "guidance_scale", "scheduler", "num_images"];

let models = [];
let loras = [];

// ---- models, sizes, LoRAs -------------------------------------------------------------------
export function selectedModel() {
  return models.find((model) => model.name === $("model").value) || models[0];
}

export function sizePresets(model) {
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

export function onModelChange(keepValues = false) {
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

export function syncPreset() {
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
export function formState() {
  const state = {};
  for (const name of FIELDS) state[name] = $(name).value;
  state.seed = $("seed").value;
  state.random = $("seed-random").checked;
  state.previews = $("previews").checked;
  state.loras = chosenLoras();
  return state;
}

export function restoreState(state) {
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
export function checkLocally(state) {
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

export function requestBody(state) {
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

export function useSeed(seed) {
  $("seed-random").checked = false;
  $("seed").disabled = false;
  $("seed").value = seed;
  $("seed").focus();
}

// The models and LoRAs; false (and the reason shown) when the server refused.
export async function loadServerLists() {
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
