// What every part of the page shares: its settings, the API with the key, and field errors.

export const $ = (id) => document.getElementById(id);
export const config = JSON.parse($("config").textContent);
export const KEY_STORAGE = "t2i.apiKey";
// The API's names for a field -> the page's control.
const ALIASES = { num_inference_steps: "steps", cfg_scale: "guidance_scale", n: "num_images", denoising_strength: "strength" };

// fetch() with the stored API key, if any.
export function api(path, options = {}) {
  const key = localStorage.getItem(KEY_STORAGE);
  const headers = new Headers(options.headers || {});
  if (key) headers.set("X-API-Key", key);
  return fetch(path, { ...options, headers });
}

// ---- field errors -------------------------------------------------------------------------
export function showError(field, message) {
  const slot = $(`err-${field}`) || $("err-form");
  const text = slot.id === "err-form" && field !== "form" ? `${field}: ${message}` : message;
  slot.textContent = slot.textContent ? `${slot.textContent} ${text}` : text;
  const input = $(field);
  if (input) input.setAttribute("aria-invalid", "true");
}

export function clearErrors() {
  for (const slot of document.querySelectorAll(".field-error")) slot.textContent = "";
  for (const input of document.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

export function showApiErrors(status, body) {
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

export function openKeyPanel() {
  $("key-panel").hidden = false;
  $("key-toggle").setAttribute("aria-expanded", "true");
  $("api-key").focus();
}
