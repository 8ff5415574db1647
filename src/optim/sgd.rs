//! `sgd`: stochastic gradient descent with momentum, as Keras: v = m·v − lr·g; w += v, or with
//! `nesterov = true`, w += m·v − lr·g (the new v).

use serde::{Deserialize, Serialize};

use super::tiny::{self, BLOCK};
use super::{Optimizer, OptimizerKind};

/// `[train.optimizer.sgd]` (or the flat `optimizer = "sgd"`, `learning_rate`, `momentum`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SgdSpec {
    /// Step size.
    pub learning_rate: f32,
    /// Momentum coefficient (0 for plain SGD).
    pub momentum: f32,
    /// Nesterov momentum (Keras' formulation).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub nesterov: bool,
    /// Decoupled weight decay: w −= w·weight_decay·lr before each update (Keras).
    #[serde(skip_serializing_if = "super::is_zero")]
    pub weight_decay: f32,
}

impl Default for SgdSpec {
    /// The seed tutorial's settings.
    fn default() -> Self {
        SgdSpec {
            learning_rate: 0.01,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

impl OptimizerKind for SgdSpec {
    fn learning_rate(&self) -> f32 {
        self.learning_rate
    }

    fn learning_rate_mut(&mut self) -> &mut f32 {
        &mut self.learning_rate
    }

    fn momentum_mut(&mut self) -> Option<&mut f32> {
        Some(&mut self.momentum)
    }

    fn flat(&self) -> Option<(f32, f32)> {
        (!self.nesterov && self.weight_decay == 0.0).then_some((self.learning_rate, self.momentum))
    }

    fn validate(&self) -> Result<(), String> {
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(format!(
                "momentum is {}, expected 0 <= momentum < 1",
                self.momentum
            ));
        }
        super::check_decay(self.weight_decay)
    }

    fn describe(&self) -> String {
        let mut d = format!("SGD lr {} momentum {}", self.learning_rate, self.momentum);
        if self.nesterov {
            d += " nesterov";
        }
        d + &super::describe_decay(self.weight_decay)
    }

    fn build(&self) -> Box<dyn Optimizer> {
        Box::new(Sgd {
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
            velocity: Vec::new(),
        })
    }
}

/// SGD at work: one velocity buffer per parameter.
pub struct Sgd {
    momentum: f32,
    nesterov: bool,
    weight_decay: f32,
    velocity: Vec<Vec<f32>>,
}

impl Optimizer for Sgd {
    fn state(&self) -> super::OptimizerState {
        super::OptimizerState {
            slots: vec![("velocity".into(), self.velocity.clone())],
            counters: Vec::new(),
        }
    }

    fn restore(&mut self, mut state: super::OptimizerState) -> Result<(), String> {
        self.velocity = state.take_slot("velocity")?;
        state.finish()
    }

    fn update(&mut self, index: usize, w: &mut [f32], g: &[f32], lr: f32) {
        if self.velocity.len() <= index {
            self.velocity.resize_with(index + 1, Vec::new);
        }
        let v = &mut self.velocity[index];
        if v.len() != w.len() {
            *v = vec![0.0; w.len()];
        }
        super::decay(w, self.weight_decay, lr);
        let (m, nesterov) = (self.momentum, self.nesterov);
        let exact = tiny::factor_ok(m);
        tiny::by_chunks(
            [w, v],
            g,
            |[_, v]| exact && tiny::any_subnormal(v),
            |[w, v], g| plain(w, v, g, m, lr, nesterov),
            |[w, v], g| {
                if nesterov {
                    exact_block::<true>(w, v, g, m, lr)
                } else {
                    exact_block::<false>(w, v, g, m, lr)
                }
            },
        );
    }
}

/// The update as written: v = m·v − lr·g; w += v (or w += m·v − lr·g, Nesterov).
#[inline(always)]
fn plain(w: &mut [f32], v: &mut [f32], g: &[f32], m: f32, lr: f32, nesterov: bool) {
    if nesterov {
        for ((w, v), g) in w.iter_mut().zip(v.iter_mut()).zip(g) {
            *v = m * *v - lr * g;
            *w += m * *v - lr * g;
        }
    } else {
        for ((w, v), g) in w.iter_mut().zip(v.iter_mut()).zip(g) {
            *v = m * *v - lr * g;
            *w += *v;
        }
    }
}

/// The same update of one block with subnormal velocities, bit for bit, without handing the
/// hardware a subnormal operand (see `tiny`). Every element is computed by the plain formula
/// from its velocity with subnormals replaced by zero, which is exact for a normal velocity,
/// and for a subnormal one when lr·g is big (it swamps m·v). A subnormal velocity whose
/// gradient is zero (a dead unit's) decays by `tiny::scale`, and the step (that velocity, or
/// m times it with Nesterov) is zero or subnormal: it leaves a big weight as it is.
/// Writes the block and returns `true`, or returns `false` and writes nothing when some
/// element is neither (a gradient or weight near the subnormals), left to the hardware.
fn exact_block<const NESTEROV: bool>(
    w: &mut [f32; BLOCK],
    v: &mut [f32; BLOCK],
    g: &[f32; BLOCK],
    m: f32,
    lr: f32,
) -> bool {
    let (mut nw, mut nv) = (*w, *v);
    let safe = tiny::without_subnormals(v);
    let mut inexact = false;
    for i in 0..BLOCK {
        let lg = lr * g[i];
        let vel = m * safe[i] - lg;
        let step = if NESTEROV { m * vel - lg } else { vel };
        let soft = tiny::is_subnormal(v[i]) & !tiny::is_big(lg);
        // m·v − lr·g for lr·g = ±0 is m·v; of two zeros it is −0 only for (−0) − (+0).
        let p = tiny::scale(m, v[i]).to_bits();
        let tv = f32::from_bits(if p << 1 == 0 { p & !lg.to_bits() } else { p });
        inexact |= soft & ((lg.to_bits() << 1 != 0) | !tiny::is_big(w[i]));
        nv[i] = if soft { tv } else { vel };
        nw[i] = if soft { w[i] } else { w[i] + step };
    }
    if !inexact {
        (*w, *v) = (nw, nv);
    }
    !inexact
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnormal_velocities_update_bit_for_bit_as_plain_arithmetic() {
        // Dead units: zero gradients decay the velocity into the subnormals, where the update
        // takes `tiny`'s path; it must give the plain loop's bits, for every kind of element.
        let mut rng = crate::rng::Rng::new(3, 0);
        let n = 16 * 40 + 5;
        for nesterov in [false, true] {
            let mut opt = Sgd {
                momentum: 0.9,
                nesterov,
                weight_decay: 0.0,
                velocity: Vec::new(),
            };
            let mut w: Vec<f32> = (0..n).map(|_| rng.uniform(0.1)).collect();
            w[7] = f32::from_bits(5);
            w[8] = 1e-33;
            let mut want_w = w.clone();
            let mut want_v = vec![0f32; n];
            for step in 0..1000 {
                let g = tiny::test_gradients(&mut rng, n, step, 1e-34);
                opt.update(0, &mut w, &g, 0.01);
                plain(&mut want_w, &mut want_v, &g, 0.9, 0.01, nesterov);
                assert_eq!(tiny::bits(&w), tiny::bits(&want_w), "step {step}");
                assert_eq!(tiny::bits(&opt.velocity[0]), tiny::bits(&want_v), "step {step}");
            }
            let v = &want_v;
            assert!(v.iter().filter(|&&x| tiny::is_subnormal(x)).count() > n / 4, "{v:?}");
        }
    }

    #[test]
    fn a_dead_units_block_takes_the_exact_path_and_an_odd_one_is_left_to_the_hardware() {
        let sub = |k: u32| f32::from_bits(k);
        // Momentum 0.3 takes the smallest subnormals to zeros of either sign.
        for (nesterov, m) in [(false, 0.9), (true, 0.9), (false, 0.3), (true, 0.3)] {
            // Subnormal velocities with zero gradients (either sign), normal ones with any.
            let mut w = [0.05f32; BLOCK];
            let mut v = [0.0f32; BLOCK];
            let mut g = [0.0f32; BLOCK];
            for i in 0..BLOCK {
                w[i] *= if i % 2 == 0 { 1.0 } else { -(i as f32) };
                v[i] = match i % 4 {
                    0 => sub(1),
                    1 if i % 8 == 1 => -sub(0x7f_ffff),
                    1 => -sub(1),
                    2 => -sub(3),
                    _ => 1e-3 * i as f32,
                };
                g[i] = if i % 4 == 3 { 0.5 } else if i % 3 == 2 { -0.0 } else { 0.0 };
            }
            g[4] = 2.0; // a subnormal velocity swamped by its gradient
            let (mut want_w, mut want_v) = (w, v);
            plain(&mut want_w, &mut want_v, &g, m, 0.01, nesterov);
            let (mut got_w, mut got_v) = (w, v);
            let taken = if nesterov {
                exact_block::<true>(&mut got_w, &mut got_v, &g, m, 0.01)
            } else {
                exact_block::<false>(&mut got_w, &mut got_v, &g, m, 0.01)
            };
            assert!(taken);
            assert_eq!(tiny::bits(&got_v), tiny::bits(&want_v));
            assert_eq!(tiny::bits(&got_w), tiny::bits(&want_w));
            assert!(got_v.iter().any(|&x| tiny::is_subnormal(x)));
            if m < 0.5 {
                let signs = |neg: bool| got_v.iter().any(|&x| x == 0.0 && x.is_sign_negative() == neg);
                assert!(signs(true) && signs(false), "{got_v:?}");
            }
            // A gradient just above the subnormals next to a subnormal velocity: not taken,
            // nothing written.
            g[0] = 1e-35;
            let (mut odd_w, mut odd_v) = (w, v);
            assert!(!exact_block::<false>(&mut odd_w, &mut odd_v, &g, m, 0.01));
            assert_eq!((tiny::bits(&odd_w), tiny::bits(&odd_v)), (tiny::bits(&w), tiny::bits(&v)));
        }
    }

    #[test]
    fn momentum_steps_match_keras_update_rule() {
        // Keras SGD(learning_rate=0.1, momentum=0.9) on w = [1, -2] with the gradients
        // [0.5, 0.5] then [1, -1]: v1 = -0.1·g1 = [-0.05, -0.05], w1 = [0.95, -2.05];
        // v2 = 0.9·v1 - 0.1·g2 = [-0.145, 0.055], w2 = [0.805, -1.995].
        let mut opt = SgdSpec {
            learning_rate: 0.1,
            momentum: 0.9,
            ..SgdSpec::default()
        }
        .build();
        let mut w = vec![1.0f32, -2.0];
        opt.update(0, &mut w, &[0.5, 0.5], 0.1);
        assert_eq!(w, vec![0.95, -2.05]);
        opt.update(0, &mut w, &[1.0, -1.0], 0.1);
        assert!(
            (w[0] - 0.805).abs() < 1e-6 && (w[1] + 1.995).abs() < 1e-6,
            "{w:?}"
        );
        // A second parameter has state of its own.
        let mut u = vec![0.0f32];
        opt.update(1, &mut u, &[1.0], 0.1);
        assert_eq!(u, vec![-0.1]);
    }
}
