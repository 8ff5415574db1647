//! `dropout = { rate }`: inverted dropout, as Keras' Dropout. In training each value is zeroed
//! with probability `rate` and the rest are scaled by 1/(1 − rate), so evaluation (which passes
//! values through untouched) needs no rescaling. The mask comes from the training step's seeded
//! stream (experiment seed, fold, epoch), so a rerun draws the same masks.

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::layer::{Forward, Layer, LayerIo, LayerSpec, Mode, Place, Shape, StoredArray};
use crate::model::{data_of, par, put_grad, take_grad, Act, Param};
use crate::rng::Rng;

/// Dropout settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropoutSpec {
    /// Fraction of values zeroed in training, 0 <= rate < 1.
    pub rate: f32,
}

impl LayerSpec for DropoutSpec {
    fn keras_name(&self) -> &'static str {
        "dropout"
    }

    fn output_shape(&self, input: Shape, place: Place) -> Result<Shape, String> {
        if !(0.0..1.0).contains(&self.rate) {
            return Err(format!("rate is {}, expected 0 <= rate < 1", self.rate));
        }
        if place.last {
            return Err("dropout cannot be the last layer (the logits come last)".into());
        }
        Ok(input)
    }

    fn param_count(&self, _input: Shape) -> usize {
        0
    }

    /// One random draw and two passes over memory per value.
    fn cost(&self, _input: Shape, output: Shape) -> f64 {
        8.0 * output.len() as f64
    }

    fn describe(&self) -> String {
        format!("dropout {}", self.rate)
    }

    fn build(&self, _io: &LayerIo, _dev: &Cpu, _rng: &mut Rng) -> Box<dyn Layer> {
        Box::new(Dropout { rate: self.rate })
    }
}

/// A dropout layer.
#[derive(Debug, Clone)]
pub struct Dropout {
    /// Fraction zeroed in training.
    pub rate: f32,
}

impl Forward for Dropout {
    fn forward<T: Tape<f32, Cpu> + 'static>(&mut self, x: Act<T>, mode: &mut Mode) -> Act<T> {
        let rng = match mode {
            Mode::Train(rng) if self.rate > 0.0 => rng,
            _ => return x,
        };
        let (x, mut tape) = x.split_tape();
        let shape = *x.shape();
        let mut y = data_of(&x);
        let mask = draw_and_apply(&mut y, self.rate, rng);
        let out_t = x.device().tensor_from_vec(y, shape);
        if T::OWNS_TAPE {
            let (xg, yg) = (x.ghost(), out_t.ghost());
            tape.add_backward_op(move |grads| {
                let gy = take_grad!(grads, yg);
                for ((g, d), m) in grads.get_or_alloc_mut(&xg)?.iter_mut().zip(&gy).zip(&mask) {
                    *g += d * m;
                }
                put_grad!(grads, yg, gy);
                Ok(())
            });
        }
        out_t.put_tape(tape)
    }
}

/// Multiplies each value of `y` by its mask value — 0 with probability `rate` (the stream's
/// next draw below `rate`), else 1/(1 − rate) — and returns the mask, `rng` moved past the
/// draws. A long `y` is cut into pieces for the threads, each drawing from where the stream
/// is at its first value ([`Rng::advance`]): the same numbers as one thread drawing them in
/// order, so the same masks on any number of threads.
fn draw_and_apply(y: &mut [f32], rate: f32, rng: &mut Rng) -> Vec<f32> {
    let n = y.len();
    let keep = 1.0 / (1.0 - rate);
    let pieces = par::row_ranges(n, n);
    let start = &rng.clone();
    let mut mask: Vec<f32> = Vec::with_capacity(n);
    par::each_mut2(y, 1, &mut mask.spare_capacity_mut()[..n], 1, &pieces, move |r, y, m| {
        let mut draws = start.clone();
        draws.advance(r.start as u64);
        // Without a branch, which the draws would mispredict at random: keep × 1 or keep × 0
        // (+0, as the select it replaces gave).
        for m in m.iter_mut() {
            m.write(keep * (draws.next_f32() >= rate) as u32 as f32);
        }
        // SAFETY: every value of `m` was just written.
        let m = unsafe { par::assume_init(m) };
        for (v, m) in y.iter_mut().zip(m.iter()) {
            *v *= m;
        }
    });
    // SAFETY: the pieces cover 0..n, and each wrote every value of its part of the mask.
    unsafe { mask.set_len(n) };
    rng.advance(n as u64);
    mask
}

impl Layer for Dropout {
    fn params(&mut self) -> Vec<&mut Param> {
        Vec::new()
    }

    fn arrays(&mut self) -> Vec<StoredArray<'_>> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gradcheck::{check, random};

    #[test]
    fn drops_about_rate_scales_the_rest_and_is_off_in_evaluation() {
        let dev = Cpu::default();
        let x = vec![1.0f32; 20000];
        let mut d = Dropout { rate: 0.25 };
        let mut rng = Rng::new(1, 2);
        let y = d
            .forward(
                dev.tensor_from_vec(x.clone(), (4, 5000)) as Act,
                &mut Mode::Train(&mut rng),
            )
            .as_vec();
        let zeros = y.iter().filter(|v| **v == 0.0).count();
        assert!((4700..5300).contains(&zeros), "{zeros} of 20000 dropped");
        // Keras' Dropout(0.25) keeps a 1 as 1.33333337 (bench/reference_numbers.py, section
        // dropout: inverted dropout, x / (1 − rate) in f32).
        let kept = f32::from_bits(0x3faa_aaab); // 1.33333337, Keras' f32
        assert!(y.iter().all(|v| *v == 0.0 || *v == kept));
        // Evaluation passes values through.
        let e = d
            .forward(dev.tensor_from_vec(x.clone(), (4, 5000)) as Act, &mut Mode::Eval)
            .as_vec();
        assert_eq!(e, x);
        // The same stream draws the same mask.
        let mut again = Rng::new(1, 2);
        let y2 = d
            .forward(
                dev.tensor_from_vec(x, (4, 5000)) as Act,
                &mut Mode::Train(&mut again),
            )
            .as_vec();
        assert_eq!(y, y2);
    }

    #[test]
    fn masks_are_the_stream_drawn_in_order_on_any_number_of_threads() {
        // Long enough to be cut into pieces (100,000 values), starting off a stream that has
        // drawn before, with the draw after it compared too.
        let x: Vec<f32> = (0..100_000).map(|i| 1.0 + i as f32).collect();
        let rate = 0.3;
        let mut reference = Rng::new(3, 4);
        reference.next_u64();
        let keep = 1.0 / (1.0 - rate);
        let want: Vec<f32> = x
            .iter()
            .map(|v| v * if reference.next_f32() < rate { 0.0 } else { keep })
            .collect();
        let after = reference.next_u64();
        for threads in [1, 2, 3] {
            par::set_threads(threads);
            let (mut y, mut rng) = (x.clone(), Rng::new(3, 4));
            rng.next_u64();
            let mask = draw_and_apply(&mut y, rate, &mut rng);
            par::set_threads(1);
            assert_eq!(y, want, "{threads} threads");
            assert!(mask.iter().zip(&y).all(|(m, v)| (*m == 0.0) == (*v == 0.0)));
            assert_eq!(rng.next_u64(), after, "{threads} threads");
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        check(&mut Dropout { rate: 0.4 }, random(3 * 10, 4), 3, 1e-2, 1e-3);
    }
}
