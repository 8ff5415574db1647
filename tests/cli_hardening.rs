//! Inputs that used to lose work or be silently accepted (issue "Hardening").

mod common;
use common::*;

#[test]
fn two_experiments_with_one_name_are_refused_before_any_training() {
    let w = workspace("dupe");
    let d = w.path();
    for sub in ["a", "b"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
        std::fs::write(d.join(sub).join("dupe.toml"), TINY).unwrap();
    }
    for cmd in ["check", "run"] {
        let out = mnist_lab(d, &[cmd, "a/dupe.toml", "b/dupe.toml"]);
        let t = text(&out);
        assert!(!out.status.success(), "{cmd}: {t}");
        assert!(
            t.contains("two experiments are named \"dupe\"")
                && t.contains("a/dupe.toml")
                && t.contains("b/dupe.toml"),
            "{cmd}: {t}"
        );
    }
    assert!(!d.join("results/dupe").exists(), "nothing may be trained");
    // A sweep variant named like an existing file.
    std::fs::write(
        d.join("experiments/sw.toml"),
        format!("{TINY}\n[sweep]\n\"train.learning_rate\" = [0.05]\n"),
    )
    .unwrap();
    std::fs::write(d.join("experiments/sw-learning_rate=0.05.toml"), TINY).unwrap();
    let out = mnist_lab(
        d,
        &[
            "run",
            "experiments/sw.toml",
            "experiments/sw-learning_rate=0.05.toml",
        ],
    );
    assert!(
        !out.status.success() && text(&out).contains("variant sw-learning_rate=0.05"),
        "{}",
        text(&out)
    );
    // The same file named twice is one experiment, not a clash.
    let out = mnist_lab(
        d,
        &["check", "experiments/tiny.toml", "experiments/tiny.toml"],
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn zero_jobs_is_an_error() {
    let w = workspace("jobs0");
    let out = mnist_lab(w.path(), &["run", "experiments/tiny.toml", "--jobs", "0"]);
    assert!(
        !out.status.success() && text(&out).contains("--jobs is 0, expected at least 1"),
        "{}",
        text(&out)
    );
}

#[test]
fn index_without_from_plan_is_an_error() {
    let w = workspace("index");
    let out = mnist_lab(w.path(), &["run", "experiments/tiny.toml", "--index", "0"]);
    assert!(
        !out.status.success() && text(&out).contains("--from-plan"),
        "{}",
        text(&out)
    );
    assert!(!w.path().join("results/tiny").exists());
}

#[test]
fn an_unwritable_results_folder_fails_before_any_training() {
    let w = workspace("unwritable");
    let d = w.path();
    std::fs::write(d.join("a-file"), "not a folder").unwrap();
    for cmd in ["run", "final"] {
        let out = mnist_lab(d, &["--results", "a-file", cmd, "experiments/tiny.toml"]);
        let t = text(&out);
        assert!(!out.status.success(), "{cmd}: {t}");
        assert!(
            t.contains("results folder a-file/tiny") && t.contains("is not writable"),
            "{cmd}: {t}"
        );
        assert!(
            t.contains("Not a directory") && t.contains("nothing was trained"),
            "{cmd}: the OS reason: {t}"
        );
        assert!(!t.contains("epoch"), "{cmd}: trained before failing: {t}");
    }
}

/// Runs `mnist-lab args` in `dir` the way `| head -1` does: reads the first line of its
/// stdout, closes the pipe, waits, and returns that line.
/// Asserts the process ended quietly: no panic, exit 0 or killed by SIGPIPE.
fn first_line_then_close(dir: &std::path::Path, args: &[String]) -> String {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mnist-lab"))
        .current_dir(dir)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(
        out.status.success() || out.status.signal() == Some(13),
        "{args:?}: exit 0 or SIGPIPE, got {:?}: {err}",
        out.status
    );
    first
}

#[test]
fn a_closed_stdout_ends_the_run_quietly_and_keeps_finished_folds() {
    let w = workspace("pipe");
    let d = w.path();
    let args = ["run", "--jobs", "1", "experiments/tiny.toml"].map(String::from);
    let first = first_line_then_close(d, &args);
    assert!(first.contains("tiny fold 1/2"), "{first}");
    assert!(d.join("results/tiny/folds/fold-1.key").is_file());
    // The finished folds are cached: the next run trains at most what is left.
    let again = mnist_lab(d, &["run", "experiments/tiny.toml"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(!text(&again).contains("tiny fold 1/2"), "{}", text(&again));
    // `check … | head -1` with more output than a pipe buffers (~300 KB of tables).
    let mut args = vec!["check".to_string()];
    for i in 0..300 {
        let file = format!("experiments/e{i:03}.toml");
        std::fs::write(d.join(&file), TINY).unwrap();
        args.push(file);
    }
    let first = first_line_then_close(d, &args);
    assert!(first.contains("experiments/e000.toml"), "{first}");
}

#[test]
fn absurd_sizes_are_refused_by_check_and_run_with_the_layer_named() {
    let w = workspace("absurd");
    let d = w.path();
    let cases = [
        (
            "filters",
            TINY.replace("filters = 4", "filters = 1000000000"),
            "model.layers[0] (conv): its output (26, 26, 1000000000)",
        ),
        (
            "units",
            TINY.replace("units = 16", "units = 4000000000"),
            "model.layers[3] (dense): its output (4000000000)",
        ),
        (
            "params",
            TINY.replace("units = 16", "units = 200000"),
            "model.layers[3] (dense): 135400000 parameters",
        ),
        (
            "kernel",
            TINY.replace("kernel = 3,", "kernel = 3000000000, padding = \"same\","),
            "FLOPs per image, above the limit",
        ),
        (
            "batch",
            TINY.replace("batch_size = 32", "batch_size = 100000000"),
            "a training step needs about",
        ),
    ];
    for (name, toml, expected) in cases {
        let file = format!("experiments/{name}.toml");
        std::fs::write(d.join(&file), toml).unwrap();
        for cmd in ["check", "run"] {
            let out = mnist_lab(d, &[cmd, &file]);
            let t = text(&out);
            assert_eq!(out.status.code(), Some(1), "{name} {cmd}: {t}");
            assert!(
                t.contains(expected) && t.contains("limit"),
                "{name} {cmd}: {t}"
            );
        }
    }
}

/// A 28×28 image of a vertical bar (a "1") at `path`.
fn write_digit(path: &std::path::Path) {
    image::GrayImage::from_fn(28, 28, |x, _| image::Luma([if x == 14 { 255 } else { 0 }]))
        .save(path)
        .unwrap();
}

#[test]
fn a_diverging_run_is_an_error_and_no_nan_model_is_saved_or_used() {
    let w = workspace("nan");
    let d = w.path();
    let toml = TINY.replace("[train]", "[train]\nlearning_rate = 1e12");
    std::fs::write(d.join("experiments/nan.toml"), toml).unwrap();
    let out = mnist_lab(d, &["run", "experiments/nan.toml"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("nan fold 1: training diverged: the loss is")
            && t.contains("at epoch 1, batch ")
            && t.contains("try a smaller train.optimizer.learning_rate"),
        "{t}"
    );
    assert!(!d.join("results/nan/folds/fold-1.key").exists());
    // No empty merged files, no "mean=-0.000, n=0" score.
    assert!(
        t.contains("Accuracy: no finished folds  (nan)") && t.contains("0/2 folds done (2 failed)"),
        "{t}"
    );
    assert!(!d.join("results/nan/history.csv").exists());
    let out = mnist_lab(d, &["final", "experiments/nan.toml"]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("nan: final model not saved: training diverged"),
        "{t}"
    );
    assert!(!d.join("results/nan/final/model.safetensors").exists());
    // A model file with a NaN weight (as an older binary could save) is refused by predict.
    assert!(mnist_lab(d, &["final", "experiments/tiny.toml"])
        .status
        .success());
    let path = d.join("results/tiny/final/model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let (name, start) = header
        .as_object()
        .unwrap()
        .iter()
        .find_map(|(k, v)| {
            v.get("data_offsets")
                .map(|o| (k.clone(), o[0].as_u64().unwrap() as usize))
        })
        .unwrap();
    let at = 8 + header_len + start;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    write_digit(&d.join("digit.png"));
    let out = mnist_lab(d, &["predict", "results/tiny/final", "digit.png"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(&format!("tensor {name} holds NaN at index 0"))
            && t.contains("non-finite weights"),
        "{t}"
    );
}

#[test]
fn predict_caps_pixels_before_decoding_and_checks_top() {
    let w = workspace("pixels");
    let d = w.path();
    assert!(mnist_lab(d, &["final", "experiments/tiny.toml"])
        .status
        .success());
    // 7000 × 6000 = 42 MP: a small file (it is all black) that decodes to 42 MB or more.
    image::GrayImage::new(7000, 6000)
        .save(d.join("big.png"))
        .unwrap();
    write_digit(&d.join("digit.png"));
    let out = mnist_lab(
        d,
        &["predict", "results/tiny/final", "big.png", "digit.png"],
    );
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("big.png: 7000×6000 pixels (42.0 MP) is above predict's limit of 40 MP"),
        "{t}"
    );
    assert!(
        t.contains("digit.png"),
        "the other image is still predicted: {t}"
    );
    for (top, ok) in [("0", false), ("10", true), ("11", false)] {
        let out = mnist_lab(
            d,
            &["predict", "--top", top, "results/tiny/final", "digit.png"],
        );
        let t = text(&out);
        assert_eq!(out.status.success(), ok, "--top {top}: {t}");
        if !ok {
            assert!(t.contains(&format!("--top {top}: expected 1..=10")), "{t}");
        }
    }
}

#[test]
fn datasets_are_named_by_one_rule_and_checked_before_a_run() {
    let w = workspace("datasets");
    let d = w.path();
    // `check` looks for the files, even of a dataset whose shape it knows without them.
    let mnist = TINY.replace("dataset = \"synthetic\"", "dataset = \"mnist\"");
    std::fs::write(d.join("experiments/m.toml"), mnist).unwrap();
    let out = mnist_lab(d, &["check", "experiments/m.toml"]);
    let t = text(&out);
    assert!(
        !out.status.success()
            && t.contains("data/mnist/train-images-idx3-ubyte is missing")
            && t.contains("mnist-lab data fetch --dataset mnist"),
        "{t}"
    );
    // An unknown one is named unknown, with what to do instead of a fetch that cannot work.
    let other = TINY.replace("dataset = \"synthetic\"", "dataset = \"nosuch\"");
    std::fs::write(d.join("experiments/n.toml"), other).unwrap();
    for args in [
        &["check", "experiments/n.toml"][..],
        &["data", "verify", "--dataset", "nosuch"][..],
    ] {
        let out = mnist_lab(d, args);
        let t = text(&out);
        assert!(
            !out.status.success()
                && t.contains("dataset \"nosuch\" is unknown to mnist-lab")
                && t.contains("--from FOLDER"),
            "{args:?}: {t}"
        );
    }
    // A path as `data.dataset` in an experiment file is refused, by check and run alike.
    for path in ["../data/synthetic", "/tmp", "sub/folder", "."] {
        let toml = TINY.replace("dataset = \"synthetic\"", &format!("dataset = {path:?}"));
        std::fs::write(d.join("experiments/p.toml"), toml).unwrap();
        for cmd in ["check", "run"] {
            let out = mnist_lab(d, &[cmd, "experiments/p.toml"]);
            let t = text(&out);
            assert!(
                !out.status.success()
                    && t.contains(&format!(
                        "data.dataset: dataset {path:?} is not a dataset name"
                    )),
                "{path} {cmd}: {t}"
            );
        }
    }
    // The TOML's rule holds for --dataset too.
    for args in [
        &["data", "verify", "--dataset", "../data/synthetic"][..],
        &["data", "fetch", "--dataset", "/tmp", "--offline"][..],
    ] {
        let out = mnist_lab(d, args);
        let t = text(&out);
        assert!(
            !out.status.success() && t.contains("is not a dataset name"),
            "{args:?}: {t}"
        );
    }
    let out = mnist_lab(d, &["data", "verify", "--dataset", "synthetic"]);
    assert!(out.status.success(), "{}", text(&out));
    // An image file whose magic marks a label file (same payload): named by its kind, not by
    // a payload length — by `data verify` and `check` (test images), and `run` (training).
    for (file, n, commands) in [
        (
            "t10k-images-idx3-ubyte",
            100,
            &[
                &["data", "verify", "--dataset", "synthetic"][..],
                &["check", "experiments/tiny.toml"][..],
            ][..],
        ),
        (
            "train-images-idx3-ubyte",
            700,
            &[&["run", "experiments/tiny.toml"][..]][..],
        ),
    ] {
        let images = d.join("data/synthetic").join(file);
        let good = std::fs::read(&images).unwrap();
        let mut bad = good.clone();
        bad[3] = 1;
        std::fs::write(&images, bad).unwrap();
        for args in commands {
            let out = mnist_lab(d, args);
            let t = text(&out);
            assert!(
                !out.status.success()
                    && t.contains(&format!("{file}: dimensions [{n}], expected [N, "))
                    && t.contains("(an idx3 image file"),
                "{args:?}: {t}"
            );
        }
        std::fs::write(&images, good).unwrap();
    }
    // A header that does not fit (labels where images belong) is named by check.
    std::fs::copy(
        d.join("data/synthetic/train-labels-idx1-ubyte"),
        d.join("data/synthetic/t10k-images-idx3-ubyte"),
    )
    .unwrap();
    let out = mnist_lab(d, &["check", "experiments/tiny.toml"]);
    assert!(
        !out.status.success() && text(&out).contains("expected [N, 28, 28] (an idx3 image file"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_limit_above_the_data_is_a_warning() {
    let w = workspace("limit");
    let d = w.path();
    let toml = TINY.replace("limit = 600", "limit = 5000");
    std::fs::write(d.join("experiments/big.toml"), toml).unwrap();
    let out = mnist_lab(d, &["run", "experiments/big.toml"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("warning: experiments/big.toml: data.limit is 5000, but dataset \"synthetic\" has 700 training images; using all 700"),
        "{t}"
    );
}

/// Runs `args` in two processes at once in `d`, made to overlap: this holds the lock at
/// `lock` until both have printed `waiting` (they wait for it), so each meets the other's work
/// whatever the timing. Returns each process's lines (stdout and stderr) once both succeeded.
fn two_at_once(
    d: &std::path::Path,
    lock: &std::path::Path,
    args: &[&str],
    waiting: &str,
) -> Vec<Vec<String>> {
    use std::io::BufRead;
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let held = mnist_lab::cv::lock::FileLock::acquire(lock).unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(vec![Vec::new(), Vec::new()]));
    let mut children = Vec::new();
    let mut readers = Vec::new();
    for i in 0..2 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mnist-lab"))
            .current_dir(d)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            readers.push(std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream).lines() {
                    lines.lock().unwrap()[i].push(line.unwrap());
                }
            }));
        }
        children.push(child);
    }
    let start = std::time::Instant::now();
    while !lines
        .lock()
        .unwrap()
        .iter()
        .all(|l| l.iter().any(|l| l.contains(waiting)))
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "both should wait for {}: {:?}",
            lock.display(),
            lines.lock().unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(held);
    for mut child in children {
        assert!(
            child.wait().unwrap().success(),
            "{:?}",
            lines.lock().unwrap()
        );
    }
    readers.into_iter().for_each(|r| r.join().unwrap());
    let out = std::mem::take(&mut *lines.lock().unwrap());
    out
}

#[test]
fn two_runs_of_one_experiment_train_each_fold_once() {
    let w = workspace("lock");
    let d = w.path();
    let lines = two_at_once(
        d,
        &d.join("results/tiny/folds/.fold-1.lock"),
        &["run", "--jobs", "1", "experiments/tiny.toml"],
        "tiny fold 1: another mnist-lab process is training it; waiting for its lock",
    );
    let mut trained = 0;
    for out in lines.iter() {
        let t = out.join("\n");
        // Each ends with both folds merged, whoever trained them.
        assert!(t.contains("n=2  (tiny)"), "{t}");
        trained += out.iter().filter(|l| l.starts_with("> ")).count();
    }
    assert_eq!(trained, 2, "each fold trained once: {lines:?}");
    let folds = std::fs::read_to_string(d.join("results/tiny/folds.csv")).unwrap();
    assert_eq!(folds.lines().count(), 3, "{folds}");
}

#[test]
fn two_finals_of_one_experiment_train_it_once() {
    let w = workspace("final-lock");
    let d = w.path();
    let lines = two_at_once(
        d,
        &d.join("results/tiny/final/.final.lock"),
        &["final", "experiments/tiny.toml"],
        "tiny: another mnist-lab process is training its final model; waiting for its lock",
    );
    let count = |what: &str| {
        lines
            .iter()
            .map(|out| out.iter().filter(|l| l.contains(what)).count())
            .sum::<usize>()
    };
    assert_eq!(count("saved "), 1, "trained once: {lines:?}");
    assert_eq!(count("tiny: final model is up to date"), 1, "{lines:?}");
    assert!(d.join("results/tiny/final/model.safetensors").is_file());
}

#[test]
fn plan_lines_survive_paths_with_spaces() {
    let w = workspace("spaces");
    let d = w.path();
    std::fs::create_dir_all(d.join("it's my experiments")).unwrap();
    std::fs::write(
        d.join("it's my experiments/tiny.toml"),
        format!("{TINY}\n[sweep]\n\"train.learning_rate\" = [0.05]\n"),
    )
    .unwrap();
    let out = mnist_lab(d, &["plan", "it's my experiments/tiny.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(plan.lines().count(), 2, "{plan}");
    std::fs::write(d.join("plan.txt"), &plan).unwrap();
    let out = mnist_lab(d, &["run", "--from-plan", "plan.txt", "--index", "0"]);
    assert!(out.status.success(), "{plan}\n{}", text(&out));
    // A line is also what a POSIX shell reads after `mnist-lab run` (quotes and all).
    let line = plan.lines().nth(1).unwrap();
    let out = std::process::Command::new("sh")
        .current_dir(d)
        .arg("-c")
        .arg(format!("\"$0\" run {line}"))
        .arg(env!("CARGO_BIN_EXE_mnist-lab"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{line}\n{}", text(&out));
    assert!(text(&out).contains("fold 2/2"), "{line}\n{}", text(&out));
    let name = "tiny-learning_rate=0.05";
    let folds = std::fs::read_to_string(d.join("results").join(name).join("folds.csv")).unwrap();
    assert_eq!(folds.lines().count(), 3, "{folds}");
    // Nothing left to plan.
    let out = mnist_lab(d, &["plan", "it's my experiments/tiny.toml"]);
    assert!(out.stdout.is_empty(), "{}", text(&out));
}

#[test]
fn a_run_shows_an_overall_line_of_folds_done_and_time_left() {
    let w = workspace("overall");
    let out = mnist_lab(w.path(), &["run", "--jobs", "1", "experiments/tiny.toml"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("all: 1/2 folds done, ") && t.contains(" left"),
        "{t}"
    );
    assert!(t.contains("all: 2/2 folds done, "), "{t}");
}

/// Runs `mnist-lab args` in a pseudo-terminal of `cols` columns (util-linux `script`), and
/// returns what it drew with the escape sequences removed, split at carriage returns and
/// newlines; `None` where `script` is not installed.
fn in_terminal(dir: &std::path::Path, cols: usize, args: &str) -> Option<Vec<String>> {
    let bin = env!("CARGO_BIN_EXE_mnist-lab");
    let out = std::process::Command::new("script")
        .current_dir(dir)
        .args([
            "-qec",
            &format!("stty rows 40 cols {cols}; {bin} {args}"),
            "/dev/null",
        ])
        .output()
        .ok()?;
    assert!(out.status.success(), "{}", text(&out));
    let raw = String::from_utf8_lossy(&out.stdout).to_string();
    let mut plain = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters final-letter.
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            plain.push(c);
        }
    }
    Some(
        plain
            .split(['\r', '\n'])
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
    )
}

#[test]
fn progress_bars_fit_the_terminal() {
    let w = workspace("width");
    let toml = TINY.replace("epochs = 2", "epochs = 4");
    std::fs::write(
        w.path()
            .join("experiments/a-rather-long-experiment-name.toml"),
        toml,
    )
    .unwrap();
    for cols in [80, 120] {
        let _ = std::fs::remove_dir_all(w.path().join("results"));
        let Some(lines) = in_terminal(
            w.path(),
            cols,
            "run --jobs 2 experiments/a-rather-long-experiment-name.toml",
        ) else {
            eprintln!("skipped: util-linux `script` is not installed");
            return;
        };
        let bars: Vec<&String> = lines.iter().filter(|l| l.contains("epoch ")).collect();
        assert!(!bars.is_empty(), "{lines:#?}");
        for l in &lines {
            assert!(
                l.chars().count() <= cols,
                "{} columns in a {cols}-column terminal: {l:?}",
                l.chars().count()
            );
        }
        assert!(lines.iter().any(|l| l.starts_with("all: ")), "{lines:#?}");
    }
}

#[test]
fn a_full_disk_behind_stdout_or_stderr_is_no_panic() {
    let w = workspace("full");
    let d = w.path();
    let run = |stdout: std::process::Stdio, stderr: std::process::Stdio| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mnist-lab"))
            .current_dir(d)
            .args(["run", "experiments/tiny.toml", "--force"])
            .stdout(stdout)
            .stderr(stderr)
            .output()
            .unwrap()
    };
    let full = || std::fs::File::create("/dev/full").unwrap().into();
    // stdout on a full device: training goes on, the folds are kept, and the exit says why.
    let out = run(full(), std::process::Stdio::piped());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("error: could not write to stdout (No space left on device"),
        "{err}"
    );
    assert!(d.join("results/tiny/folds/fold-2.key").is_file());
    // stderr on a full device: nowhere to say anything, but the run still completes.
    let out = run(std::process::Stdio::piped(), full());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("n=2  (tiny)"));
}
