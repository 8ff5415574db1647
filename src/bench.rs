//! `mnist-lab bench`: training and evaluation throughput of the models of given experiment
//! files, the FLOP rate they reach and the GEMM peak measured in the same run.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::Result;
use dfdx::prelude::*;

use crate::data::{dataset, DatasetInfo};
use crate::experiment::Experiment;
use crate::files::Paths;
use crate::model::gemm::{matmul, View};
use crate::model::layer::Mode;
use crate::model::par::set_threads;
use crate::model::{Act, Network};
use crate::rng::Rng;
use crate::train::{step, EVAL_BATCH};

/// Forward multiply-add FLOPs (×2) per sample, and those of the first layer's input gradient
/// (which training skips).
pub fn forward_flops(exp: &Experiment, info: &DatasetInfo) -> Result<(f64, f64)> {
    let rows = exp.network(info)?;
    let total = rows.iter().map(|r| r.flops).sum();
    Ok((total, rows.first().map_or(0.0, |r| r.flops)))
}

/// GFLOP/s of one n×n×n GEMM with `threads` threads (best of a few runs).
pub fn gemm_peak(n: usize, threads: usize) -> f64 {
    set_threads(threads);
    let mut rng = Rng::new(1, 9);
    let a: Vec<f32> = (0..n * n).map(|_| rng.next_f32()).collect();
    let b: Vec<f32> = (0..n * n).map(|_| rng.next_f32()).collect();
    let mut c = vec![0.0f32; n * n];
    let mut best = f64::INFINITY;
    for _ in 0..4 {
        let t = Instant::now();
        matmul(n, n, n, &mut c, false, View::rows(&a, n), View::rows(&b, n));
        best = best.min(t.elapsed().as_secs_f64());
    }
    set_threads(1);
    2.0 * (n * n * n) as f64 / best / 1e9
}

/// Measured throughput of one model.
#[derive(Debug, Clone)]
pub struct ModelBench {
    /// Experiment name.
    pub name: String,
    /// Samples per training batch.
    pub batch: usize,
    /// Training samples per second of one worker.
    pub train_per_sec: f64,
    /// Evaluation samples per second of one worker.
    pub eval_per_sec: f64,
    /// Training samples per second of all workers together.
    pub train_per_sec_all: f64,
    /// Training samples per second of one worker whose GEMMs use all the workers' threads
    /// (what the last fold of a run gets).
    pub train_per_sec_threaded: f64,
    /// Milliseconds per training batch spent outside the network's layers and inside the
    /// layers that are not products: augmentation, the optimizer's update, dropout.
    pub parts: Parts,
    /// Forward FLOPs per sample.
    pub flops: f64,
    /// Training FLOPs per sample (forward + both backward products, less the first layer's
    /// input gradient).
    pub train_flops: f64,
    /// How each layer with a choice (the convolutions) is computed: (index in
    /// `model.layers`, or its path inside a block, and algorithm).
    pub algorithms: Vec<(String, &'static str)>,
}

/// A random batch of `n` images of `info`'s shape with random labels.
fn batch(rng: &mut Rng, n: usize, info: &DatasetInfo) -> (Vec<f32>, Vec<u8>) {
    let x = (0..n * info.image.len()).map(|_| rng.next_f32()).collect();
    let y = (0..n).map(|_| rng.below(info.classes()) as u8).collect();
    (x, y)
}

/// Milliseconds per training batch of the parts of a step that are not the network's products.
#[derive(Debug, Clone, Copy, Default)]
pub struct Parts {
    /// The `[data.augment]` transforms of one batch.
    pub augment: f64,
    /// The optimizer's update of every parameter.
    pub optimizer: f64,
    /// Every dropout layer's forward and backward pass.
    pub dropout: f64,
}

/// Times, per batch, the transforms, the optimizer update and the dropout layers of `exp`'s
/// training step, each alone on random data (`reps` batches).
fn parts(exp: &Experiment, info: &DatasetInfo, reps: usize) -> Result<Parts> {
    use crate::model::layers::LayerEntry;
    let bs = exp.train.batch_size;
    let mut rng = Rng::new(3, 3);
    let (x, _) = batch(&mut rng, bs, info);
    let transforms = crate::data::transform::pipeline(&exp.data.augment);
    let batch_info = crate::data::transform::BatchInfo {
        image: info.image,
        background: 0.0,
        foreground: 1.0,
    };
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        t.elapsed().as_secs_f64() * 1e3 / reps as f64
    };
    let augment = time(&mut || {
        let mut v = x.clone();
        for t in &transforms {
            t.apply(&mut v, &batch_info, &mut rng);
        }
    });
    let mut net = Network::build(&exp.model.layers, info, &mut Rng::new(1, 0))?;
    let grads: Vec<Vec<f32>> = net
        .params_mut()
        .iter()
        .map(|p| (0..p.value.len()).map(|_| rng.uniform(1e-3)).collect())
        .collect();
    let mut opt = exp.train.optimizer.spec().build();
    let lr = exp.train.optimizer.spec().learning_rate();
    let optimizer = time(&mut || {
        for (i, (p, g)) in net.params_mut().into_iter().zip(&grads).enumerate() {
            let w: &mut Vec<f32> = std::sync::Arc::make_mut(&mut p.value);
            opt.update(i, w, g, lr);
        }
    });
    let rows = exp.network(info)?;
    let mut dropout = 0.0;
    // Every dropout row, inside blocks too (each copy of a repeated block has rows of its own).
    for row in rows.iter().flat_map(|r| r.all()) {
        let Some(LayerEntry::Dropout(d)) = entry_at(&exp.model.layers, &row.path) else {
            continue;
        };
        let n = row.input.len();
        let mut layer = crate::model::layers::dropout::Dropout { rate: d.rate };
        let x: Act = net.dev.tensor_from_vec(vec![0.5; bs * n], (bs, n));
        dropout += time(&mut || {
            use crate::model::layer::Forward;
            let y = layer.forward(x.clone().leaky_traced(), &mut Mode::Train(&mut rng));
            let _ = y.sum::<(), _>().backward();
        });
    }
    Ok(Parts {
        augment,
        optimizer,
        dropout,
    })
}

/// The entry a row's path names: `3` is `layers[3]`; inside a block, `3.1.2` is the block's
/// inner entry 2 (in its copy 1). Shortcut and join rows (`3.0.s0`, `3.0.+`) name no entry.
fn entry_at<'a>(
    layers: &'a [crate::model::layers::LayerEntry],
    path: &str,
) -> Option<&'a crate::model::layers::LayerEntry> {
    use crate::model::layers::LayerEntry;
    let mut parts = path.split('.');
    let mut entry = layers.get(parts.next()?.parse::<usize>().ok()?)?;
    while let Some(_copy) = parts.next() {
        let LayerEntry::Residual(block) = entry else {
            return None;
        };
        entry = block.layers.get(parts.next()?.parse::<usize>().ok()?)?;
    }
    Some(entry)
}

/// The fewest training steps `bench` times per model (fewer measure start-up, not training).
pub const MIN_STEPS: usize = 10;
/// The most training steps `bench` times per model.
pub const MAX_STEPS: usize = 1_000_000;

/// Trains `steps` batches of the experiment's batch size on random data, with the experiment's
/// optimizer and the training step every run uses, on `threads` threads; returns
/// samples/s. With `start`, the timed steps begin only once every worker sharing that barrier
/// has finished its warm-up, so that parallel workers are timed while they all run.
fn train_rate(
    exp: &Experiment,
    info: &DatasetInfo,
    steps: usize,
    seed: u64,
    threads: usize,
    start: Option<&std::sync::Barrier>,
) -> Result<f64> {
    set_threads(threads);
    let mut net = Network::build(&exp.model.layers, info, &mut Rng::new(seed, 0))?;
    let optimizer = exp.train.optimizer.spec();
    let (mut opt, lr) = (optimizer.build(), optimizer.learning_rate());
    let mut rng = Rng::new(seed, 1);
    let bs = exp.train.batch_size;
    let data: Vec<(Vec<f32>, Vec<u8>)> = (0..8).map(|_| batch(&mut rng, bs, info)).collect();
    let mut layer_rng = Rng::new(seed, 2);
    let mut run = |net: &mut Network, i: usize| {
        let (x, y) = &data[i % data.len()];
        step(
            net,
            opt.as_mut(),
            lr,
            exp.train.label_smoothing,
            x.clone(),
            y,
            &mut layer_rng,
        );
    };
    for i in 0..5 {
        run(&mut net, i);
    }
    if let Some(b) = start {
        b.wait();
    }
    let t = Instant::now();
    for i in 0..steps {
        run(&mut net, i);
    }
    let rate = (steps * bs) as f64 / t.elapsed().as_secs_f64();
    set_threads(1);
    Ok(rate)
}

fn eval_rate(exp: &Experiment, info: &DatasetInfo, samples: usize) -> Result<f64> {
    let mut net = Network::build(&exp.model.layers, info, &mut Rng::new(2, 0))?;
    let (x, _) = batch(&mut Rng::new(2, 1), EVAL_BATCH, info);
    let t = Instant::now();
    let mut done = 0;
    while done < samples {
        let input: Act = net.dev.tensor_from_vec(x.clone(), (EVAL_BATCH, net.inputs));
        let _ = net.forward(input, &mut Mode::Eval).as_vec();
        done += EVAL_BATCH;
    }
    Ok(done as f64 / t.elapsed().as_secs_f64())
}

/// Training samples per second of `workers` models trained at once: every sample they train
/// over the wall time from the moment all have warmed up until the last one is done (a sum of
/// each worker's own rate would count workers that ran one after the other as parallel).
fn all_workers_rate(
    exp: &Experiment,
    info: &DatasetInfo,
    steps: usize,
    workers: usize,
) -> Result<f64> {
    let start = std::sync::Barrier::new(workers + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let start = &start;
                s.spawn(move || train_rate(exp, info, steps, 10 + w as u64, 1, Some(start)))
            })
            .collect();
        start.wait();
        let t = Instant::now();
        for h in handles {
            h.join().expect("bench worker")?;
        }
        Ok((workers * steps * exp.train.batch_size) as f64 / t.elapsed().as_secs_f64())
    })
}

/// Benchmarks each experiment's model: one worker alone, then `workers` in parallel.
/// `paths.data` is asked only for the image shape of datasets not known by name.
pub fn bench(
    exps: &[Experiment],
    paths: &Paths,
    steps: usize,
    workers: usize,
) -> Result<Vec<ModelBench>> {
    let mut out = Vec::new();
    for exp in exps {
        set_threads(1);
        let name = &exp.data.dataset;
        let info = &dataset::info(&paths.dataset_dir(name), name)?;
        let (flops, first) = forward_flops(exp, info)?;
        let algorithms = exp
            .network(info)?
            .iter()
            .flat_map(|r| r.all())
            .filter_map(|r| Some((r.path.clone(), r.algorithm?)))
            .collect();
        let train_per_sec = train_rate(exp, info, steps, 1, 1, None)?;
        let train_per_sec_threaded = if workers > 1 {
            train_rate(exp, info, steps, 1, workers, None)?
        } else {
            train_per_sec
        };
        let eval_per_sec = eval_rate(exp, info, steps * exp.train.batch_size)?;
        let parts = parts(exp, info, steps.clamp(10, 100))?;
        let train_per_sec_all = if workers > 1 {
            all_workers_rate(exp, info, steps, workers)?
        } else {
            train_per_sec
        };
        out.push(ModelBench {
            name: exp.name.clone(),
            batch: exp.train.batch_size,
            train_per_sec,
            eval_per_sec,
            train_per_sec_all,
            train_per_sec_threaded,
            parts,
            flops,
            train_flops: 3.0 * flops - first,
            algorithms,
        });
    }
    Ok(out)
}

/// Measures the GEMM peak and every experiment's model; returns the Markdown table.
pub fn run(exps: &[Experiment], paths: &Paths, steps: usize, workers: usize) -> Result<String> {
    let peak1 = gemm_peak(1024, 1);
    let peak_all = gemm_peak(1024, workers);
    let rows = bench(exps, paths, steps, workers)?;
    Ok(table(&rows, workers, peak1, peak_all))
}

/// The bench table as Markdown, with seconds per epoch of the seed's protocol (48,000 training
/// + 12,000 validation images).
pub fn table(rows: &[ModelBench], workers: usize, peak1: f64, peak_all: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "GEMM peak (1024³, f32): {peak1:.1} GFLOP/s on 1 thread, {peak_all:.1} GFLOP/s on {workers} threads\n");
    let _ = writeln!(
        s,
        "| model | MFLOP/sample (fwd) | train samples/s (1 worker) | train GFLOP/s | % of 1-thread peak | eval samples/s | s/epoch (1 worker) | train samples/s ({workers} workers) | s/epoch, {workers} folds at once (per fold-epoch) | train samples/s (1 model on {workers} threads) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let gflops = r.train_per_sec * r.train_flops / 1e9;
        let epoch1 = 48_000.0 / r.train_per_sec + 12_000.0 / r.eval_per_sec;
        let epoch_all =
            (48_000.0 / r.train_per_sec_all) + 12_000.0 / (r.eval_per_sec * workers as f64);
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.0} | {gflops:.1} | {:.0}% | {:.0} | {epoch1:.1} | {:.0} | {epoch_all:.1} | {:.0} |",
            r.name,
            r.flops / 1e6,
            r.train_per_sec,
            100.0 * gflops / peak1,
            r.eval_per_sec,
            r.train_per_sec_all,
            r.train_per_sec_threaded
        );
    }
    let _ = writeln!(
        s,
        "\nHow each convolution is computed (model.layers index: algorithm):\n"
    );
    let _ = writeln!(s, "| model | convolutions |");
    let _ = writeln!(s, "|---|---|");
    for r in rows {
        let list: Vec<String> = r
            .algorithms
            .iter()
            .map(|(i, a)| format!("{i}: {a}"))
            .collect();
        let list = if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        };
        let _ = writeln!(s, "| {} | {list} |", r.name);
    }
    let _ = writeln!(
        s,
        "\nTime per training batch (1 worker) and its parts outside the layers' products, each timed alone:\n"
    );
    let _ = writeln!(
        s,
        "| model | batch | step ms | augmentation ms | optimizer ms | dropout ms (fwd+bwd) | these parts, % of the step |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let step = r.batch as f64 * 1e3 / r.train_per_sec;
        let p = r.parts;
        // Augmentation runs outside the timed step (on the batch before it).
        let total = step + p.augment;
        let _ = writeln!(
            s,
            "| {} | {} | {step:.2} | {:.2} | {:.2} | {:.2} | {:.1}% |",
            r.name,
            r.batch,
            p.augment,
            p.optimizer,
            p.dropout,
            100.0 * (p.augment + p.optimizer + p.dropout) / total
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flop_counts_match_the_issue_numbers() {
        let base = Experiment::from_resolved_toml(
            "b",
            "[[model.layers]]\nconv = { filters = 32, kernel = 3, activation = \"relu\" }\n[[model.layers]]\nmaxpool = 2\n[[model.layers]]\nflatten = true\n[[model.layers]]\ndense = { units = 100, activation = \"relu\" }\n[[model.layers]]\ndense = { units = 10, activation = \"softmax\" }\n",
        )
        .unwrap();
        let mnist = dataset::info(std::path::Path::new(""), "mnist").unwrap();
        let (f, first) = forward_flops(&base, &mnist).unwrap();
        // 2·(26·26·32·9) + 2·5408·100 + 2·100·10 = 389,376 + 1,081,600 + 2,000
        assert_eq!(f, 1_472_976.0);
        assert_eq!(first, 389_376.0);
    }

    #[test]
    fn every_dropout_row_finds_its_entry_inside_repeated_blocks() {
        use crate::model::layers::LayerEntry;
        let exp = Experiment::from_resolved_toml(
            "r",
            "[[model.layers]]\nconv = { filters = 4, kernel = 3, padding = \"same\" }\n[[model.layers]]\n[model.layers.residual]\nrepeat = 2\n[[model.layers.residual.layers]]\nconv = { filters = 4, kernel = 3, padding = \"same\" }\n[[model.layers.residual.layers]]\ndropout = { rate = 0.2 }\n[[model.layers]]\ndropout = { rate = 0.4 }\n[[model.layers]]\nglobalavgpool = true\n[[model.layers]]\ndense = { units = 10, activation = \"softmax\" }\n",
        )
        .unwrap();
        let mnist = dataset::info(std::path::Path::new(""), "mnist").unwrap();
        let rows = exp.network(&mnist).unwrap();
        let found: Vec<(String, f32)> = rows
            .iter()
            .flat_map(|r| r.all())
            .filter_map(|r| match entry_at(&exp.model.layers, &r.path) {
                Some(LayerEntry::Dropout(d)) => Some((r.path.clone(), d.rate)),
                _ => None,
            })
            .collect();
        assert_eq!(
            found,
            vec![
                ("1.0.1".to_string(), 0.2),
                ("1.1.1".to_string(), 0.2),
                ("2".to_string(), 0.4)
            ]
        );
        assert!(entry_at(&exp.model.layers, "1.0.+").is_none());
        assert!(entry_at(&exp.model.layers, "9").is_none());
    }
}
