// The draw-a-digit page: pointer events (mouse, pen and touch alike), a debounced live prediction
// while drawing, image upload, and the answer as a label, a bar per class and the image the network
// saw. For a model that is not a digit model (colour photos, clothing) there is no drawing pad:
// the page takes uploads and names the classes it tells apart.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const numberMode = document.getElementById("number");
const bars = document.getElementById("bars");
const DEBOUNCE_MS = 150; // wait this long after the last stroke movement before asking again
let classes = [];
let drawing = false;
let inked = false;
let timer = null;
let asked = 0; // the newest request's number: older answers arriving late are dropped
let lastImage = null; // the last image asked about, [blob, name]: asked again when the method changes

function clearPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  inked = false;
  lastImage = null;
  showAnswer(null);
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * (pad.width / box.width), (event.clientY - box.top) * (pad.height / box.height)];
}

pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  pad.setPointerCapture(event.pointerId);
  const [x, y] = point(event);
  ctx.beginPath();
  ctx.moveTo(x, y);
  ctx.lineTo(x + 0.1, y);
  ctx.stroke();
  inked = true;
  schedule();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const [x, y] = point(event);
  ctx.lineTo(x, y);
  ctx.stroke();
  schedule();
});
for (const name of ["pointerup", "pointercancel"]) {
  pad.addEventListener(name, () => { drawing = false; schedule(); });
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(() => { if (inked) pad.toBlob((blob) => ask(blob, "drawing.png")); }, DEBOUNCE_MS);
}

// One digit: /api/explain answers and looks inside (inside.js); a number: /api/predict reads it.
async function ask(blob, name) {
  const mine = ++asked;
  lastImage = [blob, name];
  const form = new FormData();
  form.append("file", blob, name);
  const url = numberMode.checked ? "/api/predict?number=true" : insideUrl();
  let reply;
  try {
    const response = await fetch(url, { method: "POST", body: form });
    reply = await response.json();
    if (!response.ok) reply = { error: reply.error || `the server answered ${response.status}` };
  } catch (error) {
    reply = { error: `no answer from the server (${error.message})` };
  }
  if (mine === asked) showAnswer(reply);
}

// Before an answer there is no picture: an <img> without a source would show a broken-image icon.
function showSeen(shown) {
  document.getElementById("seen").hidden = !shown;
  document.getElementById("seen-empty").hidden = shown;
}

function showAnswer(reply) {
  const label = document.getElementById("label");
  const confidence = document.getElementById("confidence");
  const seen = document.getElementById("seen");
  const digits = document.getElementById("digits");
  document.getElementById("message").textContent = reply && reply.error ? reply.error : "";
  digits.replaceChildren();
  showInside(reply);
  if (!reply || reply.error) {
    label.textContent = "\u2013";
    confidence.textContent = "";
    seen.removeAttribute("src");
    showSeen(false);
    setBars(null);
    return;
  }
  const isNumber = reply.number !== undefined;
  label.textContent = isNumber ? reply.number : reply.label;
  confidence.textContent = `${(100 * reply.confidence).toFixed(1)}% sure`;
  seen.src = `data:image/png;base64,${reply.preprocessed}`;
  showSeen(true);
  setBars(isNumber ? reply.digits[0].probabilities : reply.probabilities);
  if (isNumber) {
    for (const digit of reply.digits) {
      const cell = document.createElement("div");
      cell.className = "digit";
      const image = document.createElement("img");
      image.src = `data:image/png;base64,${digit.preprocessed}`;
      image.alt = `digit read as ${digit.label}`;
      cell.append(image, `${digit.label} (${(100 * digit.confidence).toFixed(0)}%)`);
      digits.append(cell);
    }
  }
}

function makeBars() {
  bars.replaceChildren();
  for (const name of classes) {
    const row = document.createElement("div");
    row.className = "bar";
    row.dataset.label = name;
    row.innerHTML = '<span class="name"></span><span class="track"><span class="fill"></span></span><span class="p"></span>';
    row.querySelector(".name").textContent = name;
    bars.append(row);
  }
}

function setBars(probabilities) {
  const best = probabilities ? Math.max(...Object.values(probabilities)) : -1;
  for (const row of bars.children) {
    const p = probabilities ? probabilities[row.dataset.label] : 0;
    row.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    row.querySelector(".p").textContent = probabilities ? `${(100 * p).toFixed(1)}%` : "";
    row.classList.toggle("top", p === best);
  }
}

document.getElementById("clear").addEventListener("click", clearPad);
document.getElementById("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) ask(file, file.name);
});
numberMode.addEventListener("change", () => schedule());
methodChoice.addEventListener("change", () => { if (lastImage) ask(...lastImage); });

async function loadModel() {
  const facts = await (await fetch("/api/model")).json();
  classes = facts.classes;
  const accuracy = facts.test_accuracy ? `${(100 * facts.test_accuracy).toFixed(2)}% test accuracy` : "test accuracy unknown";
  document.getElementById("model-facts").textContent =
    `Model ${facts.name}: ${facts.architecture} on ${facts.dataset}, ${accuracy}, ${facts.parameters.toLocaleString("en")} parameters`;
  document.getElementById("preprocessing").textContent = `Each image is prepared by ${facts.preprocessing}, as in cnnlab predict.`;
  setMethods(facts.methods);
  document.getElementById("tab-train-button").hidden = !facts.training; // cnnlab serve --no-train, or workers
  const note = document.getElementById("training-note"); // why there is no Train tab, when it is not --no-train
  note.textContent = facts.training_note ? `No Train tab: ${facts.training_note}.` : "";
  note.hidden = !facts.training_note;
  if (!facts.drawing) showUploadOnly(facts);
  makeBars();
  setBars(null);
}

function showUploadOnly(facts) {
  document.title = "cnnlab: classify an image";
  document.getElementById("input-title").textContent = "Upload an image";
  const names = document.getElementById("classes");
  names.textContent = `It tells apart ${facts.classes.length} classes: ${facts.classes.join(", ")}.`;
  names.hidden = false;
  pad.hidden = true;
  for (const element of document.querySelectorAll(".drawing")) element.hidden = true;
  numberMode.checked = false;
}

ctx.lineWidth = 20;
ctx.lineCap = "round";
ctx.lineJoin = "round";
ctx.strokeStyle = "#000";
clearPad();
loadModel();
