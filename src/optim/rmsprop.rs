//! `rmsprop`: RMSprop as Keras computes it (defaults lr 0.001, ρ 0.9, ε 1e-7, momentum 0):
//! v = ρ·v + (1 − ρ)·g²; Δ = lr·g/√(v + ε); w −= Δ, or with momentum, s = momentum·s + Δ and
//! w −= s. `weight_decay` as in `adam`.

use serde::{Deserialize, Serialize};

use super::tiny::{self, BLOCK};
use super::{Optimizer, OptimizerKind};

/// RMSprop settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RmsPropSpec {
    /// Step size.
    pub learning_rate: f32,
    /// Decay of the squared gradient's running mean.
    pub rho: f32,
    /// Momentum of the steps (0: none).
    pub momentum: f32,
    /// Added to v under the root.
    pub epsilon: f32,
    /// Decoupled weight decay.
    #[serde(skip_serializing_if = "super::is_zero")]
    pub weight_decay: f32,
}

impl Default for RmsPropSpec {
    fn default() -> Self {
        RmsPropSpec {
            learning_rate: 0.001,
            rho: 0.9,
            momentum: 0.0,
            epsilon: 1e-7,
            weight_decay: 0.0,
        }
    }
}

impl OptimizerKind for RmsPropSpec {
    fn learning_rate(&self) -> f32 {
        self.learning_rate
    }

    fn learning_rate_mut(&mut self) -> &mut f32 {
        &mut self.learning_rate
    }

    fn momentum_mut(&mut self) -> Option<&mut f32> {
        Some(&mut self.momentum)
    }

    fn validate(&self) -> Result<(), String> {
        for (name, b) in [("rho", self.rho), ("momentum", self.momentum)] {
            if !(0.0..1.0).contains(&b) {
                return Err(format!("{name} is {b}, expected 0 <= {name} < 1"));
            }
        }
        if self.epsilon <= 0.0 {
            return Err(format!("epsilon is {}, expected > 0", self.epsilon));
        }
        super::check_decay(self.weight_decay)
    }

    fn describe(&self) -> String {
        let mut d = format!("RMSprop lr {} rho {}", self.learning_rate, self.rho);
        if self.momentum != 0.0 {
            d += &format!(" momentum {}", self.momentum);
        }
        d + &super::describe_decay(self.weight_decay)
    }

    fn build(&self) -> Box<dyn Optimizer> {
        Box::new(RmsProp {
            spec: self.clone(),
            v: Vec::new(),
            s: Vec::new(),
        })
    }
}

/// RMSprop's state: the running mean of g² and the momentum of each parameter.
pub struct RmsProp {
    spec: RmsPropSpec,
    v: Vec<Vec<f32>>,
    s: Vec<Vec<f32>>,
}

impl Optimizer for RmsProp {
    fn state(&self) -> super::OptimizerState {
        super::OptimizerState {
            slots: vec![("v".into(), self.v.clone()), ("s".into(), self.s.clone())],
            counters: Vec::new(),
        }
    }

    fn restore(&mut self, mut state: super::OptimizerState) -> Result<(), String> {
        self.v = state.take_slot("v")?;
        self.s = state.take_slot("s")?;
        state.finish()
    }

    fn update(&mut self, index: usize, w: &mut [f32], g: &[f32], lr: f32) {
        let RmsPropSpec {
            rho,
            momentum,
            epsilon,
            weight_decay,
            ..
        } = self.spec;
        super::decay(w, weight_decay, lr);
        let v = super::slot(&mut self.v, index, w.len());
        let k = Consts {
            rho,
            c: 1.0 - rho,
            momentum,
            epsilon,
            lr,
            exact: tiny::factor_ok(rho) && tiny::factor_ok(momentum) && tiny::is_big(epsilon),
        };
        // Without momentum s stays zero (and is never read by the plain loop).
        let s = super::slot(&mut self.s, index, w.len());
        tiny::by_chunks(
            [w, v, s],
            g,
            |[_, v, s]| k.exact && k.subnormal(v, s),
            |[w, v, s], g| {
                for (((w, v), s), g) in w.iter_mut().zip(v.iter_mut()).zip(s.iter_mut()).zip(g) {
                    plain(w, v, s, *g, &k);
                }
            },
            |[w, v, s], g| {
                if k.momentum != 0.0 {
                    exact_block::<true>(w, v, s, g, &k)
                } else {
                    exact_block::<false>(w, v, s, g, &k)
                }
            },
        );
    }
}

/// What every element's update uses, and whether `exact_block` may be used with it.
struct Consts {
    rho: f32,
    c: f32,
    momentum: f32,
    epsilon: f32,
    lr: f32,
    exact: bool,
}

impl Consts {
    /// Whether this state holds a subnormal (s counts only with momentum).
    #[inline(always)]
    fn subnormal(&self, v: &[f32], s: &[f32]) -> bool {
        tiny::any_subnormal(v) || (self.momentum != 0.0 && tiny::any_subnormal(s))
    }
}

/// RMSprop's update of one element as written.
#[inline(always)]
fn plain(w: &mut f32, v: &mut f32, s: &mut f32, g: f32, k: &Consts) {
    *v = k.rho * *v + k.c * g * g;
    if k.momentum != 0.0 {
        *s = k.momentum * *s + k.lr * g / (*v + k.epsilon).sqrt();
        *w -= *s;
    } else {
        *w -= k.lr * g / (*v + k.epsilon).sqrt();
    }
}

/// The same update of one block with subnormal state, bit for bit, without handing the
/// hardware a subnormal (see `tiny`; a dead unit's zero gradients decay v by ρ, and s by the
/// momentum, into the subnormals, where they stay). Every element is computed by the plain
/// formula from v and s with subnormals replaced by zero, which is exact for normal ones and
/// for a subnormal one next to a big term (for v, (1 − ρ)·g²; for s, the step). A subnormal
/// v with a zero gradient becomes ρ·v by `tiny::scale` (its step is ±0 either way, ε being
/// big); a subnormal s next to a zero step becomes momentum·s and leaves a big weight as it
/// is. Writes the block and returns `true`, or returns `false` and writes nothing when some
/// element is none of these, left to the hardware.
fn exact_block<const MOMENTUM: bool>(
    w: &mut [f32; BLOCK],
    v: &mut [f32; BLOCK],
    s: &mut [f32; BLOCK],
    g: &[f32; BLOCK],
    k: &Consts,
) -> bool {
    let (mut nw, mut nv, mut ns) = (*w, *v, *s);
    let (sv, ss) = (tiny::without_subnormals(v), tiny::without_subnormals(s));
    let mut inexact = false;
    for i in 0..BLOCK {
        let x = k.c * g[i] * g[i];
        let v1 = k.rho * sv[i] + x;
        let q = k.lr * g[i] / (v1 + k.epsilon).sqrt();
        let s1 = k.momentum * ss[i] + q;
        let w1 = w[i] - if MOMENTUM { s1 } else { q };
        // v: ρ·v + (+0) is ρ·v, or +0 when that is a zero.
        let v_sub = tiny::is_subnormal(v[i]);
        let dead = g[i].to_bits() << 1 == 0;
        let p = tiny::scale(k.rho, v[i]).to_bits();
        let tv = f32::from_bits(if p << 1 == 0 { 0 } else { p });
        inexact |= v_sub & !dead & !tiny::is_big(x);
        nv[i] = if v_sub & dead { tv } else { v1 };
        if MOMENTUM {
            // s: momentum·s + (±0); of two zeros −0 only for (−0) + (−0).
            let s_sub = tiny::is_subnormal(s[i]);
            let q_zero = q.to_bits() << 1 == 0;
            let p = tiny::scale(k.momentum, s[i]).to_bits();
            let ts = f32::from_bits(if p << 1 == 0 { p & q.to_bits() } else { p });
            inexact |= s_sub & !(q_zero & tiny::is_big(w[i]) | tiny::is_big(q));
            ns[i] = if s_sub & q_zero { ts } else { s1 };
            nw[i] = if s_sub & q_zero { w[i] } else { w1 };
        } else {
            nw[i] = w1;
        }
    }
    if !inexact {
        (*w, *v, *s) = (nw, nv, ns);
    }
    !inexact
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnormal_state_updates_bit_for_bit_as_plain_arithmetic() {
        // Dead units: zero gradients decay v (and s) into the subnormals, where the update
        // takes `tiny`'s path; it must give the plain formula's bits, for every kind of
        // element, with and without momentum.
        for momentum in [0.0f32, 0.9] {
            let mut rng = crate::rng::Rng::new(5, 0);
            let n = 16 * 20 + 5;
            let spec = RmsPropSpec {
                momentum,
                ..RmsPropSpec::default()
            };
            let mut opt = RmsProp {
                spec: spec.clone(),
                v: Vec::new(),
                s: Vec::new(),
            };
            let mut w: Vec<f32> = (0..n).map(|_| rng.uniform(0.1)).collect();
            w[3] = 1e-35; // too small to be swamped: its block goes to the hardware
            let mut want = (w.clone(), vec![0f32; n], vec![0f32; n]);
            let (rho, eps, lr) = (spec.rho, spec.epsilon, spec.learning_rate);
            let mut subnormal_seen = 0;
            for step in 1..=1200 {
                let g = tiny::test_gradients(&mut rng, n, step, 1e-20);
                opt.update(0, &mut w, &g, lr);
                let (ww, wv, ws) = &mut want;
                for i in 0..n {
                    wv[i] = rho * wv[i] + (1.0 - rho) * g[i] * g[i];
                    if momentum == 0.0 {
                        ww[i] -= lr * g[i] / (wv[i] + eps).sqrt();
                    } else {
                        ws[i] = momentum * ws[i] + lr * g[i] / (wv[i] + eps).sqrt();
                        ww[i] -= ws[i];
                    }
                }
                assert_eq!(tiny::bits(&w), tiny::bits(ww), "step {step}");
                assert_eq!(tiny::bits(&opt.v[0]), tiny::bits(wv), "step {step}");
                if momentum != 0.0 {
                    assert_eq!(tiny::bits(&opt.s[0]), tiny::bits(ws), "step {step}");
                }
                subnormal_seen += wv.iter().filter(|&&x| tiny::is_subnormal(x)).count();
            }
            assert!(subnormal_seen > n * 50, "{subnormal_seen}");
        }
    }
}
