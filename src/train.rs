//! Training: the one training step (used by cross-validation, the final model and `bench`
//! alike), epochs over shuffled batches with their history, and evaluation.

use dfdx::prelude::*;

use crate::data::prep::Scaler;
use crate::data::transform::{pipeline, BatchInfo, Transform};
use crate::data::Dataset;
use crate::experiment::Experiment;
use crate::model::layer::Mode;
use crate::model::loss::{count_correct, cross_entropy, smoothed_cross_entropy};
use crate::model::{Act, Network};
use crate::optim::{self, Optimizer, OptimizerState};
use crate::rng::{Rng, Streams};
use crate::schedule::{self, Progress};

pub use crate::model::EVAL_BATCH;

/// One epoch of one fold, as Keras reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochRow {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's samples (the running mean Keras prints).
    pub train_loss: f64,
    /// Training accuracy over the epoch, as a fraction.
    pub train_acc: f64,
    /// Loss on the held-out images after the epoch (NaN without validation data).
    pub val_loss: f64,
    /// Accuracy on the held-out images after the epoch (NaN without validation data).
    pub val_acc: f64,
    /// The learning rate of the epoch's last batch, when a schedule varies it (else not
    /// recorded: the optimizer's rate throughout).
    pub lr: Option<f32>,
}

/// What the training loop reports while it runs.
pub enum Event<'a> {
    /// An epoch is starting with this many batches.
    EpochStart { epoch: usize, batches: usize },
    /// `done` batches of the current epoch are finished.
    Batch { done: usize, samples: usize },
    /// An epoch is finished.
    EpochEnd(&'a EpochRow),
}

/// Loss and accuracy of a set of images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction classified correctly.
    pub acc: f64,
}

/// Fills `x` with the scaled pixels and `y` with the labels of the images at `idx`.
pub fn gather(ds: &Dataset, scaler: &Scaler, idx: &[usize], x: &mut Vec<f32>, y: &mut Vec<u8>) {
    let n = ds.info.image.len();
    x.resize(idx.len() * n, 0.0);
    y.clear();
    for (row, &i) in x.chunks_exact_mut(n).zip(idx) {
        scaler.scale_into(ds.image(i), row);
        y.push(ds.labels[i]);
    }
}

/// Logits for a batch of already-scaled images (no tape).
pub fn logits(net: &mut Network, x: Vec<f32>) -> Vec<f32> {
    let n = x.len() / net.inputs;
    let t: Act = net.dev.tensor_from_vec(x, (n, net.inputs));
    net.forward(t, &mut Mode::Eval).as_vec()
}

/// Scores the network on the images at `idx` (untouched: no transform runs in evaluation),
/// calling `each` with every batch's logits.
pub fn evaluate_with(
    net: &mut Network,
    ds: &Dataset,
    scaler: &Scaler,
    idx: &[usize],
    mut each: impl FnMut(&[usize], &[f32]),
) -> Score {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    for chunk in idx.chunks(EVAL_BATCH) {
        gather(ds, scaler, chunk, &mut x, &mut y);
        let t: Act = net
            .dev
            .tensor_from_vec(x.clone(), (chunk.len(), net.inputs));
        let out = net.forward(t, &mut Mode::Eval);
        let values = out.as_vec();
        correct += count_correct(&values, &y);
        loss_sum += cross_entropy(out, &y).array() as f64 * chunk.len() as f64;
        each(chunk, &values);
    }
    let n = idx.len().max(1) as f64;
    Score {
        loss: loss_sum / n,
        acc: correct as f64 / n,
    }
}

/// Scores the network on the images at `idx`.
pub fn evaluate(net: &mut Network, ds: &Dataset, scaler: &Scaler, idx: &[usize]) -> Score {
    evaluate_with(net, ds, scaler, idx, |_, _| {})
}

/// What one training step measured on its batch (before the update).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepScore {
    /// Mean cross-entropy of the batch.
    pub loss: f32,
    /// Samples classified correctly.
    pub correct: usize,
}

/// One training step on a batch of (already transformed) images `x` with labels `y`: forward in
/// training mode (layers draw from `rng`), loss, and backward, with the optimizer's update at
/// learning rate `lr` inside it (each parameter updated as soon as its gradient is complete:
/// [`optim::in_backward`]). The loss is computed against targets smoothed by
/// `label_smoothing`.
pub fn step(
    net: &mut Network,
    opt: &mut dyn Optimizer,
    lr: f32,
    label_smoothing: f32,
    x: Vec<f32>,
    y: &[u8],
    rng: &mut Rng,
) -> StepScore {
    let input: Act = net.dev.tensor_from_vec(x, (y.len(), net.inputs));
    let out = net.forward(input.leaky_traced(), &mut Mode::Train(rng));
    let correct = count_correct(&out.as_vec(), y);
    let loss = smoothed_cross_entropy(out, y, label_smoothing);
    let value = loss.array();
    optim::in_backward::during(opt, net, lr, || loss.backward());
    StepScore {
        loss: value,
        correct,
    }
}

/// The images a training run uses.
pub struct TrainData<'a> {
    /// All images.
    pub ds: &'a Dataset,
    /// Pixel scaling.
    pub scaler: &'a Scaler,
    /// Indices trained on.
    pub train: &'a [usize],
    /// Indices scored after each epoch (may be empty).
    pub val: &'a [usize],
}

/// Trains `net` on `data.train` for the experiment's epochs with its optimizer and training
/// transforms, scoring `data.val` after each epoch. Batch order, layers' draws and the
/// transforms' draws come from `streams`.
pub fn train(
    net: &mut Network,
    exp: &Experiment,
    data: &TrainData,
    streams: &Streams,
    progress: &mut dyn FnMut(Event),
) -> anyhow::Result<Vec<EpochRow>> {
    let transforms = pipeline(&exp.data.augment);
    let stretch = Stretch::whole(exp);
    train_with(net, exp, data, &transforms, streams, stretch, progress)
}

/// Where a training run goes on from: the state after its first `rows.len()` epochs (the
/// network's weights and statistics are the caller's to restore).
#[derive(Debug, Clone)]
pub struct Resume {
    /// The optimizer's state after those epochs.
    pub optimizer: OptimizerState,
    /// Their history rows.
    pub rows: Vec<EpochRow>,
}

/// What [`Stretch::save`] is called with after each epoch: the network, the optimizer and every
/// row so far.
pub type SaveState<'a> =
    Box<dyn FnMut(&mut Network, &dyn Optimizer, &[EpochRow]) -> anyhow::Result<()> + 'a>;

/// The part of a training run to train now: from the start or a [`Resume`], up to epoch
/// `until` (the schedule and the data's order still follow the whole run, so a run trained in
/// stretches computes the same bits as one trained at once), handing its state to `save`
/// after every epoch.
pub struct Stretch<'a> {
    /// The state to go on from (none: the first epoch).
    pub from: Option<Resume>,
    /// The last epoch to train, at most `train.epochs`.
    pub until: usize,
    /// Called after each epoch trained.
    pub save: SaveState<'a>,
}

impl Stretch<'_> {
    /// The whole run at once, saving nothing.
    pub fn whole(exp: &Experiment) -> Self {
        Stretch {
            from: None,
            until: exp.train.epochs,
            save: Box::new(|_, _, _| Ok(())),
        }
    }
}

/// [`train`] with the given training-batch transforms, over a [`Stretch`] of the run; returns
/// every row up to its last epoch (those it resumed from included).
pub fn train_with(
    net: &mut Network,
    exp: &Experiment,
    data: &TrainData,
    transforms: &[Box<dyn Transform>],
    streams: &Streams,
    mut stretch: Stretch,
    progress: &mut dyn FnMut(Event),
) -> anyhow::Result<Vec<EpochRow>> {
    let TrainData {
        ds,
        scaler,
        train: train_idx,
        val: val_idx,
    } = *data;
    let t = &exp.train;
    let mut opt = t.optimizer.spec().build();
    let base_lr = t.optimizer.spec().learning_rate();
    let batch_info = BatchInfo {
        image: ds.info.image,
        background: scaler.value(0),
        foreground: scaler.value(255),
    };
    let mut rows = Vec::with_capacity(t.epochs);
    if let Some(from) = stretch.from.take() {
        opt.restore(from.optimizer)
            .map_err(|e| anyhow::anyhow!("cannot resume: {e}"))?;
        rows = from.rows;
    }
    let first = rows.len() + 1;
    if stretch.until > t.epochs || first > stretch.until + 1 {
        anyhow::bail!(
            "cannot train epochs {first}..={} of a run of {} epochs",
            stretch.until,
            t.epochs
        );
    }
    let mut order = train_idx.to_vec();
    let batches = order.len().div_ceil(t.batch_size);
    let mut lr = base_lr;
    // One stream orders every epoch's batches: replay the shuffles of the epochs resumed from.
    let mut shuffle = streams.shuffle();
    for _ in 1..first {
        shuffle.shuffle(&mut order);
    }
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for epoch in first..=stretch.until {
        shuffle.shuffle(&mut order);
        let mut layer_rng = streams.layers(epoch);
        let mut transform_rng = streams.transforms(epoch);
        progress(Event::EpochStart { epoch, batches });
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for (b, chunk) in order.chunks(t.batch_size).enumerate() {
            gather(ds, scaler, chunk, &mut x, &mut y);
            for transform in transforms {
                transform.apply(&mut x, &batch_info, &mut transform_rng);
            }
            lr = schedule::rate(
                t.schedule.as_ref(),
                base_lr,
                Progress {
                    step: (epoch - 1) * batches + b,
                    steps_per_epoch: batches,
                    total_steps: t.epochs * batches,
                },
            );
            let s = step(
                net,
                opt.as_mut(),
                lr,
                t.label_smoothing,
                x.clone(),
                &y,
                &mut layer_rng,
            );
            if !s.loss.is_finite() {
                anyhow::bail!(
                    "training diverged: the loss is {} at epoch {epoch}, batch {} of {batches} (learning rate {lr}); try a smaller train.optimizer.learning_rate",
                    s.loss,
                    b + 1
                );
            }
            correct += s.correct;
            loss_sum += s.loss as f64 * chunk.len() as f64;
            seen += chunk.len();
            progress(Event::Batch {
                done: b + 1,
                samples: seen,
            });
        }
        let val = if val_idx.is_empty() {
            Score {
                loss: f64::NAN,
                acc: f64::NAN,
            }
        } else {
            evaluate(net, ds, scaler, val_idx)
        };
        let row = EpochRow {
            epoch,
            train_loss: loss_sum / seen as f64,
            train_acc: correct as f64 / seen as f64,
            val_loss: val.loss,
            val_acc: val.acc,
            lr: t.schedule.is_some().then_some(lr),
        };
        progress(Event::EpochEnd(&row));
        rows.push(row);
        (stretch.save)(net, opt.as_ref(), &rows)?;
    }
    let regions = crate::model::team::profile::take_report(20);
    if !regions.is_empty() {
        eprint!(
            "MNIST_LAB_REGIONS, epochs {first}–{}: {regions}",
            stretch.until
        );
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::data::{DatasetInfo, ImageShape};
    use crate::rng::Run;

    /// Records the size of every batch it is given and a draw from its stream.
    #[derive(Debug, Default)]
    struct Recorder(Arc<Mutex<Vec<(usize, u64)>>>);

    impl Transform for Recorder {
        fn apply(&self, batch: &mut [f32], info: &BatchInfo, rng: &mut Rng) {
            let images = batch.len() / info.image.len();
            self.0.lock().unwrap().push((images, rng.next_u64()));
        }
    }

    /// 40 random 4×4 images of 3 classes.
    fn tiny_dataset() -> Dataset {
        let mut rng = Rng::new(3, 3);
        let image = ImageShape {
            height: 4,
            width: 4,
            channels: 1,
        };
        Dataset {
            images: (0..40 * 16).map(|_| rng.below(256) as u8).collect(),
            labels: (0..40).map(|i| (i % 3) as u8).collect(),
            sha256: String::new(),
            info: DatasetInfo::numbered(image, 3),
        }
    }

    fn run_recorded(ds: &Dataset, exp: &Experiment) -> (Vec<EpochRow>, Vec<(usize, u64)>) {
        let scaler = Scaler::new(0.0, 1.0);
        let (train_idx, val_idx): (Vec<usize>, Vec<usize>) = (0..40).partition(|i| i % 4 != 0);
        let streams = Streams::new(exp.train.seed, Run::Fold(1));
        let mut net = Network::build(&exp.model.layers, &ds.info, &mut streams.init()).unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let transforms: Vec<Box<dyn Transform>> = vec![Box::new(Recorder(calls.clone()))];
        let rows = train_with(
            &mut net,
            exp,
            &TrainData {
                ds,
                scaler: &scaler,
                train: &train_idx,
                val: &val_idx,
            },
            &transforms,
            &streams,
            Stretch::whole(exp),
            &mut |_| {},
        )
        .unwrap();
        let calls = calls.lock().unwrap().clone();
        (rows, calls)
    }

    /// Everything a run keeps between epochs: weights, batch norm's statistics (in the
    /// network's arrays) and the optimizer's slots and counters.
    #[test]
    fn a_run_trained_in_stretches_computes_the_same_bits_as_one_trained_at_once() {
        let ds = tiny_dataset();
        let exp = Experiment::from_resolved_toml(
            "t",
            r#"
[data.augment]
affine = { rotation = 10, shift = 0.1 }
[[model.layers]]
conv = { filters = 4, kernel = 3, padding = "same" }
[[model.layers]]
batchnorm = { activation = "relu" }
[[model.layers]]
dropout = { rate = 0.3 }
[[model.layers]]
flatten = true
[[model.layers]]
dense = { units = 3, activation = "softmax" }
[train]
epochs = 4
batch_size = 8
schedule = "onecycle"
label_smoothing = 0.1
[train.optimizer.adam]
learning_rate = 0.01
"#,
        )
        .unwrap();
        let scaler = Scaler::new(0.0, 1.0);
        let (train_idx, val_idx): (Vec<usize>, Vec<usize>) = (0..40).partition(|i| i % 4 != 0);
        let data = TrainData {
            ds: &ds,
            scaler: &scaler,
            train: &train_idx,
            val: &val_idx,
        };
        let streams = Streams::new(exp.train.seed, Run::Fold(1));
        let transforms = pipeline(&exp.data.augment);
        let fresh = || Network::build(&exp.model.layers, &ds.info, &mut streams.init()).unwrap();
        let weights = |net: &mut Network| -> Vec<Vec<u32>> {
            net.arrays()
                .iter()
                .map(|a| a.values.iter().map(|v| v.to_bits()).collect())
                .collect()
        };
        let mut whole = fresh();
        let all = train_with(
            &mut whole,
            &exp,
            &data,
            &transforms,
            &streams,
            Stretch::whole(&exp),
            &mut |_| {},
        )
        .unwrap();
        // Two epochs, the state saved after the second (as a checkpoint would hold it)...
        let saved = std::cell::RefCell::new(None);
        let mut first = fresh();
        let stretch = Stretch {
            from: None,
            until: 2,
            save: Box::new(
                |net: &mut Network, opt: &dyn Optimizer, rows: &[EpochRow]| {
                    let arrays: Vec<Vec<f32>> =
                        net.arrays().iter().map(|a| a.values.clone()).collect();
                    *saved.borrow_mut() = Some((arrays, opt.state(), rows.to_vec()));
                    Ok(())
                },
            ),
        };
        let head = train_with(
            &mut first,
            &exp,
            &data,
            &transforms,
            &streams,
            stretch,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(head, all[..2]);
        // ...then a new network and optimizer restored from it train epochs 3 and 4.
        let (arrays, optimizer, rows) = saved.into_inner().unwrap();
        assert_eq!(rows.len(), 2);
        let mut second = fresh();
        for (a, v) in second.arrays().into_iter().zip(arrays) {
            *a.values = v;
        }
        let stretch = Stretch {
            from: Some(Resume { optimizer, rows }),
            until: 4,
            save: Box::new(|_, _, _| Ok(())),
        };
        let resumed = train_with(
            &mut second,
            &exp,
            &data,
            &transforms,
            &streams,
            stretch,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(resumed, all);
        assert!(
            weights(&mut second) == weights(&mut whole),
            "weights differ"
        );
    }

    #[test]
    fn transforms_see_every_training_batch_and_no_validation_image_and_draw_reproducibly() {
        let ds = tiny_dataset();
        let exp = Experiment::from_resolved_toml(
            "t",
            "[[model.layers]]\nflatten = true\n[[model.layers]]\ndense = { units = 3, activation = \"softmax\" }\n[train]\nepochs = 3\nbatch_size = 8\n",
        )
        .unwrap();
        let (rows, calls) = run_recorded(&ds, &exp);
        assert_eq!(rows.len(), 3);
        // 30 training images a epoch in batches of 8, 8, 8, 6; the 10 validation images never.
        let sizes: Vec<usize> = calls.iter().map(|c| c.0).collect();
        assert_eq!(sizes, [8, 8, 8, 6].repeat(3));
        // Each epoch draws from a stream of its own, the same on every run.
        let (_, again) = run_recorded(&ds, &exp);
        assert_eq!(calls, again);
        assert_ne!(calls[0].1, calls[4].1);
    }
}
