// Following a job: the server-sent events of GET /jobs/<id>/events, read with fetch() so the API
// key can go in a header (EventSource cannot send one), or polling GET /jobs/<id> where the server
// has no event stream.

const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const POLL_MS = 300;

// Yields {id, event, data} for each event of a text/event-stream response body; `onRetry` gets
// the server's reconnection delay (its `retry:` field) in milliseconds.
export async function* readEvents(response, onRetry = () => {}) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = { id: null, event: "message", data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop(); // an unfinished line waits for the next chunk
    for (const line of lines) {
      if (line === "") {
        if (event.data.length) yield { id: event.id, event: event.event, data: event.data.join("\n") };
        event = { id: event.id, event: "message", data: [] };
        continue;
      }
      if (line.startsWith(":")) continue; // a heartbeat comment
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (name === "data") event.data.push(text);
      else if (name === "event") event.event = text;
      else if (name === "id") event.id = text;
      else if (name === "retry" && /^\d+$/.test(text)) onRetry(Number(text));
    }
  }
}

// Follows job `id` until its final event; calls onEvent(name, data) for each. `api` is the page's
// fetch with the key; `signal` stops following.
export async function followJob(api, id, onEvent, signal) {
  let lastId = null;
  let retryMs = 1000;
  while (!signal.aborted) {
    const headers = { Accept: "text/event-stream" };
    if (lastId) headers["Last-Event-ID"] = lastId;
    let response;
    try {
      response = await api(`/jobs/${encodeURIComponent(id)}/events`, { headers, signal });
    } catch (error) {
      if (signal.aborted) return;
      await sleep(retryMs, signal);
      continue;
    }
    const type = response.headers.get("Content-Type") || "";
    if (!response.ok || !type.startsWith("text/event-stream")) {
      if (response.status === 503) {
        await sleep(1000 * Number(response.headers.get("Retry-After") || 1), signal);
        continue;
      }
      return pollJob(api, id, onEvent, signal); // no event stream here: poll instead
    }
    try {
      for await (const event of readEvents(response, (ms) => { retryMs = ms; })) {
        if (event.id) lastId = event.id;
        let data;
        try {
          data = JSON.parse(event.data);
        } catch {
          continue;
        }
        onEvent(event.event, data);
        if (FINAL.has(event.event)) return;
      }
    } catch (error) {
      if (signal.aborted) return;
    }
    // The stream ended before a final event (SSE_MAX_SECONDS, a restart): resume where it was.
    await sleep(retryMs, signal);
  }
}

// The same events, from polling GET /jobs/<id>.
async function pollJob(api, id, onEvent, signal) {
  let last = "";
  while (!signal.aborted) {
    let response;
    try {
      response = await api(`/jobs/${encodeURIComponent(id)}`, { signal });
    } catch {
      if (signal.aborted) return;
      await sleep(POLL_MS * 3, signal);
      continue;
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      onEvent("failed", { error: body.error || `HTTP ${response.status}`, details: body.details || {} });
      return;
    }
    const name = body.status === "queued" ? "queued" : body.status === "running" ? "progress" : body.status;
    const key = `${name}:${body.queue_position}:${body.progress.step}`;
    if (key !== last) {
      last = key;
      onEvent(name, name === "failed" ? { error: body.error, details: {}, job: body } : body);
    }
    if (FINAL.has(name)) return;
    await sleep(POLL_MS, signal);
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}
