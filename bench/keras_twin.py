"""The Keras twin of a mnist-lab experiment: builds the same network, optimizer, schedule, loss
and augmentation in Keras from a resolved `results/<exp>/spec.toml` and times its epochs on the
same data and protocol (48,000 training + 12,000 validation images of the IDX files, the spec's
batch size). A measuring tool for `bench`, not part of the product.

Usage:
    DATA_DIR=data TF_CPP_MIN_LOG_LEVEL=2 .venv-keras/bin/python bench/keras_twin.py \
        results/modern/spec.toml [EPOCHS] [THREADS]

The images are the spec's dataset's, read from DATA_DIR/<dataset>.

Prints the Keras model summary, then each epoch's seconds (validation included; the first
epoch also pays graph tracing) and accuracy. Setup: ../shared/bench/README.md (Keras 3 on
TensorFlow 2.21, `pip install tensorflow-cpu==2.21.0`).
"""
import math
import os
import struct
import sys
import time
import tomllib

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402


def idx(path):
    b = open(path, "rb").read()
    nd = b[3]
    dims = struct.unpack(">" + "I" * nd, b[4 : 4 + 4 * nd])
    return np.frombuffer(b, np.uint8, offset=4 + 4 * nd).reshape(dims)


def activation(a):
    """A Keras activation (name or layer) for a mnist-lab `activation` value."""
    if a is None or a == "softmax":
        return a or "linear", None
    if isinstance(a, dict):
        (k, v), = a.items()
        if k == "leaky_relu":
            return "linear", keras.layers.LeakyReLU(negative_slope=v)
        if k == "elu":
            return "linear", keras.layers.ELU(alpha=v)
    return a, None


def pool_args(p):
    if isinstance(p, int):
        return dict(pool_size=p, strides=p, padding="valid")
    return dict(pool_size=p["pool"], strides=p.get("stride", p["pool"]), padding=p.get("padding", "valid"))


def augmentation(augment):
    """Keras layers for mnist-lab's `[data.augment]`, active in training only."""
    out = []
    aff = augment.get("affine")
    if aff:
        # The same draws as mnist-lab's affine transform: rotation ±deg, shift ±fraction,
        # zoom ±fraction, bilinear, zeros outside.
        if aff.get("rotation"):
            out.append(keras.layers.RandomRotation(aff["rotation"] / 360.0, fill_mode="constant"))
        if aff.get("shift"):
            out.append(keras.layers.RandomTranslation(aff["shift"], aff["shift"], fill_mode="constant"))
        if aff.get("zoom"):
            out.append(keras.layers.RandomZoom(aff["zoom"], fill_mode="constant"))
    if augment.get("elastic"):
        print("note: Keras has no elastic distortion; the twin trains without it", file=sys.stderr)
    if augment.get("flip"):
        out.append(keras.layers.RandomFlip(augment["flip"]))
    crop = augment.get("crop")
    if crop:
        # Keras crops a whole batch at one position; mnist-lab draws one per image.
        out.append(keras.layers.ZeroPadding2D(crop["padding"]))
        out.append("crop")
    er = augment.get("erasing")
    if er:
        # Keras' RandomErasing draws its rectangles its own way (no aspect range); the
        # closest settings: the same probability, areas and fill.
        p = er.get("probability", 0.5)
        fill = 0.0 if er.get("fill", "background") == "background" else None
        out.append(keras.layers.RandomErasing(factor=(p, p), scale=tuple(er.get("area", (0.02, 0.33))),
                                              fill_value=fill, value_range=(0, 1)))
    return out


def keras_layers(kind, s):
    """The Keras layers of one mnist-lab layer entry (not a block)."""
    out, extra = [], None
    if kind == "conv":
        act, extra = activation(s.get("activation"))
        out.append(keras.layers.Conv2D(s["filters"], s["kernel"], strides=s.get("stride", 1),
                                       padding=s.get("padding", "valid"), activation=act,
                                       kernel_initializer=s.get("init", "glorot_uniform")))
    elif kind == "dense":
        act, extra = activation(s.get("activation"))
        out.append(keras.layers.Dense(s["units"], activation=act,
                                      kernel_initializer=s.get("init", "glorot_uniform")))
    elif kind == "maxpool":
        out.append(keras.layers.MaxPooling2D(**pool_args(s)))
    elif kind == "avgpool":
        out.append(keras.layers.AveragePooling2D(**pool_args(s)))
    elif kind == "globalavgpool":
        out.append(keras.layers.GlobalAveragePooling2D())
    elif kind == "flatten":
        out.append(keras.layers.Flatten())
    elif kind == "dropout":
        out.append(keras.layers.Dropout(s["rate"]))
    elif kind == "batchnorm":
        out.append(keras.layers.BatchNormalization(momentum=s.get("momentum", 0.99),
                                                   epsilon=s.get("epsilon", 1e-3)))
        act, extra = activation(s.get("activation"))
        if act not in (None, "linear"):
            out.append(keras.layers.Activation(act))
    else:
        sys.exit(f"error: layer kind {kind!r} has no Keras twin here")
    if extra is not None:
        out.append(extra)
    return out


def apply(x, entries):
    """Applies mnist-lab layer entries to the Keras tensor x (functional API)."""
    for entry in entries:
        (kind, s), = entry.items()
        if kind == "residual":
            x = residual(x, s)
            continue
        for layer in keras_layers(kind, s):
            x = layer(x)
    return x


def residual(x, s):
    """A residual block as Keras' ResNets build it: inner path, shortcut (identity, or a 1×1
    Conv2D with the inner path's stride and a BatchNormalization), Add, activation."""
    for _ in range(s.get("repeat", 1)):
        y = apply(x, s["layers"])
        mode = s.get("shortcut", "auto")
        if mode != "none":
            short = x
            if mode == "projection" or tuple(y.shape[1:]) != tuple(x.shape[1:]):
                stride = math.ceil(x.shape[1] / y.shape[1])
                short = keras.layers.Conv2D(y.shape[-1], 1, strides=stride)(x)
                if s.get("projection_batchnorm", True):
                    short = keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3)(short)
            y = keras.layers.Add()([y, short])
        act, extra = activation(s.get("activation", "relu"))
        y = keras.layers.Activation(act)(y)
        x = extra(y) if extra is not None else y
    return x


def layers(spec, shape, augment):
    inp = keras.Input(shape)
    x = inp
    for layer in augmentation(augment):
        x = keras.layers.RandomCrop(shape[0], shape[1])(x) if layer == "crop" else layer(x)
    return keras.Model(inp, apply(x, spec["model"]["layers"]))


class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """PyTorch's OneCycleLR (cos, two phases), as mnist-lab's `onecycle`."""

    def __init__(self, peak, total, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
        self.peak, self.total = peak, float(total)
        self.initial = peak / div_factor
        self.min = self.initial / final_div_factor
        self.up_end = pct_start * total - 1.0

    def __call__(self, step):
        t = tf.cast(step, tf.float32)
        anneal = lambda a, b, pct: b + (a - b) / 2.0 * (tf.cos(math.pi * pct) + 1.0)
        up = anneal(self.initial, self.peak, t / max(self.up_end, 1e-9))
        down = anneal(self.peak, self.min, (t - self.up_end) / (self.total - 1.0 - self.up_end))
        return tf.where(t <= self.up_end, up, down)


def schedule(train, base, steps_per_epoch):
    s = train.get("schedule")
    if s is None:
        return base
    if isinstance(s, str):
        s = {s: {}}
    (kind, o), = s.items()
    total = train["epochs"] * steps_per_epoch
    if kind == "onecycle":
        return OneCycle(base, total, o.get("pct_start", 0.3), o.get("div_factor", 25.0),
                        o.get("final_div_factor", 1e4))
    if kind == "cosine":
        warm = round(o.get("warmup", 0.0) * steps_per_epoch)
        return keras.optimizers.schedules.CosineDecay(0.0 if warm else base, total - warm,
                                                      alpha=o.get("alpha", 0.0),
                                                      warmup_target=base if warm else None,
                                                      warmup_steps=warm)
    if kind == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(base, steps_per_epoch, o.get("rate", 0.9))
    if kind == "step":
        return keras.optimizers.schedules.ExponentialDecay(
            base, o.get("every", 1) * steps_per_epoch, o.get("factor", 0.5), staircase=True)
    sys.exit(f"error: schedule {kind!r} has no Keras twin here")


def optimizer(train, steps_per_epoch):
    o = train.get("optimizer", "sgd")
    if isinstance(o, str):
        o = {o: {k: train[k] for k in ("learning_rate", "momentum") if k in train}}
    (kind, s), = o.items()
    defaults = {"sgd": 0.01, "adam": 0.001, "adamw": 0.001, "rmsprop": 0.001}
    lr = schedule(train, s.get("learning_rate", defaults[kind]), steps_per_epoch)
    args = {k: v for k, v in s.items() if k != "learning_rate"}
    if kind == "sgd":
        return keras.optimizers.SGD(lr, momentum=args.get("momentum", 0.9),
                                    nesterov=args.get("nesterov", False),
                                    weight_decay=args.get("weight_decay") or None)
    cls = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
           "rmsprop": keras.optimizers.RMSprop}[kind]
    if "weight_decay" in args and not args["weight_decay"]:
        del args["weight_decay"]
    return cls(lr, **args)


def main():
    spec = tomllib.load(open(sys.argv[1], "rb"))
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    dataset = spec.get("data", {}).get("dataset", "mnist")
    d = os.path.join(os.environ.get("DATA_DIR", "data"), dataset) + "/"
    x = idx(d + "train-images-idx3-ubyte").astype("float32") / 255.0
    y = idx(d + "train-labels-idx1-ubyte").astype("int64")
    if x.ndim == 3:
        x = x[..., None]
    classes = int(y.max()) + 1
    rng = np.random.default_rng(1)
    order = rng.permutation(len(x))
    tr, va = order[:48000], order[48000:60000]
    train = spec["train"]
    bs = train.get("batch_size", 32)
    steps = math.ceil(len(tr) / bs)
    model = layers(spec, x.shape[1:], spec.get("data", {}).get("augment", {}))
    model.compile(optimizer=optimizer(train, steps),
                  loss=keras.losses.CategoricalCrossentropy(
                      from_logits=False, label_smoothing=train.get("label_smoothing", 0.0)),
                  metrics=["accuracy"])
    model.summary()
    yt = keras.utils.to_categorical(y, classes)
    for e in range(epochs):
        t = time.time()
        h = model.fit(x[tr], yt[tr], batch_size=bs, epochs=1, verbose=0,
                      validation_data=(x[va], yt[va]))
        print(f"epoch {e + 1}: {time.time() - t:.1f} s, val_acc {100 * h.history['val_accuracy'][-1]:.2f}%",
              flush=True)


if __name__ == "__main__":
    main()
