// Inside the network: the heatmap of the pixels that decided, and every layer's activations for the
// image just answered (POST /api/explain). A conv layer is one picture of its maps in a grid; a dense
// layer is a bar per unit. Hovering a map or a bar says its layer, its channel or unit, and its values.
"use strict";

const methodChoice = document.getElementById("method");
const layersBox = document.getElementById("layers");
const tip = document.getElementById("tip");
const LEGENDS = {
  "saliency": "bright: the pixels whose change would move the score most",
  "integrated-gradients": "red: pixels that added to the answer's score, blue: pixels that took from it",
  "occlusion": "red: covering this spot lowers the answer's score, blue: raises it",
  "gradcam": "bright: where the last conv block looked",
};

function setMethods(methods) { // again after the Train tab brings a new model: keep the choice if it can
  const chosen = methodChoice.value || "integrated-gradients";
  methodChoice.replaceChildren(...methods.map((name) => new Option(name, name)));
  if (methods.includes(chosen)) methodChoice.value = chosen;
}

function insideUrl() {
  return `/api/explain?method=${encodeURIComponent(methodChoice.value)}`;
}

function showInside(reply) {
  const heatmap = document.getElementById("heatmap");
  const shown = Boolean(reply && reply.heatmap);
  heatmap.hidden = !shown;
  document.getElementById("heatmap-empty").hidden = shown;
  document.getElementById("heat-legend").textContent = shown ? LEGENDS[reply.method] || "" :
    (reply && reply.number !== undefined ? "Number mode reads several digits: turn it off to look inside." : "");
  layersBox.replaceChildren();
  if (!shown) return;
  heatmap.src = `data:image/png;base64,${reply.heatmap}`;
  for (const layer of reply.layers) layersBox.append(layer.kind === "conv" ? convFigure(layer) : denseFigure(layer));
  drawDenseLayers();
}

// Bars are drawn at the canvas's shown size, once it is on the page, so the class names stay
// readable on a phone as on a desktop.
function drawDenseLayers() {
  for (const canvas of layersBox.querySelectorAll("canvas")) {
    canvas.width = canvas.clientWidth || 900;
    canvas.height = 90;
    drawBars(canvas, canvas.layer);
  }
}

window.addEventListener("resize", () => requestAnimationFrame(drawDenseLayers));

function range(pair) {
  return `${pair[0].toFixed(2)} to ${pair[1].toFixed(2)}`;
}

function figure(caption) {
  const box = document.createElement("figure");
  box.className = "layer";
  const text = document.createElement("figcaption");
  text.textContent = caption;
  box.append(text);
  return box;
}

function convFigure(layer) {
  const [count, height, width] = layer.shape;
  const more = layer.shown < count ? `, the first ${layer.shown} shown` : "";
  const box = figure(`${layer.name}: ${count} maps of ${height}x${width}${more}; values ${range(layer.range)}`);
  const image = document.createElement("img");
  image.alt = `the ${count} maps of ${layer.name}`;
  image.dataset.layer = layer.name;
  image.onload = () => { image.style.width = `${Math.min(3, 900 / image.naturalWidth) * image.naturalWidth}px`; };
  image.src = `data:image/png;base64,${layer.image}`;
  const showChannel = (event) => {
    const box = image.getBoundingClientRect();
    const x = (event.clientX - box.left) * image.naturalWidth / box.width;
    const y = (event.clientY - box.top) * image.naturalHeight / box.height;
    const column = Math.floor(x / (width + layer.gap));
    const row = Math.floor(y / (height + layer.gap));
    const channel = row * layer.columns + column;
    const inside = x - column * (width + layer.gap) < width && y - row * (height + layer.gap) < height;
    if (!inside || column >= layer.columns || channel >= layer.shown) return hideTip();
    showTip(event, `${layer.name}, channel ${channel + 1} of ${count}: ${range(layer.channels[channel])}`);
  };
  // pointer events: a mouse moving over it, and a finger touching it (a phone has no hover)
  image.addEventListener("pointermove", showChannel);
  image.addEventListener("pointerdown", showChannel);
  image.addEventListener("pointerleave", hideTip);
  box.append(image);
  return box;
}

function denseFigure(layer) {
  const what = layer.classes ? "a score per class" : `${layer.units} units`;
  const box = figure(`${layer.name}: ${what}; values ${range(layer.range)}`);
  const canvas = document.createElement("canvas");
  canvas.dataset.layer = layer.name;
  canvas.layer = layer; // drawn by drawDenseLayers once the canvas has its size
  const showUnit = (event) => {
    const box = canvas.getBoundingClientRect();
    const unit = Math.floor((event.clientX - box.left) / box.width * layer.units);
    if (unit < 0 || unit >= layer.units) return hideTip();
    const name = layer.classes ? `class ${layer.classes[unit]}` : `unit ${unit + 1} of ${layer.units}`;
    showTip(event, `${layer.name}, ${name}: ${layer.values[unit].toFixed(3)}`);
  };
  canvas.addEventListener("pointermove", showUnit);
  canvas.addEventListener("pointerdown", showUnit);
  canvas.addEventListener("pointerleave", hideTip);
  box.append(canvas);
  return box;
}

function drawBars(canvas, layer) {
  const context = canvas.getContext("2d");
  const [low, high] = [Math.min(0, layer.range[0]), Math.max(0, layer.range[1])];
  const labels = layer.classes ? 16 : 0; // room under the bars for the class names
  const scale = (canvas.height - labels - 2) / (high - low || 1);
  const zero = 1 + high * scale;
  const step = canvas.width / layer.units;
  const best = layer.values.indexOf(Math.max(...layer.values));
  context.font = "12px system-ui, sans-serif";
  context.textAlign = "center";
  layer.values.forEach((value, i) => {
    context.fillStyle = layer.classes && i === best ? "#f39c12" : value < 0 ? "#c0392b" : "#2c7fb8";
    context.fillRect(i * step + step * 0.1, Math.min(zero, zero - value * scale), Math.max(1, step * 0.8),
                     Math.abs(value * scale));
    if (layer.classes) {
      context.fillStyle = "#1b1f24";
      context.fillText(layer.classes[i], (i + 0.5) * step, canvas.height - 3);
    }
  });
  context.fillStyle = "#1b1f24";
  context.fillRect(0, zero, canvas.width, 1);
}

function showTip(event, text) {
  tip.textContent = text;
  tip.hidden = false;
  tip.style.left = `${Math.min(event.clientX + 12, window.innerWidth - tip.offsetWidth - 4)}px`;
  tip.style.top = `${event.clientY + 14}px`;
}

function hideTip() {
  tip.hidden = true;
}
