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
    let key1 = d.join("results/tiny/folds/fold-1.key");
    let start = Instant::now();
    while !key1.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "fold 1 never finished"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL, in the middle of fold 2
    child.wait().unwrap();
    assert!(
        !d.join("results/tiny/folds/fold-3.key").exists(),
        "killed too late to test a resume"
    );
    // Nothing half-written is left where results are read.
    for entry in std::fs::read_dir(d.join("results/tiny/folds")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(name.starts_with("fold-") || name.starts_with('.'), "{name}");
    }
    let out = mnist_lab(d, &["run", "experiments/tiny.toml", "--jobs", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("of 3 folds cached"), "{}", text(&out));
    assert_eq!(files(d), files(reference.path()));
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
