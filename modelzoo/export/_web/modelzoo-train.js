/*
 * modelzoo browser training: transfer learning inside TensorFlow.js.
 *
 * A frozen base (a TF.js layers model exported by modelzoo) turns each example into
 * features once; a small head (Flatten -> Dense(100, relu) -> Dense(k, softmax) by default,
 * named like modelzoo.attach_head's layers) is trained on those features with Adam and
 * categorical cross-entropy, reporting the loss of every batch.
 *
 * The same file runs in the exported page (<script src="modelzoo-train.js">, which defines
 * the global `modelzooTraining`) and in Node.js (`require("./modelzoo-train.js")`), where
 * modelzoo's tests run it. It needs only the `tf` namespace it is given and makes no
 * network request of its own.
 */
(function (root, factory) {
  if (typeof module === "object" && module.exports) module.exports = factory();
  else root.modelzooTraining = factory();
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  const DEFAULTS = Object.freeze({
    hidden: [100], activation: "relu", learningRate: 0.001, epochs: 20, batchSize: 16,
  });

  function positiveInt(value, what) {
    if (!Number.isInteger(value) || value < 1) {
      throw new Error(`${what} must be a positive integer; received ${value}.`);
    }
    return value;
  }

  class Trainer {
    /**
     * @param {object} tf the TensorFlow.js namespace.
     * @param {object} base a tf.LayersModel mapping a batch of images to features.
     * @param {object} config {classes: [names], hidden, activation, learningRate, epochs,
     *     batchSize, metadata (saved with the head)}.
     */
    constructor(tf, base, config) {
      if (!tf || !base || !config) throw new Error("Trainer(tf, base, config) needs all three.");
      this.tf = tf;
      this.base = base;
      this.config = Object.assign({}, DEFAULTS, config);
      const classes = this.config.classes;
      if (!Array.isArray(classes) || classes.length < 2) {
        throw new Error(`A head needs at least two classes; received ${JSON.stringify(classes)}.`);
      }
      this.classes = classes.map(String);
      const out = base.outputs[0].shape;
      this.featureShape = out.slice(1);
      if (this.featureShape.some((d) => d == null)) {
        throw new Error(`The base's features have an unknown size (${JSON.stringify(out)}); ` +
                        "export the base with a fixed input shape.");
      }
      this.examples = [];  // {features: tf.Tensor (kept, [1, ...featureShape]), label}
      this.head = null;
      this.losses = [];
    }

    /** Features of a batch of images [n, h, w, c] (a new tensor the caller disposes). */
    features(images) {
      return this.tf.tidy(() => {
        let y = this.base.predict(images);
        if (Array.isArray(y)) y = y[0];
        return y;
      });
    }

    /** Compute and keep the features of each image in `images` (a tensor [n, h, w, c]). */
    addExamples(images, label) {
      const k = this.classes.length;
      if (!Number.isInteger(label) || label < 0 || label >= k) {
        throw new Error(`Class index must be 0..${k - 1}; received ${label}.`);
      }
      const tf = this.tf;
      const feats = this.features(images);
      const n = feats.shape[0];
      for (let i = 0; i < n; i++) {
        const one = tf.tidy(() => feats.slice([i], [1]));
        this.examples.push({ features: tf.keep(one), label });
      }
      feats.dispose();
      return this.counts();
    }

    /** Number of examples of each class. */
    counts() {
      const counts = this.classes.map(() => 0);
      for (const e of this.examples) counts[e.label] += 1;
      return counts;
    }

    /** Forget the examples of one class (or of every class when `label` is undefined). */
    clear(label) {
      const keep = [];
      for (const e of this.examples) {
        if (label === undefined || e.label === label) e.features.dispose();
        else keep.push(e);
      }
      this.examples = keep;
      return this.counts();
    }

    /** A fresh, untrained head for the base's features. */
    buildHead() {
      const tf = this.tf;
      const layers = [];
      let inputShape = this.featureShape;
      if (inputShape.length > 1) {
        layers.push(tf.layers.flatten({ inputShape, name: "head_pool" }));
        inputShape = undefined;
      }
      (this.config.hidden || []).forEach((units, i) => {
        layers.push(tf.layers.dense({
          units: positiveInt(units, "hidden size"), activation: this.config.activation,
          name: `head_dense_${i + 1}`, ...(inputShape ? { inputShape } : {}),
        }));
        inputShape = undefined;
      });
      layers.push(tf.layers.dense({
        units: this.classes.length, activation: "softmax", name: "head_output",
        ...(inputShape ? { inputShape } : {}),
      }));
      return tf.sequential({ layers, name: "head" });
    }

    /**
     * Train a new head on every example kept so far.
     *
     * @param {object} options {epochs, batchSize, learningRate, onBatchEnd({step, epoch,
     *     batch, loss}), onEpochEnd({epoch, loss, acc})}.
     * @return {Promise<object>} {losses (one per batch), epochs, examples, seconds}.
     */
    async train(options = {}) {
      const tf = this.tf;
      const epochs = positiveInt(options.epochs ?? this.config.epochs, "epochs");
      const batchSize = positiveInt(options.batchSize ?? this.config.batchSize, "batchSize");
      const learningRate = options.learningRate ?? this.config.learningRate;
      if (!(learningRate > 0)) throw new Error(`learningRate must be > 0; received ${learningRate}.`);
      const present = new Set(this.examples.map((e) => e.label));
      if (present.size < 2) {
        throw new Error("Add examples of at least two classes before training.");
      }
      const started = Date.now();
      const xs = tf.concat(this.examples.map((e) => e.features));
      const ys = tf.tidy(() => tf.oneHot(
        tf.tensor1d(this.examples.map((e) => e.label), "int32"), this.classes.length));
      const head = this.buildHead();
      head.compile({
        optimizer: tf.train.adam(learningRate), loss: "categoricalCrossentropy",
        metrics: ["accuracy"],
      });
      const losses = [];
      let epoch = 0;
      try {
        await head.fit(xs, ys, {
          epochs, batchSize, shuffle: true, verbose: 0,
          callbacks: {
            onEpochBegin: async (e) => { epoch = e; },
            onBatchEnd: async (batch, logs) => {
              losses.push(logs.loss);
              if (options.onBatchEnd) {
                await options.onBatchEnd({ step: losses.length, epoch, batch, loss: logs.loss });
              }
            },
            onEpochEnd: async (e, logs) => {
              if (options.onEpochEnd) {
                await options.onEpochEnd({ epoch: e, loss: logs.loss, acc: logs.acc });
              }
            },
          },
        });
      } finally {
        tf.dispose([xs, ys]);
      }
      if (this.head) this.head.dispose();
      this.head = head;
      this.losses = losses;
      return { losses, epochs, batchSize, learningRate, examples: this.examples.length,
               seconds: (Date.now() - started) / 1000 };
    }

    /** Class probabilities [n, k] for a batch of images (a tensor the caller disposes). */
    predict(images) {
      if (!this.head) throw new Error("Train the head before predicting.");
      return this.tf.tidy(() => this.head.predict(this.features(images)));
    }

    /** Save the trained head (e.g. to "downloads://head"), with its class names. */
    async save(handlerOrUrl) {
      if (!this.head) throw new Error("Train the head before saving it.");
      this.head.setUserDefinedMetadata({
        modelzoo: Object.assign({ classes: this.classes }, this.config.metadata || {}),
      });
      return this.head.save(handlerOrUrl);
    }

    dispose() {
      this.clear();
      if (this.head) this.head.dispose();
      this.head = null;
    }
  }

  return { Trainer, DEFAULTS, version: 1 };
});
