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
