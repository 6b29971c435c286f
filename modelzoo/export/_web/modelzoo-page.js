/*
 * modelzoo page helpers: the code both exported pages share, the demo page (index.html of
 * `modelzoo export --with-demo`) and the training page (`--browser-training`).
 *
 * Loaded with <script src="modelzoo-page.js"> from the page's own folder, it defines the
 * global `modelzooPage`. It fetches only what a page asks for (relative URLs) and reads
 * pixels the way modelzoo's Python image reader does: the whole picture resized to the
 * model's input size, then preprocessing.json's channel order, mean and std.
 *
 * The pages share these element ids: #status (the footer), #video and #webcam (its button).
 * `tf` is the TensorFlow.js global, loaded by the page before it calls anything here.
 */
(function (root) {
  "use strict";

  const $ = (id) => document.getElementById(id);

  // What the pages do to pixels when an export has no preprocessing.json.
  const DEFAULT_PREPROCESSING = Object.freeze({
    mode: "none", channel_order: "rgb", mean: [0, 0, 0], std: [1, 1, 1],
  });

  // ---------------------------------------------------------------- status and errors

  function setStatus(text, isError = false) {
    $("status").textContent = text;
    $("status").classList.toggle("error", isError);
  }

  // Shows `error` in the footer; returns its message (the demo page also reports it).
  function fail(error) {
    const message = error && error.message ? error.message : String(error);
    setStatus(`Error: ${message}`, true);
    return message;
  }

  // "TF.js 4.22.0 (cpu) · input 224×224×3": the start of both pages' status line.
  function readyText({ size, channels }, what = "input") {
    const [h, w] = size;
    return `TF.js ${tf.version.tfjs} (${tf.getBackend()}) · ${what} ${w}×${h}×${channels}`;
  }

  // Browsers refuse fetch() of model.json from file://, so say how to serve the folder.
  function refuseFileURL() {
    if (location.protocol !== "file:") return;
    throw new Error("Browsers do not let a page opened from a file load model.json. Serve " +
                    "this folder instead: modelzoo serve <this folder> (or python -m " +
                    "http.server 8000 -d <this folder>), then open the URL it prints.");
  }

  // ---------------------------------------------------------------- loading

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src;
      s.onload = resolve;
      s.onerror = () => reject(new Error(`could not load ${src}`));
      document.head.appendChild(s);
    });
  }

  // `fallback` (when given) stands in for a file the export may lack (labels.json...).
  async function fetchJSON(url, fallback) {
    const response = await fetch(url);
    if (!response.ok) {
      if (fallback !== undefined) return fallback;
      throw new Error(`${url}: HTTP ${response.status}`);
    }
    return response.json();
  }

  function loadImage(url) {
    const img = new Image();
    img.src = url;
    return img.decode().then(() => img);
  }

  // A dropped or picked file as a decoded image; a blob: URL, so no network request.
  async function loadImageFile(file) {
    if (!file || !file.type.startsWith("image/")) throw new Error("That is not an image file.");
    const url = URL.createObjectURL(file);
    try {
      return await loadImage(url);
    } finally {
      URL.revokeObjectURL(url);  // a decoded image stays drawable
    }
  }

  // ---------------------------------------------------------------- pixels -> tensor

  // {size: [h, w], channels} of the model input: preprocessing.json's, else the model's.
  function inputSpec(model, prep) {
    const shape = model.inputs[0].shape;  // [batch, height, width, channels]
    return {
      size: prep.input_size || [shape[1] || 224, shape[2] || 224],
      channels: prep.channels || shape[3] || 3,
    };
  }

  // The first prediction compiles kernels; do it at load rather than on the user's image.
  function warmUp(model, { size, channels }) {
    tf.tidy(() => { model.predict(tf.zeros([1, ...size, channels])); });
  }

  // A canvas of the model's input size [h, w] holding the whole of `source` (ImageData,
  // canvas, image or video), stretched as Python's reader resizes (no crop).
  function inputCanvas(source, [h, w]) {
    let src = source;
    if (typeof ImageData !== "undefined" && source instanceof ImageData) {
      src = document.createElement("canvas");
      src.width = source.width;
      src.height = source.height;
      src.getContext("2d").putImageData(source, 0, 0);
    }
    const sw = src.videoWidth || src.naturalWidth || src.width;
    const sh = src.videoHeight || src.naturalHeight || src.height;
    if (!sw || !sh) throw new Error("The picture is empty (is the webcam running?).");
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(src, 0, 0, w, h);
    return canvas;
  }

  // A [1, h, w, c] float tensor: the picture's 0-255 pixels after preprocessing.json.
  // `input` is {size, channels, prep}; a tf.Tensor (rank 3 or 4) is taken as it is.
  function toInput(source, { size, channels, prep }) {
    if (source instanceof tf.Tensor) {
      return tf.tidy(() => (source.rank === 3 ? source.expandDims(0) : source.clone()).toFloat());
    }
    const [h, w] = size;
    const rgba = inputCanvas(source, size).getContext("2d").getImageData(0, 0, w, h).data;
    const { mean, std, channel_order: order } = prep;
    const c = channels;
    const perm = order === "bgr" ? [2, 1, 0] : [0, 1, 2];
    const out = new Float32Array(h * w * c);
    for (let i = 0, j = 0; i < h * w; i++, j += 4) {
      if (c === 1) {  // ITU-R 601 luma, as PIL's convert("L")
        const y = 0.299 * rgba[j] + 0.587 * rgba[j + 1] + 0.114 * rgba[j + 2];
        out[i] = (y - mean[0]) / std[0];
      } else {
        for (let k = 0; k < 3; k++) out[i * 3 + k] = (rgba[j + perm[k]] - mean[k]) / std[k];
      }
    }
    return tf.tensor4d(out, [1, h, w, c]);
  }

  // ---------------------------------------------------------------- showing scores

  // Appends to `item` a "label  12.3%" row (the score in class `scoreClass`) and a bar.
  function appendScore(item, label, p, scoreClass) {
    const row = document.createElement("div");
    row.className = "row";
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = label;
    const score = document.createElement("span");
    score.className = scoreClass;
    score.textContent = `${(100 * p).toFixed(1)}%`;
    row.append(name, score);
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    bar.append(fill);
    item.append(row, bar);
  }

  // ---------------------------------------------------------------- input: drop, webcam

  // Calls onFile(file) for a file dropped on `element`, highlighted while dragged over.
  function onFileDrop(element, onFile) {
    element.addEventListener("dragover", (e) => {
      e.preventDefault();
      element.classList.add("over");
    });
    element.addEventListener("dragleave", () => element.classList.remove("over"));
    element.addEventListener("drop", (e) => {
      e.preventDefault();
      element.classList.remove("over");
      onFile(e.dataTransfer.files[0]);
    });
  }

  let stream = null;  // the running camera, or null

  function webcamOn() {
    return stream !== null;
  }

  // Streams the camera into #video and calls onFrame(video) at most every `everyMs` ms
  // until stopWebcam(); does nothing while the camera already runs. facingMode: "user"
  // (the front camera) or "environment" (the back one, on a phone).
  async function startWebcam({ facingMode, everyMs, onFrame }) {
    if (stream) return;
    const video = $("video");
    const own = await navigator.mediaDevices.getUserMedia({ video: { facingMode } });
    stream = own;
    video.srcObject = own;
    await video.play();
    video.hidden = false;
    $("webcam").textContent = "Stop webcam";
    let last = 0;
    const loop = async (now) => {
      if (stream !== own) return;  // stopped (and perhaps started again: a new loop runs)
      if (now - last > everyMs && video.readyState >= 2) {
        last = now;
        await onFrame(video);  // a slow prediction delays the next frame, never overlaps it
      }
      requestAnimationFrame(loop);
    };
    requestAnimationFrame(loop);
  }

  function stopWebcam() {
    if (!stream) return;
    stream.getTracks().forEach((t) => t.stop());
    stream = null;
    $("video").hidden = true;
    $("webcam").textContent = "Use webcam";
  }

  // Offers #webcam where the browser can reach a camera; it toggles startWebcam(options).
  function enableWebcamButton(options) {
    if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) return;
    const button = $("webcam");
    button.hidden = false;
    button.disabled = false;
    button.addEventListener("click", () => {
      if (stream) stopWebcam();
      else startWebcam(options).catch((e) => setStatus(`Webcam unavailable: ${e.message}`, true));
    });
  }

  root.modelzooPage = {
    DEFAULT_PREPROCESSING, setStatus, fail, readyText, refuseFileURL, loadScript, fetchJSON,
    loadImage, loadImageFile, inputSpec, warmUp, inputCanvas, toInput, appendScore,
    onFileDrop, webcamOn, startWebcam, stopWebcam, enableWebcamButton,
  };
})(self);
