// This browser's recent generations, in localStorage only: the server keeps no history.

const KEY = "t2i.history";
const MAX_ENTRIES = 24;
const THUMB_SIDE = 96;

export function loadHistory() {
  try {
    const entries = JSON.parse(localStorage.getItem(KEY) || "[]");
    return Array.isArray(entries) ? entries : [];
  } catch {
    return [];
  }
}

export function clearHistory() {
  localStorage.removeItem(KEY);
}

// Adds an entry ({form, seeds, model, thumb, at}) first; the oldest drop out.
export function addToHistory(entry) {
  const entries = [entry, ...loadHistory()].slice(0, MAX_ENTRIES);
  for (let keep = entries.length; keep > 0; keep--) {
    try {
      localStorage.setItem(KEY, JSON.stringify(entries.slice(0, keep)));
      return;
    } catch {
      // Storage full: keep fewer entries.
    }
  }
}

// A small JPEG data URL of `image` (a loaded <img>), to show in the history list.
export function thumbnail(image) {
  const scale = THUMB_SIDE / Math.max(image.naturalWidth, image.naturalHeight, 1);
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(image.naturalWidth * scale));
  canvas.height = Math.max(1, Math.round(image.naturalHeight * scale));
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = image.naturalWidth > THUMB_SIDE;
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  return canvas.toDataURL("image/jpeg", 0.8);
}
