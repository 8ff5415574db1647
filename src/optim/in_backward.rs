//! The optimizer's update inside the backward pass.
//!
//! A training step's backward pass runs each layer's backward op in turn (last layer first).
//! An op that computes a parameter's gradient writes it into a [`ParamGrad`]: a buffer of the
//! parameter's own, outside dfdx's tape, kept from one step to the next. When the op closes it,
//! the step's optimizer updates that parameter there and then, its gradient just written — no
//! second pass over every gradient after the backward pass, and no zero-filled buffer where the
//! op writes every value itself (the dense layer's weight gradient, 2 MB in the baseline, is
//! written by its GEMM straight over the last step's).
//!
//! [`during`] installs the step's update (the optimizer, the learning rate and the network's
//! parameters, found by their ids) for the duration of the backward pass, on the calling
//! thread only (each fold's thread has its own). Outside it — the gradient checks, a backward
//! pass of a bare layer — a [`ParamGrad`] is the tape's own gradient under the parameter's key,
//! as before.
//!
//! Each parameter's update depends only on its own gradient and state, so updating them in the
//! order their gradients complete instead of the network's order computes the same bits (a
//! test below compares both on every kind of layer with parameters).

use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use dfdx::prelude::*;

use super::Optimizer;
use crate::model::{GradKey, Network, Param};

/// The update of the step whose backward pass is running on this thread.
struct StepUpdate<'a> {
    opt: &'a mut dyn Optimizer,
    lr: f32,
    params: Vec<&'a mut Param>,
    ids: Vec<u64>,
    done: Vec<bool>,
}

thread_local! {
    /// The running step's update, taken out while an op uses it (so no two borrows overlap).
    static ACTIVE: Cell<Option<NonNull<StepUpdate<'static>>>> = const { Cell::new(None) };
}

/// Sets [`ACTIVE`] for as long as it lives, and clears it when dropped (also on a panic).
struct Installed<'b, 'a>(PhantomData<&'b mut StepUpdate<'a>>);

impl<'b, 'a> Installed<'b, 'a> {
    fn new(update: &'b mut StepUpdate<'a>) -> Self {
        let previous = ACTIVE.with(|a| a.replace(Some(NonNull::from(update).cast())));
        assert!(previous.is_none(), "a step's update is already running");
        Installed(PhantomData)
    }
}

impl Drop for Installed<'_, '_> {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.set(None));
    }
}

/// Runs `f` on the running step's update, if there is one on this thread.
fn with_active<R>(f: impl FnOnce(&mut StepUpdate) -> R) -> Option<R> {
    let ptr = ACTIVE.with(|a| a.take())?;
    // Put back even if `f` panics.
    struct Restore(NonNull<StepUpdate<'static>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            ACTIVE.with(|a| a.set(Some(self.0)));
        }
    }
    let restore = Restore(ptr);
    // SAFETY: the pointer was set by `Installed::new` from a `&mut StepUpdate` that `during`
    // holds borrowed (through the guard) and does not touch until the guard is dropped, which
    // clears it; it is taken out of the cell while `f` runs, so no second reference to it
    // exists meanwhile (an op's update cannot reach another op's).
    let r = f(unsafe { &mut *restore.0.as_ptr() });
    drop(restore);
    Some(r)
}

/// Runs `backward` (a training step's backward pass) with the step's update installed: every
/// parameter of `net` is updated by `opt` at rate `lr` as its gradient is closed (see
/// [`ParamGrad`]). A parameter the loss did not reach is updated after, from a zero gradient,
/// as the tape would have handed it.
pub fn during<R>(
    opt: &mut dyn Optimizer,
    net: &mut Network,
    lr: f32,
    backward: impl FnOnce() -> R,
) -> R {
    let params = net.params_mut();
    let mut update = StepUpdate {
        opt,
        lr,
        ids: params.iter().map(|p| p.id).collect(),
        done: vec![false; params.len()],
        params,
    };
    let r = {
        let _installed = Installed::new(&mut update);
        backward()
    };
    let StepUpdate {
        opt,
        lr,
        params,
        done,
        ..
    } = update;
    for (index, (p, done)) in params.into_iter().zip(done).enumerate() {
        if !done {
            let zeros = vec![0.0; p.value.len()];
            opt.update(
                index,
                Arc::make_mut(&mut p.value).as_mut_slice(),
                &zeros,
                lr,
            );
        }
    }
    r
}

/// Where a [`ParamGrad`] goes when closed.
enum Target {
    /// The running step's parameter number `.0`: updated on the spot.
    Step(usize),
    /// The tape, under this key (no step's update running).
    Tape(Tensor<(usize,), f32, Cpu>),
}

/// A parameter's gradient while a backward op writes it: [`ParamGrad::open`] it, write or add
/// to [`ParamGrad::values`], then [`ParamGrad::close`] it once complete. An op that still
/// holds the parameter's weights (an `Arc` clone, for its input gradient) drops them before
/// closing, so that the update changes them in place instead of copying them.
pub struct ParamGrad {
    values: Vec<f32>,
    target: Target,
    stale: bool,
}

impl ParamGrad {
    /// Opens the gradient of the parameter `key` names. When the op will write every value
    /// itself (`overwrite`), a step's buffer is handed over as the last step left it (see
    /// [`ParamGrad::stale`]); otherwise it holds zeros, or on the tape the sum so far, to add to.
    pub fn open(
        key: &GradKey,
        grads: &mut Gradients<f32, Cpu>,
        overwrite: bool,
    ) -> Result<Self, CpuError> {
        let len = key.tape.shape().0;
        let step = with_active(|u| {
            let index = u.ids.iter().position(|&i| i == key.id)?;
            let mut values = std::mem::take(&mut u.params[index].grad);
            if !overwrite {
                values.clear();
            }
            values.resize(len, 0.0);
            Some((index, values))
        })
        .flatten();
        Ok(match step {
            Some((index, values)) => ParamGrad {
                values,
                target: Target::Step(index),
                stale: overwrite,
            },
            None => ParamGrad {
                values: std::mem::take(&mut **grads.get_or_alloc_mut(&key.tape)?),
                target: Target::Tape(key.tape.clone()),
                stale: false,
            },
        })
    }

    /// Whether the values are last step's, for the op to overwrite every one (else it adds
    /// into them).
    pub fn stale(&self) -> bool {
        self.stale
    }

    /// Hands over `d` as the whole gradient of the parameter `key` names (added to zeros, or on
    /// the tape to the sum so far), closing it at once: for an op that computed it in a buffer
    /// of its own.
    pub fn add(key: &GradKey, grads: &mut Gradients<f32, Cpu>, d: &[f32]) -> Result<(), CpuError> {
        let mut g = Self::open(key, grads, false)?;
        // One row as long as the parameter: g += d.
        crate::model::affine::add_column_sums(g.values(), d);
        g.close(grads)
    }

    /// The gradient's values.
    pub fn values(&mut self) -> &mut [f32] {
        &mut self.values
    }

    /// The gradient is complete: the step's optimizer updates the parameter now (or, with no
    /// step running, the tape keeps the gradient).
    pub fn close(self, grads: &mut Gradients<f32, Cpu>) -> Result<(), CpuError> {
        match self.target {
            Target::Step(index) => {
                let values = self.values;
                with_active(move |u| {
                    let p = &mut *u.params[index];
                    u.opt.update(
                        index,
                        Arc::make_mut(&mut p.value).as_mut_slice(),
                        &values,
                        u.lr,
                    );
                    p.grad = values;
                    u.done[index] = true;
                })
                .expect("a step's gradient closed outside its backward pass");
            }
            Target::Tape(key) => **grads.get_or_alloc_mut(&key)? = self.values,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Experiment;
    use crate::model::layer::Mode;
    use crate::model::loss::smoothed_cross_entropy;
    use crate::model::Act;
    use crate::rng::Rng;

    /// Every layer kind with parameters and every backward path that writes a parameter's
    /// gradient: a direct convolution fused with pooling, one fused with a batch norm and
    /// pooling, Winograd ones with a batch norm and without, a residual block with a
    /// projection, a lone batch norm, dense layers.
    const NET: &str = r#"
[[model.layers]]
conv = { filters = 4, kernel = 3 }
[[model.layers]]
maxpool = 2
[[model.layers]]
conv = { filters = 6, kernel = 3, padding = "same" }
[[model.layers]]
batchnorm = { activation = "relu" }
[[model.layers]]
maxpool = 2
[[model.layers]]
conv = { filters = 32, kernel = 3, padding = "same", activation = "relu" }
[[model.layers]]
conv = { filters = 32, kernel = 3, padding = "same", activation = "relu" }
[[model.layers]]
conv = { filters = 32, kernel = 3, padding = "same" }
[[model.layers]]
batchnorm = {}
[[model.layers]]
residual = { layers = [ { conv = { filters = 8, kernel = 3, padding = "same", activation = "relu" } }, { conv = { filters = 8, kernel = 3, padding = "same" } } ] }
[[model.layers]]
flatten = true
[[model.layers]]
batchnorm = {}
[[model.layers]]
dense = { units = 20, activation = "relu" }
[[model.layers]]
dense = { units = 10, activation = "softmax" }
"#;

    #[test]
    fn updating_inside_the_backward_pass_gives_the_bits_of_updating_after_it() {
        let exp = Experiment::from_resolved_toml("inbackward", NET).unwrap();
        let info = crate::data::dataset::info(std::path::Path::new(""), "mnist").unwrap();
        for toml in [
            "[sgd]\nlearning_rate = 0.05\nmomentum = 0.9",
            "[adam]\nlearning_rate = 0.01",
        ] {
            let spec: super::super::OptimizerSpec = toml::from_str(toml).unwrap();
            let mut outcomes = Vec::new();
            for inside in [true, false] {
                let mut net =
                    Network::build(&exp.model.layers, &info, &mut Rng::new(3, 0)).unwrap();
                let mut opt = spec.spec().build();
                let mut data = Rng::new(5, 1);
                for step in 0..3 {
                    let batch = 5 + step;
                    let x: Vec<f32> = (0..batch * net.inputs)
                        .map(|_| data.uniform(1.0).abs())
                        .collect();
                    let y: Vec<u8> = (0..batch).map(|i| ((i * 7 + step) % 10) as u8).collect();
                    let mut rng = Rng::new(11, step as u64);
                    let t: Act = net.dev.tensor_from_vec(x, (batch, net.inputs));
                    let out = net.forward(t.leaky_traced(), &mut Mode::Train(&mut rng));
                    let loss = smoothed_cross_entropy(out, &y, 0.0);
                    let lr = spec.spec().learning_rate();
                    if inside {
                        during(opt.as_mut(), &mut net, lr, || loss.backward());
                    } else {
                        // The update as it was: after the backward pass, from the tape's
                        // gradients, in the network's order.
                        let grads = loss.backward();
                        for (i, p) in net.params_mut().into_iter().enumerate() {
                            let g = grads.get(&p.key).as_vec();
                            opt.update(i, Arc::make_mut(&mut p.value).as_mut_slice(), &g, lr);
                        }
                    }
                }
                let weights: Vec<Vec<u32>> = net
                    .arrays()
                    .iter()
                    .map(|a| a.values.iter().map(|v| v.to_bits()).collect())
                    .collect();
                outcomes.push((weights, opt.state()));
            }
            assert!(outcomes[0] == outcomes[1], "{toml}");
        }
    }

    #[test]
    fn outside_a_step_a_gradient_stays_on_the_tape() {
        let dev = Cpu::default();
        let p = Param::new(&dev, vec![1.0, 2.0]);
        let key = p.grad_key();
        let mut grads = Gradients::leaky();
        for overwrite in [false, true] {
            let mut g = ParamGrad::open(&key, &mut grads, overwrite).unwrap();
            assert!(!g.stale());
            g.values()[1] += 3.0;
            g.close(&mut grads).unwrap();
        }
        assert_eq!(grads.get(&p.key).as_vec(), vec![0.0, 6.0]);
    }
}
