//! Inputs that wrote outside the results folder, lost or trusted a result, or aborted the
//! process (issue "Hardening, second round"; each test names its item).

mod common;
use common::*;

use std::path::{Path, PathBuf};

/// Trains the tiny experiment's final model in `d` and returns its folder.
fn tiny_final(d: &Path) -> PathBuf {
    let out = mnist_lab(d, &["final", "experiments/tiny.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    d.join("results/tiny/final")
}

/// Rewrites a safetensors file: `edit` may change its JSON header (metadata included) and its
/// tensor bytes.
fn rewrite_model(path: &Path, edit: impl FnOnce(&mut serde_json::Value, &mut [u8])) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut data = bytes[8 + n..].to_vec();
    edit(&mut header, &mut data);
    let mut h = serde_json::to_vec(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    std::fs::write(path, out).unwrap();
}

/// Runs `mnist-lab args` in `d` with `toml` as experiments/`name`.toml; returns (success, text).
fn with_experiment(d: &Path, name: &str, toml: &str, args: &[&str]) -> (bool, String) {
    let file = format!("experiments/{name}.toml");
    std::fs::write(d.join(&file), toml).unwrap();
    let mut all: Vec<&str> = args.to_vec();
    all.push(&file);
    let out = mnist_lab(d, &all);
    (out.status.success(), text(&out))
}

/// Every hidden file under `dir` (recursively) other than the locks of concurrent runs: what a
/// write or a probe would leave behind.
fn temporary_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name().to_string_lossy().starts_with('.')
                && !e.file_name().to_string_lossy().ends_with(".lock")
            {
                found.push(p);
            }
        }
    }
    found
}

#[test]
fn experiment_names_that_are_not_plain_folder_names_are_refused() {
    // Item 1: `..toml` (stem ".") wrote into the results root, `...toml` (stem "..") into its
    // parent.
    let w = workspace("dotnames");
    let d = w.path();
    for file in ["..toml", "...toml", ".hidden.toml"] {
        for cmd in ["check", "run"] {
            let path = format!("experiments/{file}");
            std::fs::write(d.join(&path), TINY).unwrap();
            let out = mnist_lab(d, &[cmd, &path]);
            let t = text(&out);
            assert_eq!(out.status.code(), Some(1), "{file} {cmd}: {t}");
            assert!(
                t.contains("must start with a letter or digit") && t.contains(&path),
                "{file} {cmd}: {t}"
            );
        }
    }
    assert!(!d.join("results").exists(), "nothing written anywhere");
    assert!(!d.join("folds").exists() && !d.join("folds.csv").exists());
}

#[test]
fn two_outputs_never_share_a_path() {
    // Item 2.
    let w = workspace("shared-outputs");
    let d = w.path();
    let model = tiny_final(d);
    let dir = d.join("two");
    std::fs::create_dir_all(&dir).unwrap();
    for m in ["a", "b"] {
        std::fs::copy(
            model.join("model.safetensors"),
            dir.join(format!("{m}.safetensors")),
        )
        .unwrap();
    }
    let out = mnist_lab(d, &["evaluate", "two/a.safetensors", "two/b.safetensors"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("two/a.safetensors and two/b.safetensors would both write test.csv"),
        "{t}"
    );
    assert!(!dir.join("test.csv").exists(), "refused before scoring");
    // One model named twice (folder and file) is one evaluation.
    let out = mnist_lab(
        d,
        &[
            "evaluate",
            "results/tiny/final",
            "results/tiny/final/model.safetensors",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    // predict: two images of one stem, and an output that is one of the images.
    std::fs::create_dir_all(d.join("sub")).unwrap();
    write_bar(&d.join("A.png"));
    write_bar(&d.join("sub/A.png"));
    let out = mnist_lab(
        d,
        &[
            "predict",
            "results/tiny/final",
            "A.png",
            "sub/A.png",
            "--save-preprocessed",
            "seen",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("A.png and sub/A.png would both be saved as seen/A.png"),
        "{t}"
    );
    assert!(!d.join("seen").exists(), "refused before predicting");
    let before = std::fs::read(d.join("sub/A.png")).unwrap();
    let out = mnist_lab(
        d,
        &[
            "predict",
            "results/tiny/final",
            "sub/A.png",
            "--save-preprocessed",
            "sub",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("would overwrite the image sub/A.png"), "{t}");
    assert_eq!(std::fs::read(d.join("sub/A.png")).unwrap(), before);
}

/// A 28×28 vertical bar on black (an MNIST-style "1") at `path`.
fn write_bar(path: &Path) {
    image::GrayImage::from_fn(28, 28, |x, y| {
        image::Luma([if (13..15).contains(&x) && (4..24).contains(&y) {
            255
        } else {
            0
        }])
    })
    .save(path)
    .unwrap();
}

#[test]
fn cached_rows_that_are_not_a_result_are_a_stale_entry_and_trained_again() {
    // Item 3: a cached fold with val_acc 1.5, an empty (NaN) value, or another fold's label
    // was merged as it was.
    let w = workspace("stale");
    let d = w.path();
    assert!(mnist_lab(d, &["run", "experiments/tiny.toml"])
        .status
        .success());
    let fold1 = d.join("results/tiny/folds/fold-1.csv");
    let good = std::fs::read_to_string(&fold1).unwrap();
    let last = good.lines().last().unwrap().to_string();
    let mut fields: Vec<String> = last.split(',').map(str::to_string).collect();
    let mut edits = Vec::new();
    fields[5] = "1.500000".into();
    edits.push((
        fields.join(","),
        "val_acc is 1.5, expected a fraction in [0, 1]",
    ));
    fields[5] = String::new();
    edits.push((fields.join(","), "val_acc is NaN"));
    let relabelled = format!("2{}", &last[last.find(',').unwrap()..]);
    edits.push((relabelled, "fold is 2, expected 1"));
    for (row, why) in edits {
        std::fs::write(&fold1, good.replace(&last, &row)).unwrap();
        let out = mnist_lab(d, &["run", "experiments/tiny.toml"]);
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert!(
            t.contains("fold-1.csv:3: ")
                && t.contains(why)
                && t.contains("the cache entry is stale; tiny fold 1 is trained again"),
            "{why}: {t}"
        );
        assert!(t.contains("tiny fold 1/2"), "retrained: {t}");
        assert_eq!(std::fs::read_to_string(&fold1).unwrap(), good);
        let mean: f64 = t
            .split("mean=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        assert!((0.0..=100.0).contains(&mean), "{t}");
    }
    // A fold outside a `--fold` run is left out of the merged files, not merged as it is.
    std::fs::write(&fold1, good.replace(&last, &edits_row(&last))).unwrap();
    let out = mnist_lab(d, &["run", "experiments/tiny.toml", "--fold", "2"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("is left out of its merged files"), "{t}");
    let folds = std::fs::read_to_string(d.join("results/tiny/folds.csv")).unwrap();
    assert!(!folds.contains("\n1,") && folds.contains("\n2,"), "{folds}");
}

/// `last` with its val_acc made 1.5.
fn edits_row(last: &str) -> String {
    let mut f: Vec<&str> = last.split(',').collect();
    f[5] = "1.500000";
    f.join(",")
}

#[test]
fn report_refuses_a_corrupt_spec_naming_it() {
    // Item 4: it was filed under dataset "unknown" without a word.
    let w = workspace("corrupt-spec");
    let d = w.path();
    assert!(mnist_lab(d, &["run", "experiments/tiny.toml"])
        .status
        .success());
    std::fs::write(d.join("results/tiny/spec.toml"), "[model\nbroken").unwrap();
    let out = mnist_lab(d, &["report"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("results/tiny/spec.toml: corrupt"), "{t}");
    assert!(!d.join("results/comparison-unknown.png").exists());
}

#[test]
fn a_failed_write_leaves_no_temporary_file() {
    // Item 5: `.fold-2.csv.tmp-PID-N` and `.write-probe-PID` stayed behind.
    let w = workspace("tmpfiles");
    let d = w.path();
    // A folder where fold 2's rows go: its write fails after training.
    std::fs::create_dir_all(d.join("results/tiny/folds/fold-2.csv/x")).unwrap();
    let out = mnist_lab(d, &["run", "experiments/tiny.toml", "--jobs", "1"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("fold-2.csv"), "{t}");
    assert_eq!(temporary_files(&d.join("results")), Vec::<PathBuf>::new());
    // The repository ignores any that a killed process leaves.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for leftover in [
        "results/tiny/folds/.fold-2.csv.a1B2c3.tmp",
        "results/tiny/.spec.toml.x9Y8z7.tmp",
        "results/tiny/.write-probe-x9Y8z7.tmp",
    ] {
        let ignored = std::process::Command::new("git")
            .current_dir(root)
            .args(["check-ignore", "-q", "--no-index", leftover])
            .status()
            .unwrap();
        assert!(ignored.success(), "{leftover} is not ignored by git");
    }
}

#[test]
fn a_sweep_above_the_limit_is_refused_before_it_is_expanded() {
    // Item 6: 7 keys × 30 values aborted with an allocation failure.
    let w = workspace("bigsweep");
    let d = w.path();
    let values: Vec<String> = (1..=30).map(|i| i.to_string()).collect();
    let mut toml = format!("{TINY}\n[sweep]\n");
    for key in ["a", "b", "c", "d", "e", "f", "g"] {
        toml += &format!("\"train.{key}\" = [{}]\n", values.join(", "));
    }
    for cmd in ["check", "run"] {
        let (ok, t) = with_experiment(d, "big", &toml, &[cmd]);
        assert!(!ok, "{t}");
        assert!(
            t.contains("[sweep] makes 21870000000 variants (30 × 30 × 30 × 30 × 30 × 30 × 30 values of 7 keys), above the limit of 1000"),
            "{cmd}: {t}"
        );
    }
}

#[test]
fn absurd_epoch_counts_are_refused_by_check_run_and_final() {
    // Item 7: 100000000 aborted, 2^63 − 1 panicked with "capacity overflow".
    let w = workspace("epochs");
    let d = w.path();
    for epochs in ["100000000", "9223372036854775807"] {
        let toml = TINY.replace("epochs = 2", &format!("epochs = {epochs}"));
        for cmd in ["check", "run", "final"] {
            let (ok, t) = with_experiment(d, "long", &toml, &[cmd]);
            assert!(!ok, "{t}");
            assert!(
                t.contains(&format!("train.epochs is {epochs}, expected 1..=10000"))
                    && !t.contains("panicked"),
                "{cmd}: {t}"
            );
        }
    }
}

#[test]
fn absurd_worker_counts_are_refused_and_workers_capped_at_the_jobs() {
    // Items 8 and 17.
    let w = workspace("workers");
    let d = w.path();
    let out = mnist_lab(d, &["run", "experiments/tiny.toml", "--jobs", "1000000"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("--jobs 1000000 is more workers than mnist-lab starts, expected 1..="),
        "{t}"
    );
    // More workers than folds: one per fold, and said.
    let out = mnist_lab(
        d,
        &[
            "run",
            "experiments/tiny.toml",
            "--jobs",
            "1000",
            "--fold",
            "1",
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("note: --jobs 1000: 1 fold to train, so 1 worker"),
        "{t}"
    );
    for (args, want) in [
        (
            vec!["--workers", "0"],
            "--workers is 0, expected at least 1",
        ),
        (
            vec!["--workers", "1000000"],
            "--workers 1000000 is more workers than mnist-lab starts",
        ),
        (
            vec!["--steps", "0"],
            "--steps 0: expected 10..=1000000 training steps",
        ),
        (
            vec!["--steps", "2"],
            "--steps 2: expected 10..=1000000 training steps",
        ),
    ] {
        let mut all = vec!["bench", "experiments/tiny.toml"];
        all.extend(args);
        let out = mnist_lab(d, &all);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{all:?}: {t}");
        assert!(t.contains(want), "{all:?}: {t}");
        assert!(!t.contains("GFLOP/s"), "{all:?}: measured anyway: {t}");
    }
}

#[test]
fn a_model_file_declaring_a_huge_image_is_refused_before_anything_is_allocated() {
    // Item 9: image_shape = "100000x100000x1" made predict allocate 10 GB and abort.
    let w = workspace("hugeshape");
    let d = w.path();
    let model = tiny_final(d).join("model.safetensors");
    rewrite_model(&model, |h, _| {
        h["__metadata__"]["image_shape"] = "100000x100000x1".into();
    });
    write_bar(&d.join("one.png"));
    let out = mnist_lab(d, &["predict", "results/tiny/final", "one.png"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("metadata \"image_shape\" is \"100000x100000x1\"")
            && t.contains("above the limit of 16777216"),
        "{t}"
    );
}

#[test]
fn two_optimizer_or_schedule_tables_are_one_clear_error() {
    // Item 10: one optimizer was dropped silently; two schedules said "invalid length 2".
    let w = workspace("twokinds");
    let d = w.path();
    let base = TINY.replace("[train]\n", "");
    for (extra, want) in [
        (
            "[train.optimizer.sgd]\nlearning_rate = 0.1\n[train.optimizer.adam]\n",
            "train.optimizer names 2 kinds (adam and sgd), expected one",
        ),
        (
            "[train.schedule.cosine]\n[train.schedule.step]\n",
            "train.schedule names 2 kinds (cosine and step), expected one",
        ),
    ] {
        let toml = format!("{base}\n[train]\nepochs = 2\n{extra}");
        let (ok, t) = with_experiment(d, "two", &toml, &["check"]);
        assert!(!ok, "{t}");
        assert!(
            t.contains("experiments/two.toml") && t.contains(want),
            "{t}"
        );
    }
}

#[test]
fn non_finite_settings_are_refused_naming_the_key() {
    // Item 11: epsilon = nan blamed the learning rate; epsilon = inf trained and was cached.
    let w = workspace("nonfinite");
    let d = w.path();
    let cases = [
        (
            TINY.replace("[train]", "[train.optimizer.adam]\nepsilon = nan\n[train]"),
            "train.optimizer.adam.epsilon is NaN, expected a finite number",
        ),
        (
            TINY.replace(
                "[train]",
                "[train.optimizer.rmsprop]\nepsilon = inf\n[train]",
            ),
            "train.optimizer.rmsprop.epsilon is inf, expected a finite number",
        ),
        (
            TINY.replace(
                "maxpool = 2",
                "maxpool = 2\n[[model.layers]]\nbatchnorm = { epsilon = -inf }",
            ),
            "model.layers[2].batchnorm.epsilon is -inf, expected a finite number",
        ),
        (
            format!("{TINY}\n[sweep]\n\"train.learning_rate\" = [0.1, nan]\n"),
            "sweep.\"train.learning_rate\"[1] is NaN, expected a finite number",
        ),
    ];
    for (toml, want) in cases {
        for cmd in ["check", "run"] {
            let (ok, t) = with_experiment(d, "eps", &toml, &[cmd]);
            assert!(!ok, "{t}");
            assert!(t.contains(want), "{cmd}: {t}");
        }
    }
    assert!(!d.join("results/eps").exists(), "nothing trained or cached");
}

#[test]
fn a_warmup_longer_than_the_run_is_refused() {
    // Item 12: warmup = 100 in a 2-epoch run was clamped to 2 without a word.
    let w = workspace("warmup");
    let d = w.path();
    let toml = TINY.replace("[train]", "[train.schedule.cosine]\nwarmup = 100\n[train]");
    let (ok, t) = with_experiment(d, "warm", &toml, &["check"]);
    assert!(!ok, "{t}");
    assert!(
        t.contains(
            "train.schedule.cosine: warmup is 100 epochs, more than the run's train.epochs (2)"
        ),
        "{t}"
    );
    let (ok, t) = with_experiment(
        d,
        "warm",
        &toml.replace("warmup = 100", "warmup = 2"),
        &["check"],
    );
    assert!(ok, "a warm-up of the whole run is allowed: {t}");
}

#[test]
fn files_under_a_known_datasets_name_must_be_that_dataset() {
    // Item 13: a folder named `mnist` whose labels were all 0 trained to "mean=100.000".
    let w = workspace("fakemnist");
    let d = w.path();
    write_synthetic_mnist(&d.join("data/mnist"), 700, 100);
    let labels = mnist_lab::data::idx::encode_idx(&[700], &[0u8; 700]);
    std::fs::write(d.join("data/mnist/train-labels-idx1-ubyte"), labels).unwrap();
    let toml = TINY.replace("dataset = \"synthetic\"", "dataset = \"mnist\"");
    for cmd in ["check", "run", "final"] {
        let (ok, t) = with_experiment(d, "fake", &toml, &[cmd]);
        assert!(!ok, "{cmd}: {t}");
        assert!(
            t.contains("data/mnist/train-images-idx3-ubyte: sha256 of the decompressed file is")
                && t.contains("not mnist's file")
                && t.contains("mnist-lab data fetch --dataset mnist"),
            "{cmd}: {t}"
        );
        assert!(!t.contains("mean="), "{cmd}: trained: {t}");
    }
}

#[test]
fn check_refuses_what_run_would_refuse_before_training() {
    // Item 14: overflowing header dimensions, more folds than images and count mismatches
    // passed `check`.
    let w = workspace("checklikerun");
    let d = w.path();
    let data = d.join("data/synthetic");
    let toml = TINY.replace("limit = 600\n", "");
    // cv.folds above the number of images.
    let (ok, t) = with_experiment(
        d,
        "folds",
        &toml.replace("folds = 2", "folds = 1000"),
        &["check"],
    );
    assert!(!ok, "{t}");
    assert!(
        t.contains("only 700 training images for cv.folds = 1000"),
        "{t}"
    );
    // One label fewer than images, in the test split.
    let labels: Vec<u8> = (0..99).map(|i| (i % 10) as u8).collect();
    let saved = std::fs::read(data.join("t10k-labels-idx1-ubyte")).unwrap();
    std::fs::write(
        data.join("t10k-labels-idx1-ubyte"),
        mnist_lab::data::idx::encode_idx(&[99], &labels),
    )
    .unwrap();
    let (ok, t) = with_experiment(d, "counts", &toml, &["check"]);
    assert!(!ok, "{t}");
    assert!(
        t.contains("has 100 images but") && t.contains("has 99 labels"),
        "{t}"
    );
    std::fs::write(data.join("t10k-labels-idx1-ubyte"), saved).unwrap();
    // Header dimensions whose product overflows.
    let mut header = vec![0u8, 0, 8, 3];
    for dim in [700u32, 4_000_000_000, 4_000_000_000] {
        header.extend(dim.to_be_bytes());
    }
    std::fs::write(data.join("train-images-idx3-ubyte"), header).unwrap();
    for cmd in ["check", "run"] {
        let (ok, t) = with_experiment(d, "overflow", &toml, &[cmd]);
        assert!(!ok, "{cmd}: {t}");
        assert!(
            t.contains("images of 4000000000×4000000000×1 are") && t.contains("above the limit"),
            "{cmd}: {t}"
        );
    }
}

#[test]
fn a_model_whose_outputs_overflow_predicts_and_scores_nothing() {
    // Item 15: finite but huge weights printed NaN probabilities (`null` in --json), exit 0.
    let w = workspace("overflow");
    let d = w.path();
    let model = tiny_final(d);
    assert!(mnist_lab(d, &["evaluate", "results/tiny/final"])
        .status
        .success());
    let scores = std::fs::read(model.join("test.csv")).unwrap();
    rewrite_model(&model.join("model.safetensors"), |_, data| {
        for w in data.chunks_exact_mut(4) {
            let v = f32::from_le_bytes(w.try_into().unwrap());
            w.copy_from_slice(&(v * 1e30).to_le_bytes());
        }
    });
    write_bar(&d.join("one.png"));
    for json in [false, true] {
        let mut args = vec!["predict", "results/tiny/final", "one.png"];
        if json {
            args.push("--json");
        }
        let out = mnist_lab(d, &args);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{t}");
        assert!(
            t.contains("one.png: the output of the model results/tiny/final/model.safetensors is")
                && t.contains("not a finite number"),
            "{t}"
        );
        assert!(!t.contains("null") && !t.contains("NaN\t"), "{t}");
    }
    let out = mnist_lab(d, &["evaluate", "results/tiny/final"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("not finite numbers") && t.contains("nothing written"),
        "{t}"
    );
    assert_eq!(std::fs::read(model.join("test.csv")).unwrap(), scores);
}

#[test]
fn a_28_pixel_picture_on_paper_is_prepared_and_an_mnist_style_one_kept() {
    // Item 16: a dark stroke on grey paper at 28×28 was only inverted, its background left at
    // 55 of 255.
    let w = workspace("paper28");
    let d = w.path();
    // A digit model: the synthetic dataset's own recipe is the plain fit.
    rewrite_model(&tiny_final(d).join("model.safetensors"), |h, _| {
        h["__metadata__"]["recipe"] = "digit".into();
    });
    image::GrayImage::from_fn(28, 28, |x, y| {
        image::Luma([if (5..7).contains(&x) && (3..15).contains(&y) {
            40
        } else {
            200
        }])
    })
    .save(d.join("paper.png"))
    .unwrap();
    write_bar(&d.join("mnist-style.png"));
    let out = mnist_lab(
        d,
        &[
            "predict",
            "results/tiny/final",
            "paper.png",
            "mnist-style.png",
            "--save-preprocessed",
            "seen",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let seen = image::open(d.join("seen/paper.png")).unwrap().to_luma8();
    assert_eq!(seen.get_pixel(0, 0).0[0], 0, "background made black");
    assert!(
        seen.get_pixel(14, 14).0[0] > 100,
        "the stroke, scaled and centred in the field"
    );
    let kept = image::open(d.join("seen/mnist-style.png"))
        .unwrap()
        .to_luma8();
    assert!(kept == image::open(d.join("mnist-style.png")).unwrap().to_luma8());
}

#[test]
fn plan_refuses_a_path_with_a_line_break() {
    // Item 18: it printed 4 lines for 2 jobs, and `--from-plan` failed on the halves.
    let w = workspace("newline");
    let d = w.path();
    std::fs::create_dir_all(d.join("odd\nfolder")).unwrap();
    std::fs::write(d.join("odd\nfolder/tiny.toml"), TINY).unwrap();
    let out = mnist_lab(d, &["plan", "odd\nfolder/tiny.toml"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("a path with a line break cannot be written into a plan"),
        "{t}"
    );
    assert!(out.stdout.is_empty(), "no partial plan: {t}");
}

#[test]
fn a_closed_stdout_is_an_error_and_writes_into_no_file() {
    // Item 19: `>&-` under predict and plan exited 0 with the output lost.
    let w = workspace("closed");
    let d = w.path();
    tiny_final(d);
    write_bar(&d.join("one.png"));
    let spec = std::fs::read(d.join("results/tiny/final/spec.toml")).unwrap();
    for args in [
        "predict results/tiny/final one.png",
        "predict results/tiny/final one.png --save-preprocessed seen",
        "plan experiments/tiny.toml",
    ] {
        let out = std::process::Command::new("sh")
            .current_dir(d)
            .arg("-c")
            .arg(format!("exec \"$0\" {args} >&-"))
            .arg(env!("CARGO_BIN_EXE_mnist-lab"))
            .output()
            .unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args}: {t}");
        assert!(
            t.contains("could not write to stdout (stdout is closed)"),
            "{args}: {t}"
        );
    }
    // The saved picture is a picture, not a picture with a prediction line written into it.
    assert!(image::open(d.join("seen/one.png")).is_ok());
    assert_eq!(
        std::fs::read(d.join("results/tiny/final/spec.toml")).unwrap(),
        spec
    );
}

#[test]
fn messages_name_what_the_user_wrote() {
    // Item 20.
    let w = workspace("messages");
    let d = w.path();
    // Sweeping a whole table named an internal type ("expected struct TrainFields").
    let (ok, t) = with_experiment(
        d,
        "table",
        &format!("{TINY}\n[sweep]\ntrain = [1, 2]\n"),
        &["check"],
    );
    assert!(!ok, "{t}");
    assert!(
        t.contains("expected a [train] table") && !t.contains("TrainFields"),
        "{t}"
    );
    // A PNG of 2^31 − 1 × 1 pixels said "Memory limit exceeded".
    write_png_header(&d.join("wide.png"), 2_147_483_647, 1);
    let model = tiny_final(d);
    let out = mnist_lab(d, &["predict", &model.display().to_string(), "wide.png"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("wide.png: 2147483647×1 pixels (2147.5 MP) is above predict's limit of 40 MP"),
        "{t}"
    );
    // An IDX path that is a folder said "is missing".
    let data = d.join("data/synthetic");
    std::fs::remove_file(data.join("t10k-labels-idx1-ubyte")).unwrap();
    std::fs::create_dir(data.join("t10k-labels-idx1-ubyte")).unwrap();
    let out = mnist_lab(d, &["check", "experiments/tiny.toml"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("t10k-labels-idx1-ubyte is a folder, expected the IDX file"),
        "{t}"
    );
    // `final --marked` with nothing marked printed nothing.
    let out = mnist_lab(d, &["final", "--marked", "experiments/tiny.toml"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("none of the 1 experiments is marked `final = true`"),
        "{t}"
    );
}

/// Writes a PNG whose header declares `width`×`height` gray pixels (and no pixel data).
fn write_png_header(path: &Path, width: u32, height: u32) {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    let mut crc = flate2::Crc::new();
    crc.update(&ihdr);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc.sum().to_be_bytes());
    // An IDAT chunk (the decoder reads up to the first one for the header): an empty stream.
    let idat = [
        b'I', b'D', b'A', b'T', 0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01,
    ];
    let mut crc = flate2::Crc::new();
    crc.update(&idat);
    png.extend(8u32.to_be_bytes());
    png.extend(idat);
    png.extend(crc.sum().to_be_bytes());
    png.extend(0u32.to_be_bytes());
    png.extend(b"IEND");
    png.extend(0xae42_6082u32.to_be_bytes());
    std::fs::write(path, png).unwrap();
}
