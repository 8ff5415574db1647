//! Softmax + categorical cross-entropy (dfdx's log-softmax on the tape), and batch scoring.

use dfdx::prelude::*;

use super::Act;

/// One-hot targets for `labels` over `classes` classes.
pub fn one_hot(dev: &Cpu, labels: &[u8], classes: usize) -> Act {
    let mut v = vec![0.0f32; labels.len() * classes];
    for (row, &l) in v.chunks_exact_mut(classes).zip(labels) {
        row[l as usize] = 1.0;
    }
    dev.tensor_from_vec(v, (labels.len(), classes))
}

/// Mean cross-entropy of softmax(`logits`) against `labels` (one row of logits per label).
pub fn cross_entropy<T: Tape<f32, Cpu>>(logits: Act<T>, labels: &[u8]) -> Tensor<(), f32, Cpu, T> {
    smoothed_cross_entropy(logits, labels, 0.0)
}

/// Cross-entropy against targets smoothed as Keras does: (1 − ε)·one-hot + ε/classes (ε = 0:
/// the plain one-hot targets, bit for bit).
pub fn smoothed_cross_entropy<T: Tape<f32, Cpu>>(
    logits: Act<T>,
    labels: &[u8],
    smoothing: f32,
) -> Tensor<(), f32, Cpu, T> {
    let classes = logits.shape().1;
    let mut targets = one_hot(logits.device(), labels, classes);
    if smoothing != 0.0 {
        let t: Vec<f32> = targets
            .as_vec()
            .iter()
            .map(|v| v * (1.0 - smoothing) + smoothing / classes as f32)
            .collect();
        targets = logits.device().tensor_from_vec(t, (labels.len(), classes));
    }
    cross_entropy_with_logits_loss(logits, targets)
}

/// Number of rows of `logits` (row-major, one row per label) whose arg-max is the label.
pub fn count_correct(logits: &[f32], labels: &[u8]) -> usize {
    let classes = logits.len() / labels.len().max(1);
    logits
        .chunks_exact(classes.max(1))
        .zip(labels)
        .filter(|(row, &l)| argmax(row) == l as usize)
        .count()
}

/// Index of the largest value (the first, on ties).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

/// −log softmax(row)[label] in f64 (max subtracted for stability): one sample's loss.
pub fn sample_cross_entropy(row: &[f32], label: usize) -> f64 {
    let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = m + row.iter().map(|v| (*v as f64 - m).exp()).sum::<f64>().ln();
    lse - row[label] as f64
}

/// Softmax of one row of logits.
pub fn softmax(row: &[f32]) -> Vec<f32> {
    let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = row.iter().map(|v| (v - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

#[cfg(test)]
// Reference values are pasted as the reference library printed them.
#[allow(clippy::excessive_precision)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_matches_hand_computation_and_its_gradient_is_softmax_minus_target() {
        let dev = Cpu::default();
        let logits: Vec<f32> = (0..20).map(|i| (i as f32 * 0.3).sin()).collect();
        let labels = [3u8, 7];
        let x: Act = dev.tensor_from_vec(logits.clone(), (2, 10));
        let loss = cross_entropy(x.clone().leaky_traced(), &labels);
        let want: f32 = logits
            .chunks(10)
            .zip(&labels)
            .map(|(r, &l)| -softmax(r)[l as usize].ln())
            .sum::<f32>()
            / 2.0;
        assert!((loss.array() - want).abs() < 1e-5);
        let g = loss.backward().get(&x).as_vec();
        for (b, r) in logits.chunks(10).enumerate() {
            let p = softmax(r);
            for k in 0..10 {
                let t = if k == labels[b] as usize { 1.0 } else { 0.0 };
                assert!((g[b * 10 + k] - (p[k] - t) / 2.0).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn label_smoothing_matches_keras() {
        // keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=ε) on these
        // logits and one-hot targets (classes 2 and 0), and its gradient by tf.GradientTape,
        // Keras 3.15.1.
        let dev = Cpu::default();
        let logits = vec![0.2f32, -1.0, 0.5, 1.5, 0.3, -0.7];
        let cases = [
            (
                0.0,
                0.509981095790863,
                [
                    0.18860430,
                    0.05680653,
                    -0.24541083,
                    -0.14589167,
                    0.10665537,
                    0.03923632,
                ],
            ),
            (
                0.1,
                0.5966477394104004,
                [
                    0.17193763,
                    0.04013986,
                    -0.21207750,
                    -0.11255834,
                    0.08998870,
                    0.02256965,
                ],
            ),
        ];
        for (eps, want_loss, want_grad) in cases {
            let x: Act = dev.tensor_from_vec(logits.clone(), (2, 3));
            let loss = smoothed_cross_entropy(x.clone().leaky_traced(), &[2, 0], eps);
            assert!((loss.array() - want_loss).abs() < 1e-6, "{}", loss.array());
            let g = loss.backward().get(&x).as_vec();
            for (a, b) in g.iter().zip(want_grad) {
                assert!((a - b).abs() < 1e-6, "{g:?}");
            }
        }
    }

    #[test]
    fn argmax_takes_the_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(
            count_correct(&[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], &[1]),
            1
        );
    }
}
