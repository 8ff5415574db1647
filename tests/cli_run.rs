//! `mnist-lab run` and `check` as a user runs them, on a small synthetic dataset.

mod common;
use common::*;

fn read(dir: &std::path::Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn run_writes_results_learns_and_is_byte_identical_when_repeated() {
    let w = workspace("run");
    let d = w.path();
    let out = mnist_lab(d, &["run", "experiments/tiny.toml", "--jobs", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("> ") && t.contains("Accuracy: mean="), "{t}");

    let history = read(d, "results/tiny/history.csv");
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines[0], "fold,epoch,train_loss,train_acc,val_loss,val_acc");
    assert_eq!(lines.len(), 1 + 2 * 2, "2 folds × 2 epochs:\n{history}");
    assert!(lines[1].starts_with("1,1,") && lines[4].starts_with("2,2,"));
    let folds = read(d, "results/tiny/folds.csv");
    assert_eq!(folds.lines().count(), 3);
    // The synthetic digits are easy: the model must have learned them.
    for line in folds.lines().skip(1) {
        let acc: f64 = line.split(',').nth(1).unwrap().parse().unwrap();
        assert!(acc > 0.5, "fold did not learn: {line}");
    }
    let spec = read(d, "results/tiny/spec.toml");
    assert!(
        spec.contains("limit = 600") && spec.contains("[[model.layers]]"),
        "{spec}"
    );
    assert!(d.join("results/tiny/timing.csv").is_file());

    // Cached: nothing re-trains.
    let again = mnist_lab(d, &["run", "experiments/tiny.toml"]);
    assert!(
        text(&again).contains("2 of 2 folds cached"),
        "{}",
        text(&again)
    );

    // Forced re-run, one worker: byte-identical numbers.
    let forced = mnist_lab(
        d,
        &["run", "experiments/tiny.toml", "--force", "--jobs", "1"],
    );
    assert!(forced.status.success(), "{}", text(&forced));
    assert_eq!(read(d, "results/tiny/history.csv"), history);
    assert_eq!(read(d, "results/tiny/folds.csv"), folds);
}

#[test]
fn editing_description_or_final_retrains_nothing_but_a_training_setting_does() {
    let w = workspace("edit");
    let d = w.path();
    let out = mnist_lab(d, &["run", "experiments/tiny.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    let history = read(d, "results/tiny/history.csv");
    let edited = TINY
        .replace("tiny test model", "a tiny test model, described better")
        .replace("[data]", "final = true\n[data]");
    std::fs::write(d.join("experiments/tiny.toml"), &edited).unwrap();
    let out = mnist_lab(d, &["run", "experiments/tiny.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("2 of 2 folds cached") && !text(&out).contains("> "),
        "{}",
        text(&out)
    );
    assert_eq!(read(d, "results/tiny/history.csv"), history);
    assert!(read(d, "results/tiny/spec.toml").contains("described better"));
    // The same for the final model.
    assert!(mnist_lab(d, &["final", "experiments/tiny.toml"])
        .status
        .success());
    std::fs::write(
        d.join("experiments/tiny.toml"),
        edited.replace("described better", "described once more"),
    )
    .unwrap();
    let again = mnist_lab(d, &["final", "experiments/tiny.toml"]);
    assert!(text(&again).contains("up to date"), "{}", text(&again));
    // A setting that changes the numbers retrains.
    std::fs::write(
        d.join("experiments/tiny.toml"),
        edited.replace("batch_size = 32", "batch_size = 16"),
    )
    .unwrap();
    let out = mnist_lab(d, &["run", "experiments/tiny.toml"]);
    assert!(
        out.status.success() && !text(&out).contains("folds cached"),
        "{}",
        text(&out)
    );
}

#[test]
fn one_fold_runs_alone_and_writes_only_its_rows() {
    let w = workspace("fold");
    let d = w.path();
    let out = mnist_lab(d, &["run", "experiments/tiny.toml", "--fold", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let history = read(d, "results/tiny/history.csv");
    let rows: Vec<&str> = history.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "one row per epoch of fold 2: {history}");
    assert!(rows.iter().all(|l| l.starts_with("2,")), "{history}");
    let folds = read(d, "results/tiny/folds.csv");
    assert_eq!(folds.lines().skip(1).count(), 1, "{folds}");
    assert!(!d.join("results/tiny/folds/fold-1.csv").exists());
    // A list of folds: the cached one is skipped, the other trained, both merged.
    let out = mnist_lab(d, &["run", "experiments/tiny.toml", "--fold", "1,2"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("tiny fold 1/2") && !t.contains("tiny fold 2/2"),
        "{t}"
    );
    let history = read(d, "results/tiny/history.csv");
    let folds_of = |l: &&str| l.split(',').next().unwrap().to_string();
    assert_eq!(
        history
            .lines()
            .skip(1)
            .map(|l| folds_of(&l))
            .collect::<Vec<_>>(),
        ["1", "1", "2", "2"],
        "{history}"
    );
    let bad = mnist_lab(d, &["run", "experiments/tiny.toml", "--fold", "3"]);
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("--fold 3 is out of range"),
        "{}",
        text(&bad)
    );
}

#[test]
fn check_prints_shapes_and_rejects_bad_files_with_their_name() {
    let w = workspace("check");
    let d = w.path();
    let ok = mnist_lab(d, &["check", "experiments/tiny.toml"]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok).contains("(13, 13, 4)") && text(&ok).contains("total params"),
        "{}",
        text(&ok)
    );
    std::fs::write(
        d.join("experiments/bad.toml"),
        "extends = \"tiny\"\n[train]\nepochs = -1\n",
    )
    .unwrap();
    let bad = mnist_lab(d, &["check", "experiments/bad.toml"]);
    assert!(!bad.status.success());
    let t = text(&bad);
    assert!(
        t.contains("experiments/bad.toml") && t.contains("line 3") && t.contains("epochs"),
        "{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
}

#[test]
fn missing_or_corrupt_data_is_a_clear_error() {
    let w = workspace("data");
    let d = w.path();
    std::fs::remove_file(d.join("data/synthetic/train-labels-idx1-ubyte")).unwrap();
    let out = mnist_lab(d, &["run", "experiments/tiny.toml"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("train-labels-idx1-ubyte is missing"),
        "{}",
        text(&out)
    );
    let img = d.join("data/synthetic/train-images-idx3-ubyte");
    let bytes = std::fs::read(&img).unwrap();
    std::fs::write(&img, &bytes[..1000]).unwrap();
    std::fs::write(
        d.join("data/synthetic/train-labels-idx1-ubyte"),
        mnist_lab::data::idx::encode_idx(&[1], &[1]),
    )
    .unwrap();
    let out = mnist_lab(d, &["run", "experiments/tiny.toml"]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("train-images-idx3-ubyte") && t.contains("truncated"),
        "{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
}

#[test]
fn data_fetch_from_a_folder_verifies_and_rejects_wrong_mnist_files() {
    let w = workspace("fetch");
    let d = w.path();
    // Synthetic files are not MNIST: their sha256 must not pass as MNIST.
    let out = mnist_lab(
        d,
        &[
            "--data-dir",
            "dl",
            "data",
            "fetch",
            "--offline",
            "--from",
            "data/synthetic",
        ],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("sha256 mismatch"), "{}", text(&out));
    // Under another dataset name (no known checksum) the strict IDX checks apply and pass.
    let out = mnist_lab(
        d,
        &[
            "--data-dir",
            "dl",
            "data",
            "fetch",
            "--dataset",
            "other",
            "--from",
            "data/synthetic",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(d.join("dl/other/t10k-labels-idx1-ubyte").is_file());
    // Without known checksums, verify says what it could and could not establish.
    let out = mnist_lab(
        d,
        &["--data-dir", "dl", "data", "verify", "--dataset", "other"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("not verified: no known sha256") && !text(&out).contains(": verified"),
        "{}",
        text(&out)
    );
}

#[test]
fn data_fetch_from_a_folder_of_gz_files_decompresses_them() {
    use std::io::Write;
    let w = workspace("fetch-gz");
    let d = w.path();
    std::fs::create_dir_all(d.join("gz")).unwrap();
    let names = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ];
    for name in names {
        let raw = std::fs::read(d.join("data/synthetic").join(name)).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&raw).unwrap();
        std::fs::write(
            d.join("gz").join(format!("{name}.gz")),
            gz.finish().unwrap(),
        )
        .unwrap();
    }
    let out = mnist_lab(
        d,
        &[
            "data",
            "fetch",
            "--dataset",
            "zipped",
            "--from",
            "gz",
            "--offline",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    for name in names {
        assert_eq!(
            std::fs::read(d.join("data/zipped").join(name)).unwrap(),
            std::fs::read(d.join("data/synthetic").join(name)).unwrap(),
            "{name}"
        );
    }
}

/// Debian's dataset-fashion-mnist, where it is installed (`make data` installs it as root):
/// `data fetch` takes the files from the package's folder without a `--from`, and their
/// checksums are Fashion-MNIST's. Run by hand: `cargo test --test cli_run -- --ignored`.
#[test]
#[ignore]
fn data_fetch_takes_fashion_mnist_from_the_debian_package() {
    let packaged = std::path::Path::new("/usr/share/datasets/fashion-mnist");
    assert!(
        packaged.is_dir(),
        "install it first: apt-get install dataset-fashion-mnist"
    );
    let w = TempDir::new("fetch-deb");
    let out = mnist_lab(
        w.path(),
        &["data", "fetch", "--dataset", "fashion-mnist", "--offline"],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("data/fashion-mnist: verified (sha256 of all four files)"),
        "{t}"
    );
}
