// The image to start from (img2img) and a simple brush that paints the inpainting mask over it.

export function setUpImageInput(elements) {
  const { file, tools, preview, canvas, brush, clear, remove } = elements;
  const ctx = canvas.getContext("2d");
  let painted = false;
  let drawing = false;
  let last = null;

  file.addEventListener("change", () => {
    const chosen = file.files[0];
    if (!chosen) return reset();
    const url = URL.createObjectURL(chosen);
    preview.onload = () => {
      canvas.width = preview.naturalWidth;
      canvas.height = preview.naturalHeight;
      clearMask();
      tools.hidden = false;
    };
    preview.src = url;
  });

  function point(event) {
    const box = canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) / box.width) * canvas.width,
      y: ((event.clientY - box.top) / box.height) * canvas.height,
    };
  }

  function stroke(to) {
    const scale = canvas.width / canvas.getBoundingClientRect().width;
    ctx.strokeStyle = "#ff2d6f";
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = Number(brush.value) * scale;
    ctx.beginPath();
    ctx.moveTo((last || to).x, (last || to).y);
    ctx.lineTo(to.x + 0.01, to.y);
    ctx.stroke();
    last = to;
    painted = true;
  }

  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    last = null;
    canvas.setPointerCapture(event.pointerId);
    stroke(point(event));
    event.preventDefault();
  });
  canvas.addEventListener("pointermove", (event) => drawing && stroke(point(event)));
  for (const name of ["pointerup", "pointercancel"]) {
    canvas.addEventListener(name, () => { drawing = false; last = null; });
  }

  function clearMask() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    painted = false;
  }

  function reset() {
    file.value = "";
    preview.removeAttribute("src");
    tools.hidden = true;
    clearMask();
  }

  clear.addEventListener("click", clearMask);
  remove.addEventListener("click", reset);

  return {
    // The chosen file, or null: the job is then a plain generation.
    image: () => (file.files[0] && !tools.hidden ? file.files[0] : null),
    // The mask as a PNG (white: repaint, black: keep), or null when nothing was painted.
    mask: () => {
      if (!painted) return Promise.resolve(null);
      const out = document.createElement("canvas");
      out.width = canvas.width;
      out.height = canvas.height;
      const o = out.getContext("2d");
      o.drawImage(canvas, 0, 0);
      o.globalCompositeOperation = "source-in";
      o.fillStyle = "#fff";
      o.fillRect(0, 0, out.width, out.height);
      o.globalCompositeOperation = "destination-over";
      o.fillStyle = "#000";
      o.fillRect(0, 0, out.width, out.height);
      return new Promise((resolve) => out.toBlob(resolve, "image/png"));
    },
  };
}
