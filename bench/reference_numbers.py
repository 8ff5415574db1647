#!/usr/bin/env python3
"""Regenerates the reference numbers the tests pin mnist-lab against, from the libraries whose
semantics mnist-lab follows: Keras 3 (TensorFlow backend) for layers, optimizers, losses,
schedules and the affine transform; scipy for the elastic transform's smoothing and resampling
and for the statistics; PyTorch only for one-cycle (printed when torch is installed).

Run by hand, once the libraries are installed (about 600 MB; PyTorch 4 GB more):
    python3 -m venv ~/.venvs/tf && ~/.venvs/tf/bin/pip install tensorflow-cpu==2.21.0 scipy
    TF_CPP_MIN_LOG_LEVEL=3 ~/.venvs/tf/bin/python bench/reference_numbers.py [SECTION ...]

Each section prints the numbers of one test, named by its file and function, in the form the
test holds them; a section the test's numbers no longer match means the library changed (say
which version the test's comment names) or the test's problem did. Sections: optimizers, conv,
maxpool, avgpool, activations, loss, schedules, batchnorm, dropout, affine, elastic, stats,
onecycle, crop, flip, residual. Last checked: Keras 3.15.1, TensorFlow 2.21, scipy 1.17.1, every section matching.
"""
import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402


def show(name, values, fmt="%.9g"):
    print(f"{name} = [{', '.join(fmt % v for v in np.asarray(values, dtype=np.float64).ravel())}]")


def keras():
    import keras as k

    return k


def keras_problem():
    """conv.rs's `keras_problem`: x (2, 5, 5, 2) and a kernel (3, 3, 2, 3)."""
    x = np.array([(v % 7) / 7 - 0.4 for v in range(1, 101)], dtype=np.float32).reshape(2, 5, 5, 2)
    k = np.array([(v % 5) / 5 - 0.45 for v in range(54)], dtype=np.float32).reshape(3, 3, 2, 3)
    return x, k


def optimizers():
    """src/optim/mod.rs, every_optimizer_matches_keras_on_a_fixed_problem."""
    k = keras()
    grads = [[0.5, 0.5, -1.0], [1.0, -1.0, 0.25], [-0.3, 0.2, 0.1]]
    cases = [
        ("sgd nesterov", lambda: k.optimizers.SGD(0.1, momentum=0.9, nesterov=True)),
        ("sgd weight_decay 0.1", lambda: k.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.1)),
        ("adam", lambda: k.optimizers.Adam(0.1)),
        ("adamw", lambda: k.optimizers.AdamW(0.1)),
        ("adamw weight_decay 0.5", lambda: k.optimizers.AdamW(0.1, weight_decay=0.5)),
        ("rmsprop", lambda: k.optimizers.RMSprop(0.1)),
        ("rmsprop momentum 0.5", lambda: k.optimizers.RMSprop(0.1, momentum=0.5)),
    ]
    for name, make in cases:
        w = k.Variable(np.array([1.0, -2.0, 0.5], dtype="float32"))
        opt = make()
        for step, g in enumerate(grads, 1):
            opt.apply_gradients([(np.array(g, dtype="float32"), w)])
            show(f"optimizers: {name}, step {step}", w.numpy())


def conv():
    """src/model/layers/conv.rs, same_padding_and_strides_match_keras (6 decimals)."""
    k = keras()
    x, kernel = keras_problem()
    for stride in [2, 1]:
        layer = k.layers.Conv2D(3, 3, strides=stride, padding="same", use_bias=False)
        layer.build(x.shape)
        layer.set_weights([kernel])
        y = np.round(np.array(layer(x)).ravel(), 6)
        if stride == 2:
            show("conv: stride 2", y, "%.6g")
        else:
            show("conv: stride 1, first 15", y[:15], "%.6g")
            show("conv: stride 1, last 15", y[-15:], "%.6g")


def maxpool():
    """src/model/layers/maxpool.rs, strided_same_padding_matches_keras."""
    k = keras()
    x, _ = keras_problem()
    y = k.layers.MaxPooling2D(3, strides=2, padding="same")(x)
    show("maxpool: 3, stride 2, same", np.round(np.array(y), 6), "%.6g")


def avgpool():
    """src/model/layers/avgpool.rs, same_padding_matches_keras."""
    k = keras()
    x, _ = keras_problem()
    y = k.layers.AveragePooling2D(2, strides=2, padding="same")(x)
    show("avgpool: 2, stride 2, same", np.round(np.array(y), 6), "%.6g")


def activations():
    """src/model/activation.rs, leaky_relu_and_elu_match_keras_and_their_derivatives."""
    k = keras()
    x = np.array([-2.0, -0.5, 0.0, 0.7, 3.0], dtype=np.float32)
    show("activations: leaky_relu", k.activations.leaky_relu(x))
    show("activations: elu", k.activations.elu(x))


def loss():
    """src/model/loss.rs, label_smoothing_matches_keras: loss and gradient per ε."""
    import tensorflow as tf

    k = keras()
    logits = np.array([[0.2, -1.0, 0.5], [1.5, 0.3, -0.7]], dtype=np.float32)
    onehot = np.array([[0, 0, 1], [1, 0, 0]], dtype=np.float32)
    for eps in [0.0, 0.1]:
        z = tf.Variable(logits)
        with tf.GradientTape() as tape:
            value = k.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=eps)(onehot, z)
        print(f"loss: label_smoothing {eps}: {float(value)!r}")
        show(f"loss: label_smoothing {eps}, gradient", tape.gradient(value, z), "%.8f")


def schedules():
    """src/schedule/mod.rs: cosine_with_warmup_matches_keras and
    exponential_and_step_match_keras_exponential_decay."""
    k = keras()
    s = k.optimizers.schedules
    cos = s.CosineDecay(0.0, decay_steps=12, alpha=0.1, warmup_target=0.01, warmup_steps=4)
    show("schedules: cosine", [float(cos(i)) for i in range(16)])
    exp = s.ExponentialDecay(0.01, decay_steps=4, decay_rate=0.5)
    show("schedules: exponential", [float(exp(i)) for i in range(10)])
    step = s.ExponentialDecay(0.01, decay_steps=8, decay_rate=0.5, staircase=True)
    show("schedules: step (staircase)", [float(step(i)) for i in range(20)])


def batchnorm():
    """src/model/layers/batchnorm.rs, matches_keras_in_training_and_inference: a batch of 4
    samples of 1×2 positions × 3 channels; γ, β and the moving statistics set; the output, the
    gradients of sum(y ⊙ r) and the moving statistics after one training step, then the output
    in inference."""
    import tensorflow as tf

    k = keras()
    x = np.array([((i * 7) % 11) / 11 - 0.3 for i in range(24)], dtype=np.float32).reshape(4, 1, 2, 3)
    r = np.array([((i * 5) % 13) / 13 - 0.5 for i in range(24)], dtype=np.float32).reshape(4, 1, 2, 3)
    bn = k.layers.BatchNormalization(momentum=0.99, epsilon=1e-3)
    bn.build(x.shape)
    gamma = np.array([0.5, 1.5, -1.0], dtype=np.float32)
    beta = np.array([0.1, -0.2, 0.3], dtype=np.float32)
    bn.set_weights([gamma, beta, np.array([0.1, 0.2, 0.3], np.float32), np.array([1.5, 0.5, 2.0], np.float32)])
    xv = tf.Variable(x)
    with tf.GradientTape() as tape:
        y = bn(xv, training=True)
        objective = tf.reduce_sum(y * r)
    dx, dgamma, dbeta = tape.gradient(objective, [xv, bn.gamma, bn.beta])
    show("batchnorm: training output", y)
    show("batchnorm: d/dx", dx)
    show("batchnorm: d/dgamma", dgamma)
    show("batchnorm: d/dbeta", dbeta)
    show("batchnorm: moving mean", bn.moving_mean.numpy())
    show("batchnorm: moving variance", bn.moving_variance.numpy())
    show("batchnorm: inference output", bn(x, training=False))


def dropout():
    """src/model/layers/dropout.rs: what Keras keeps of a 1 (inverted dropout) per rate."""
    k = keras()
    for rate in [0.25, 0.4]:
        y = np.array(k.layers.Dropout(rate, seed=1)(np.ones((1, 1000), np.float32), training=True))
        kept = sorted(set(y.ravel().tolist()) - {0.0})
        print(f"dropout: rate {rate}: kept values {['%.9g' % v for v in kept]}, "
              f"in evaluation {sorted(set(np.array(k.layers.Dropout(rate)(np.ones((1, 4)), training=False)).ravel().tolist()))}")


def affine():
    """src/data/transform/affine.rs, warp_matches_keras_affine_transform: a 6×5 image moved by
    one pose (20°, ×1.1, 0.7 px right, 0.4 px up, background −0.25), as
    keras.ops.image.affine_transform (bilinear, constant fill) computes it with the matrix of
    that pose about the image's centre."""
    k = keras()
    h, w = 6, 5
    img = np.array([((i * 3) % 7) / 7 - 0.3 for i in range(h * w)], dtype=np.float32).reshape(h, w)
    degrees, scale, dx, dy, bg = 20.0, 1.1, 0.7, -0.4, -0.25
    cy, cx = h / 2, w / 2
    s, c = math.sin(math.radians(degrees)), math.cos(math.radians(degrees))
    inv = 1 / scale
    # Output pixel (j, i) reads input (a0·j + a1·i + a2, b0·j + b1·i + b2).
    a2 = inv * (c * (0.5 - cx - dx) - s * (0.5 - cy - dy)) + cx - 0.5
    b2 = inv * (s * (0.5 - cx - dx) + c * (0.5 - cy - dy)) + cy - 0.5
    t = np.array([[inv * c, -inv * s, a2, inv * s, inv * c, b2, 0, 0]], dtype=np.float32)
    y = k.ops.image.affine_transform(img[None, :, :, None], t, interpolation="bilinear",
                                     fill_mode="constant", fill_value=bg, data_format="channels_last")
    show("affine: warped", np.array(y))


def elastic():
    """src/data/transform/elastic.rs, smoothing_and_resampling_match_scipy: a 6×7 field smoothed
    by σ 1.5 (scipy.ndimage.gaussian_filter, mode constant, truncate 3), and an image sampled at
    fixed positions (map_coordinates, order 1, mode grid-constant, cval −1)."""
    from scipy import ndimage

    h, w = 6, 7
    field = np.array([((i * 3) % 7) / 7 - 0.5 for i in range(h * w)]).reshape(h, w)
    show("elastic: smoothed", ndimage.gaussian_filter(field, 1.5, mode="constant", cval=0.0, truncate=3.0))
    img = np.array([((i * 5) % 9) / 9 for i in range(h * w)]).reshape(h, w)
    ys = np.array([[i + 0.3 * math.sin(i + j) - 0.5 for j in range(w)] for i in range(h)])
    xs = np.array([[j + 0.7 * math.cos(i * j) + 0.2 for j in range(w)] for i in range(h)])
    show("elastic: resampled", ndimage.map_coordinates(img, [ys, xs], order=1, mode="grid-constant", cval=-1.0))


def stats():
    """src/results/stats.rs: corrected_paired_t_matches_scipy (the Nadeau–Bengio corrected
    paired t-test over k folds) and welch_matches_scipy."""
    from scipy import stats as st

    a = np.array([99.058, 99.150, 98.983, 99.108, 99.008])
    b = np.array([98.675, 98.633, 98.750, 98.592, 98.692])
    d = a - b
    k = len(d)
    se = math.sqrt((1 / k + 1 / (k - 1)) * d.var(ddof=1))
    t = d.mean() / se
    p = 2 * st.t.sf(abs(t), k - 1)
    half = st.t.ppf(0.975, k - 1) * se
    print(f"stats: corrected paired: se {se:.7g}, t {t:.7g}, p {p:.9g}, "
          f"CI [{d.mean() - half:.6f}, {d.mean() + half:.6f}]")
    w = st.ttest_ind(a, b, equal_var=False)
    print(f"stats: Welch: t {w.statistic:.7g}, p {w.pvalue:.8g}, df {w.df:.7g}")


def onecycle():
    """src/schedule/mod.rs, one_cycle_matches_pytorch (needs torch)."""
    try:
        import torch
    except ImportError:
        print("onecycle: torch is not installed; skipped")
        return
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=20)
    rates = []
    for _ in range(20):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    show("onecycle", rates)


def crop():
    """src/data/transform/crop.rs, crop_after_padding_matches_keras: ZeroPadding2D then
    RandomCrop (one position per batch in Keras), and the position it chose."""
    k = keras()
    img = np.array([(v % 7) / 7 - 0.4 for v in range(1, 41)], dtype=np.float32).reshape(1, 4, 5, 2)
    padded = np.array(k.layers.ZeroPadding2D(2)(img))
    y = np.array(k.layers.RandomCrop(4, 5, seed=3)(padded, training=True))
    at = [(t, l) for t in range(5) for l in range(5) if np.array_equal(padded[:, t:t + 4, l:l + 5], y)]
    print(f"crop: at {at}")
    show("crop", y)


def flip():
    """src/data/transform/flip.rs, flips_match_keras: the images Keras' RandomFlip mirrored
    in a batch of 8 copies of a 3×4×2 image (pixel (i, j, ch) = 100 i + 10 j + ch)."""
    k = keras()
    img = np.array([[[100 * i + 10 * j + ch for ch in range(2)] for j in range(4)] for i in range(3)],
                   dtype=np.float32)
    for mode in ["horizontal", "vertical"]:
        y = np.array(k.layers.RandomFlip(mode, seed=5)(np.stack([img] * 8), training=True))
        changed = [i for i in range(8) if not np.array_equal(y[i], img)]
        print(f"flip {mode}: mirrored {len(changed)} of 8")
        show(f"flip {mode}", y[changed[0]])


def residual():
    """src/model/layers/residual.rs, a_projected_block_matches_keras_add: conv.rs's problem
    through Conv2D(3, 3, same) and a 1×1 Conv2D(3) projection, Add, ReLU."""
    k = keras()
    x, kernel = keras_problem()
    proj = np.array([(v % 3) / 3 - 0.3 for v in range(6)], dtype=np.float32).reshape(1, 1, 2, 3)
    bias = np.array([0.1, -0.2, 0.05], dtype=np.float32)
    inp = k.Input((5, 5, 2))
    a = k.layers.Conv2D(3, 3, padding="same", use_bias=False)
    b = k.layers.Conv2D(3, 1)
    y = k.layers.Activation("relu")(k.layers.Add()([a(inp), b(inp)]))
    model = k.Model(inp, y)
    a.set_weights([kernel])
    b.set_weights([proj, bias])
    show("residual: first 15", np.array(model(x)).ravel()[:15])
    show("residual: last 15", np.array(model(x)).ravel()[-15:])


SECTIONS = {f.__name__: f for f in [optimizers, conv, maxpool, avgpool, activations, loss, schedules,
                                     batchnorm, dropout, affine, elastic, stats, onecycle, crop, flip,
                                     residual]}

if __name__ == "__main__":
    for name in sys.argv[1:] or SECTIONS:
        SECTIONS[name]()
