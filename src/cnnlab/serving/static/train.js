// The Train tab: start a training (POST /api/train), watch it through server-sent events
// (/api/train/events: the curves' points several times a second, each epoch's line and first-layer
// filters), stop it (POST /api/train/stop). When it is done, the page serves the new model.
// Starting and stopping need the server's token: cnnlab serve prints the page's URL with
// ?token=..., and the page keeps it for this tab (sessionStorage) and takes it out of the address
// bar, so it is not left in the history or shown on screen.
"use strict";

const TOKEN_KEY = "cnnlab-token";
const ownerToken = (() => {
  const url = new URL(window.location.href);
  const given = url.searchParams.get("token");
  if (given !== null) {
    sessionStorage.setItem(TOKEN_KEY, given);
    url.searchParams.delete("token");
    history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  }
  return sessionStorage.getItem(TOKEN_KEY);
})();

// A request that changes the server: JSON, with the token (the server refuses anything else).
function ownerPost(path, body) {
  const headers = { "content-type": "application/json" };
  if (ownerToken) headers.authorization = `Bearer ${ownerToken}`;
  return fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
}

const trainForm = document.getElementById("train-form");
const trainStatus = document.getElementById("t-status");
const startButton = document.getElementById("t-start");
const stopButton = document.getElementById("t-stop");
const curves = document.getElementById("t-curves");
let stream = null;
let points = []; // {epoch, loss, accuracy, val_loss, val_accuracy}
let drawPending = false; // one redraw a frame, however many points arrive

for (const button of document.querySelectorAll(".tabs button")) {
  button.addEventListener("click", () => showTab(button.dataset.tab));
}

function showTab(name) {
  for (const button of document.querySelectorAll(".tabs button")) {
    button.setAttribute("aria-selected", String(button.dataset.tab === name));
  }
  document.getElementById("tab-use").hidden = name !== "use";
  document.getElementById("tab-train").hidden = name !== "train";
  if (name === "train") drawCurves(); // a hidden canvas has no size to draw at
}

function say(text, isError = false) {
  trainStatus.textContent = text;
  trainStatus.classList.toggle("error", isError);
}

async function loadTrainOptions() {
  const answer = await fetch("/api/train/options");
  if (!answer.ok) return; // this server has no Train tab (cnnlab serve --no-train): app.js hides it
  const options = await answer.json();
  if (!ownerToken) {
    say("Starting a training needs the server's token: open the URL that cnnlab serve printed (it ends in ?token=\u2026).");
  }
  const presets = document.getElementById("t-preset");
  const about = document.getElementById("t-preset-about");
  for (const preset of options.presets) presets.add(new Option(preset.name, preset.name));
  const describe = () => { about.textContent = options.presets.find((p) => p.name === presets.value).description; };
  presets.addEventListener("change", describe);
  describe();
  const models = document.getElementById("t-models");
  for (const model of options.models) models.append(new Option(model.description, model.name));
  if (options.current) watch(options.current); // a training started earlier (or from another page)
}

trainForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const number = (id) => (document.getElementById(id).value ? Number(document.getElementById(id).value) : null);
  const body = { preset: document.getElementById("t-preset").value, model: document.getElementById("t-model").value || null,
                 epochs: number("t-epochs"), limit: number("t-limit") };
  const response = await ownerPost("/api/train", body);
  const reply = await response.json();
  if (!response.ok) return say(reply.error || `the server answered ${response.status}`, true);
  watch(reply);
});

stopButton.addEventListener("click", async () => {
  stopButton.disabled = true; // a second stop would not wait for the step under way
  const response = await ownerPost("/api/train/stop", {});
  if (!response.ok) say((await response.json()).error, true);
  else say("Stopping after the step under way\u2026");
});

function watch(job) {
  if (stream) stream.close();
  points = [];
  document.getElementById("t-lines").textContent = "";
  document.getElementById("t-filters-box").hidden = true;
  drawCurves();
  running(job.state === "running");
  say(job.state === "running" ? `Training into ${job.run}\u2026` : "");
  stream = new EventSource("/api/train/events");
  // The stream starts from the run's first event, also when the browser reconnects after a drop:
  // start the picture afresh each time, so nothing is drawn twice.
  stream.onopen = () => { points = []; document.getElementById("t-lines").textContent = ""; };
  stream.onmessage = (message) => handle(JSON.parse(message.data));
  stream.onerror = () => { if (stream && stream.readyState === EventSource.CLOSED) say("The stream closed.", true); };
}

function running(yes) {
  startButton.disabled = yes;
  stopButton.disabled = !yes;
}

function handle(event) {
  if (event.type === "line") {
    const lines = document.getElementById("t-lines");
    lines.textContent += `${event.text}\n`;
    lines.scrollTop = lines.scrollHeight;
  } else if (event.type === "point") {
    points.push(event);
    if (!drawPending) {
      drawPending = true;
      requestAnimationFrame(() => { drawPending = false; drawCurves(); });
    }
  } else if (event.type === "epoch" && event.filters) {
    document.getElementById("t-filters").src = `data:image/png;base64,${event.filters}`;
    document.getElementById("t-filters-caption").textContent = `First-layer filters after epoch ${event.row.epoch}`;
    document.getElementById("t-filters-box").hidden = false;
  } else if (["done", "stopped", "failed"].includes(event.type)) {
    stream.close();
    stream = null;
    running(false);
    if (event.type === "done") {
      say(`Done: ${(100 * event.test_accuracy).toFixed(2)}% test accuracy. The Draw tab now uses this model (${event.run}).`);
      loadModel();
    } else if (event.type === "stopped") {
      say(event.checkpoint ? `Stopped after ${event.epochs_done} finished epoch(s); the checkpoint is kept: ` +
          `cnnlab train --resume ${event.run}` : "Stopped before anything could be saved.");
    } else {
      say(`The training failed: ${event.error}`, true);
    }
  }
}

// Two charts on one canvas, loss and accuracy against epochs, training and validation: side by side,
// or one above the other on a narrow screen. The canvas is drawn at its shown size, so text stays sharp.
function drawCurves() {
  const shown = curves.clientWidth || 900;
  const stacked = shown < 600;
  curves.width = shown;
  curves.height = stacked ? 440 : 260;
  const context = curves.getContext("2d");
  const [width, height] = stacked ? [shown, 220] : [shown / 2, 260];
  chart(context, [0, 0, width, height], "loss", [["loss", "#2f6fdf"], ["val_loss", "#e67e22"]]);
  chart(context, stacked ? [0, height, width, height] : [width, 0, width, height], "accuracy",
        [["accuracy", "#2f6fdf"], ["val_accuracy", "#e67e22"]]);
}

function chart(context, [left, top, width, height], title, lines) {
  const pad = { left: 44, right: 12, top: 22, bottom: 26 };
  const values = points.flatMap((p) => lines.map(([key]) => p[key]).filter((v) => v !== undefined));
  const lastEpoch = Math.max(1, ...points.map((p) => p.epoch));
  const low = values.length ? Math.min(...values) : 0;
  const high = values.length ? Math.max(...values) : 1;
  const x = (epoch) => left + pad.left + (epoch / lastEpoch) * (width - pad.left - pad.right);
  const y = (v) => top + pad.top + (1 - (v - low) / (high - low || 1)) * (height - pad.top - pad.bottom);
  context.fillStyle = "#1b1f24";
  context.font = "13px system-ui, sans-serif";
  context.fillText(`${title} (blue: training, orange: validation)`, left + pad.left, top + 15);
  context.fillStyle = "#5b6470";
  context.fillText(high.toFixed(3), left + 2, top + pad.top + 4);
  context.fillText(low.toFixed(3), left + 2, top + height - pad.bottom);
  context.fillText(`epoch ${lastEpoch.toFixed(2)}`, left + width - 90, top + height - 6);
  context.strokeStyle = "#c9ced6";
  context.lineWidth = 1;
  context.strokeRect(left + pad.left, top + pad.top, width - pad.left - pad.right, height - pad.top - pad.bottom);
  for (const [key, colour] of lines) {
    context.strokeStyle = colour;
    context.lineWidth = 2;
    context.beginPath();
    points.filter((p) => p[key] !== undefined).forEach((p, i) => {
      if (i === 0) context.moveTo(x(p.epoch), y(p[key]));
      else context.lineTo(x(p.epoch), y(p[key]));
    });
    context.stroke();
  }
}

window.addEventListener("resize", () => requestAnimationFrame(drawCurves));
drawCurves();
loadTrainOptions();
