//! `adam`: Adam as Keras computes it (defaults lr 0.001, β₁ 0.9, β₂ 0.999, ε 1e-7):
//! m += (g − m)(1 − β₁); v += (g² − v)(1 − β₂); w −= lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ) · m/(√v + ε).
//! `weight_decay` (default 0) is Keras' decoupled decay, w −= w·wd·lr before the update.

use serde::{Deserialize, Serialize};

use super::tiny::{self, BLOCK};
use super::{Optimizer, OptimizerKind};

/// Adam settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamSpec {
    /// Step size.
    pub learning_rate: f32,
    /// Decay of the gradient's running mean.
    pub beta_1: f32,
    /// Decay of the squared gradient's running mean.
    pub beta_2: f32,
    /// Added to √v.
    pub epsilon: f32,
    /// Decoupled weight decay.
    #[serde(skip_serializing_if = "super::is_zero")]
    pub weight_decay: f32,
}

impl Default for AdamSpec {
    fn default() -> Self {
        AdamSpec {
            learning_rate: 0.001,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
            weight_decay: 0.0,
        }
    }
}

impl AdamSpec {
    /// Checks the settings.
    pub(crate) fn check(&self) -> Result<(), String> {
        for (name, b) in [("beta_1", self.beta_1), ("beta_2", self.beta_2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(format!("{name} is {b}, expected 0 <= {name} < 1"));
            }
        }
        if self.epsilon <= 0.0 {
            return Err(format!("epsilon is {}, expected > 0", self.epsilon));
        }
        super::check_decay(self.weight_decay)
    }

    /// The optimizer for these settings.
    pub(crate) fn optimizer(&self) -> Adam {
        Adam {
            spec: self.clone(),
            m: Vec::new(),
            v: Vec::new(),
            steps: Vec::new(),
        }
    }
}

impl OptimizerKind for AdamSpec {
    fn learning_rate(&self) -> f32 {
        self.learning_rate
    }

    fn learning_rate_mut(&mut self) -> &mut f32 {
        &mut self.learning_rate
    }

    fn validate(&self) -> Result<(), String> {
        self.check()
    }

    fn describe(&self) -> String {
        format!("Adam lr {}", self.learning_rate) + &super::describe_decay(self.weight_decay)
    }

    fn build(&self) -> Box<dyn Optimizer> {
        Box::new(self.optimizer())
    }
}

/// Adam's state: both running means and the step count of each parameter.
pub struct Adam {
    spec: AdamSpec,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    steps: Vec<u32>,
}

impl Optimizer for Adam {
    fn state(&self) -> super::OptimizerState {
        super::OptimizerState {
            slots: vec![("m".into(), self.m.clone()), ("v".into(), self.v.clone())],
            counters: vec![(
                "steps".into(),
                self.steps.iter().map(|&s| s as u64).collect(),
            )],
        }
    }

    fn restore(&mut self, mut state: super::OptimizerState) -> Result<(), String> {
        self.m = state.take_slot("m")?;
        self.v = state.take_slot("v")?;
        let steps = state.take_counters("steps")?;
        self.steps = steps
            .iter()
            .map(|&s| u32::try_from(s).map_err(|_| format!("step count {s} out of range")))
            .collect::<Result<_, _>>()?;
        state.finish()
    }

    fn update(&mut self, index: usize, w: &mut [f32], g: &[f32], lr: f32) {
        let AdamSpec {
            beta_1: b1,
            beta_2: b2,
            epsilon: eps,
            weight_decay,
            ..
        } = self.spec;
        if self.steps.len() <= index {
            self.steps.resize(index + 1, 0);
        }
        self.steps[index] += 1;
        let t = self.steps[index] as f32;
        let alpha = lr * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t));
        super::decay(w, weight_decay, lr);
        let m = super::slot(&mut self.m, index, w.len());
        let v = super::slot(&mut self.v, index, w.len());
        let k = Consts {
            c1: 1.0 - b1,
            c2: 1.0 - b2,
            alpha,
            eps,
            big_w: tiny::swamping(alpha, eps),
        };
        tiny::by_chunks(
            [w, m, v],
            g,
            |[_, m, _]| tiny::any_subnormal(m),
            |[w, m, v], g| {
                for (((w, m), v), g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                    plain(w, m, v, *g, &k);
                }
            },
            |[w, m, v], g| exact_block(w, m, v, g, &k),
        );
    }
}

/// What every element's update uses: 1 − β₁, 1 − β₂, the step's α, ε, and the smallest
/// weight (bits of its magnitude) an update from a subnormal first moment leaves as it is.
struct Consts {
    c1: f32,
    c2: f32,
    alpha: f32,
    eps: f32,
    big_w: u32,
}

/// Adam's update of one element as written.
#[inline(always)]
fn plain(w: &mut f32, m: &mut f32, v: &mut f32, g: f32, k: &Consts) {
    *m += (g - *m) * k.c1;
    *v += (g * g - *v) * k.c2;
    *w -= k.alpha * *m / (v.sqrt() + k.eps);
}

/// The same update of one block with subnormal first moments, bit for bit, without handing
/// the hardware a subnormal m (see `tiny`; a dead unit's zero gradients decay m by 0.9 per
/// step into the subnormals, where it stays). Every element is computed by the plain formula
/// from m with subnormals replaced by zero, which is exact for a normal m and for a subnormal
/// one next to a big gradient. A subnormal m with a zero gradient becomes m − (1 − β₁)·m in
/// integer arithmetic, and its step α·m/(√v + ε) is too small to move a weight of at least
/// `big_w`. Writes the block and returns `true`, or returns `false` and writes nothing when
/// some element is neither, left to the hardware.
fn exact_block(
    w: &mut [f32; BLOCK],
    m: &mut [f32; BLOCK],
    v: &mut [f32; BLOCK],
    g: &[f32; BLOCK],
    k: &Consts,
) -> bool {
    let (mut nw, mut nm, mut nv) = (*w, *m, *v);
    let safe = tiny::without_subnormals(m);
    let mut inexact = false;
    for i in 0..BLOCK {
        let m1 = safe[i] + (g[i] - safe[i]) * k.c1;
        nv[i] = v[i] + (g[i] * g[i] - v[i]) * k.c2;
        let w1 = w[i] - k.alpha * m1 / (nv[i].sqrt() + k.eps);
        let sub = tiny::is_subnormal(m[i]);
        let dead = g[i].to_bits() << 1 == 0;
        // m + (0 − m)·c1 = ±(|m| − |c1·m|) in units of 2⁻¹⁴⁹ (c1 ≤ 1); an exact 0 is +0.
        let mb = m[i].to_bits();
        let d = (mb & 0x7fff_ffff) - (tiny::scale(k.c1, m[i]).to_bits() & 0x7fff_ffff);
        let tm = f32::from_bits(if d == 0 { 0 } else { (mb & 0x8000_0000) | d });
        let w_big = tiny::at_least(w[i], k.big_w);
        inexact |= sub
            & if dead {
                !w_big
            } else {
                !(tiny::is_big(g[i]) & tiny::is_big(m1))
            };
        nm[i] = if sub & dead { tm } else { m1 };
        nw[i] = if sub & dead { w[i] } else { w1 };
    }
    if !inexact {
        (*w, *m, *v) = (nw, nm, nv);
    }
    !inexact
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnormal_first_moments_update_bit_for_bit_as_plain_arithmetic() {
        // Dead units: zero gradients decay m into the subnormals, where the update takes
        // `tiny`'s path; it must give the plain formula's bits, for every kind of element.
        let mut rng = crate::rng::Rng::new(4, 0);
        let n = 16 * 20 + 5;
        let spec = AdamSpec::default();
        let mut opt = spec.optimizer();
        let mut w: Vec<f32> = (0..n).map(|_| rng.uniform(0.1)).collect();
        w[3] = 1e-30; // a weight too small to be swamped: its block goes to the hardware
        let (mut want_w, mut want_m, mut want_v) = (w.clone(), vec![0f32; n], vec![0f32; n]);
        let (b1, b2, eps, lr) = (spec.beta_1, spec.beta_2, spec.epsilon, spec.learning_rate);
        let mut subnormal_seen = 0;
        for step in 1..=1200 {
            let g = tiny::test_gradients(&mut rng, n, step, 1e-30);
            opt.update(0, &mut w, &g, lr);
            let t = step as f32;
            let alpha = lr * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t));
            for i in 0..n {
                want_m[i] += (g[i] - want_m[i]) * (1.0 - b1);
                want_v[i] += (g[i] * g[i] - want_v[i]) * (1.0 - b2);
                want_w[i] -= alpha * want_m[i] / (want_v[i].sqrt() + eps);
            }
            assert_eq!(tiny::bits(&w), tiny::bits(&want_w), "step {step}");
            assert_eq!(tiny::bits(&opt.m[0]), tiny::bits(&want_m), "step {step}");
            assert_eq!(tiny::bits(&opt.v[0]), tiny::bits(&want_v), "step {step}");
            subnormal_seen += want_m.iter().filter(|&&x| tiny::is_subnormal(x)).count();
        }
        assert!(subnormal_seen > n * 50, "{subnormal_seen}");
    }
}
