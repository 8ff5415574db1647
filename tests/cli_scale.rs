//! Scaling out and resuming: `plan` with xargs and make, `--from-plan`, sweeps, and a run
//! killed in the middle of a fold.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn bin_dir() -> String {
    Path::new(env!("CARGO_BIN_EXE_mnist-lab"))
        .parent()
        .unwrap()
        .display()
        .to_string()
}

fn sh(dir: &Path, script: &str) -> std::process::Output {
    let path = format!(
        "{}:{}",
        bin_dir(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("PATH", path)
        .output()
        .unwrap()
}

fn files(dir: &Path) -> (String, String) {
    (
        std::fs::read_to_string(dir.join("results/tiny/history.csv")).unwrap(),
        std::fs::read_to_string(dir.join("results/tiny/folds.csv")).unwrap(),
    )
}

fn set_folds(dir: &Path, folds: usize, epochs: usize) {
    let text = TINY
        .replace("folds = 2", &format!("folds = {folds}"))
        .replace("epochs = 2", &format!("epochs = {epochs}"));
    std::fs::write(dir.join("experiments/tiny.toml"), text).unwrap();
}

#[test]
fn plan_lines_run_through_xargs_and_make_give_the_same_results_as_one_run() {
    let reference = workspace("scale-ref");
    set_folds(reference.path(), 3, 2);
    assert!(
        mnist_lab(reference.path(), &["run", "experiments/tiny.toml"])
            .status
            .success()
    );

    // xargs: each plan line is one `mnist-lab run` process; a final `run` merges (all cached).
    let x = workspace("scale-xargs");
    set_folds(x.path(), 3, 2);
    let plan = mnist_lab(x.path(), &["plan", "experiments/tiny.toml"]);
    let lines = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert_eq!(lines, "experiments/tiny.toml --fold 1\nexperiments/tiny.toml --fold 2\nexperiments/tiny.toml --fold 3\n");
    let out = sh(x.path(), "mnist-lab plan experiments/tiny.toml | xargs -P 2 -L 1 mnist-lab run && mnist-lab run experiments/tiny.toml");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("3 of 3 folds cached"), "{}", text(&out));
    assert_eq!(files(x.path()), files(reference.path()));
    assert_eq!(
        String::from_utf8_lossy(&mnist_lab(x.path(), &["plan", "experiments/tiny.toml"]).stdout),
        ""
    );

    // make -j2 over a frozen plan file, each job picking its line by index (as a job array).
    let m = workspace("scale-make");
    set_folds(m.path(), 3, 2);
    std::fs::write(
        m.path().join("scale.mk"),
        "N := $(shell wc -l < jobs.txt)\nall: $(addprefix job-,$(shell seq 0 $$(($(N) - 1))))\njob-%:\n\tmnist-lab run --from-plan jobs.txt --index $*\n",
    )
    .unwrap();
    let out = sh(m.path(), "mnist-lab plan experiments/tiny.toml > jobs.txt && make -s -j2 -f scale.mk && mnist-lab run experiments/tiny.toml");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(files(m.path()), files(reference.path()));
    let bad = mnist_lab(
        m.path(),
        &["run", "--from-plan", "jobs.txt", "--index", "7"],
    );
    assert!(
        !bad.status.success() && text(&bad).contains("has 3 jobs"),
        "{}",
        text(&bad)
    );
}

#[test]
fn a_run_killed_mid_fold_resumes_to_the_same_bytes() {
    let reference = workspace("kill-ref");
    set_folds(reference.path(), 3, 40);
    assert!(mnist_lab(
        reference.path(),
        &["run", "experiments/tiny.toml", "--jobs", "1"]
    )
    .status
    .success());

    let w = workspace("kill");
    let d = w.path();
    set_folds(d, 3, 40);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mnist-lab"))
        .current_dir(d)
        .args(["run", "experiments/tiny.toml", "--jobs", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once fold 2 has saved a checkpoint (after one of its epochs or more).
    let ckpt = d.join("results/tiny/folds/fold-2.ckpt");
    let start = Instant::now();
    while !ckpt.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "fold 2 never saved a checkpoint"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL, in the middle of fold 2
    child.wait().unwrap();
    assert!(
        !d.join("results/tiny/folds/fold-2.key").exists() && ckpt.exists(),
        "killed too late to test a resume"
    );
    // Nothing half-written is left where results are read.
    assert_nothing_half_written(&d.join("results/tiny/folds"), 40);
    let out = mnist_lab(d, &["run", "experiments/tiny.toml", "--jobs", "1"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("1 of 3 folds cached"), "{t}");
    // Fold 2 goes on from its checkpoint: it trains only the epochs it had not finished.
    let after: usize = t
        .split("tiny fold 2: going on after epoch ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("fold 2 did not go on from its checkpoint: {t}"));
    assert!((1..40).contains(&after), "{t}");
    assert!(
        !t.contains(&format!("tiny fold 2/3 epoch {after}/40")),
        "{t}"
    );
    assert!(
        t.contains(&format!("tiny fold 2/3 epoch {}/40", after + 1)),
        "{t}"
    );
    assert!(!ckpt.exists(), "removed once the fold is done");
    assert_eq!(files(d), files(reference.path()));
    // Every fold file byte for byte as a run that was never killed wrote it.
    for f in ["fold-1.csv", "fold-2.csv", "fold-3.csv", "fold-2.key"] {
        let read = |root: &Path| std::fs::read(root.join("results/tiny/folds").join(f)).unwrap();
        assert_eq!(read(d), read(reference.path()), "{f}");
    }
}

/// Fails unless every file in a `folds/` folder is whole: each `fold-K.csv` a complete history
/// of fold K (`epochs` rows), each `fold-K.key` a sha256 beside its rows, each `fold-K.timing.csv`
/// a header and one row, each `fold-K.ckpt` a checkpoint that loads; hidden files only the locks
/// and the temporary files of atomic writes.
fn assert_nothing_half_written(folds: &Path, epochs: usize) {
    for entry in std::fs::read_dir(folds).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') {
            let lock = name.starts_with(".fold-") && name.ends_with(".lock");
            assert!(lock || name.ends_with(".tmp"), "{name}");
            continue;
        }
        let (stem, ext) = name.split_once('.').unwrap_or((&name, ""));
        let fold: usize = stem
            .strip_prefix("fold-")
            .and_then(|k| k.parse().ok())
            .unwrap_or_else(|| panic!("{name}: not a fold file"));
        let text = match ext {
            "ckpt" => String::new(),
            _ => std::fs::read_to_string(&path).unwrap(),
        };
        match ext {
            "csv" => {
                let rows = mnist_lab::results::csv::parse_history(&text, &path).unwrap();
                assert_eq!(rows.len(), epochs, "{name}: {text}");
                assert!(rows.iter().all(|r| r.fold == fold), "{name}");
            }
            "key" => {
                let key = text
                    .strip_suffix('\n')
                    .unwrap_or_else(|| panic!("{name}: {text:?}"));
                assert!(
                    key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit()),
                    "{name}: {text:?}"
                );
                assert!(folds.join(format!("fold-{fold}.csv")).is_file(), "{name}");
            }
            "timing.csv" => assert_eq!(text.lines().count(), 2, "{name}: {text:?}"),
            "ckpt" => {
                let bytes = std::fs::read(&path).unwrap();
                let st = safetensors::SafeTensors::deserialize(&bytes)
                    .unwrap_or_else(|e| panic!("{name}: {e:?}"));
                assert!(st.names().iter().any(|n| *n == "history.values"), "{name}");
            }
            _ => panic!("{name}: not a fold file"),
        }
    }
}

#[test]
#[should_panic(expected = "fold-2.csv")]
fn the_half_written_check_finds_a_truncated_fold_file() {
    let w = TempDir::new("half-written");
    let full = "fold,epoch,train_loss,train_acc,val_loss,val_acc\n2,1,0.5,0.9,0.4,0.9\n2,2,0.4,0.9,0.3,0.9\n";
    std::fs::write(w.path().join("fold-2.csv"), &full[..full.len() - 20]).unwrap();
    assert_nothing_half_written(w.path(), 2);
}

#[test]
fn a_sweep_runs_each_variant_as_its_own_experiment() {
    let w = workspace("sweep");
    let d = w.path();
    std::fs::write(
        d.join("experiments/lr.toml"),
        "extends = \"tiny\"\n[train]\nepochs = 1\n[sweep]\n\"train.learning_rate\" = [0.01, 0.05]\n",
    )
    .unwrap();
    let plan = String::from_utf8_lossy(&mnist_lab(d, &["plan", "experiments/lr.toml"]).stdout)
        .into_owned();
    assert!(
        plan.starts_with("experiments/lr.toml --experiment lr-learning_rate=0.01 --fold 1\n"),
        "{plan}"
    );
    assert_eq!(plan.lines().count(), 4);
    let out = mnist_lab(d, &["run", "experiments/lr.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    for v in ["lr-learning_rate=0.01", "lr-learning_rate=0.05"] {
        let spec = std::fs::read_to_string(d.join(format!("results/{v}/spec.toml"))).unwrap();
        assert!(!spec.contains("sweep"), "{spec}");
        assert!(d.join(format!("results/{v}/folds.csv")).is_file());
    }
    let one = mnist_lab(d, &["run", "experiments/lr.toml", "--experiment", "nope"]);
    assert!(!one.status.success() && text(&one).contains("no experiment named \"nope\""));
}
