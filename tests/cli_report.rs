//! `report` and `diff` on hand-made result files.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;

fn write_exp(results: &Path, name: &str, accs: &[f64], split: &str) {
    let dir = results.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut folds = String::from("fold,val_acc,val_loss,split\n");
    let mut hist = String::from("fold,epoch,train_loss,train_acc,val_loss,val_acc\n");
    for (i, a) in accs.iter().enumerate() {
        folds += &format!("{},{a:.6},0.050000,{split}\n", i + 1);
        for e in 1..=3 {
            let t = e as f64 / 3.0;
            hist += &format!(
                "{},{e},{:.6},{:.6},{:.6},{:.6}\n",
                i + 1,
                0.3 - 0.2 * t,
                0.9 + 0.09 * t,
                0.2 - 0.1 * t,
                a - 0.01 * (1.0 - t)
            );
        }
    }
    std::fs::write(dir.join("folds.csv"), folds).unwrap();
    std::fs::write(dir.join("history.csv"), hist).unwrap();
}

fn git(dir: &Path, args: &[&str]) {
    let o = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn report_writes_every_file_and_is_byte_identical_when_rerun() {
    let w = TempDir::new("report");
    let r = w.path().join("results");
    write_exp(
        &r,
        "baseline",
        &[0.9867, 0.9863, 0.9875, 0.9859, 0.9869],
        "aaaa",
    );
    write_exp(
        &r,
        "deeper",
        &[0.9906, 0.9915, 0.9898, 0.9911, 0.9901],
        "aaaa",
    );
    write_exp(
        &r,
        "other-split",
        &[0.9867, 0.9863, 0.9875, 0.9859, 0.9869],
        "bbbb",
    );
    let out = mnist_lab(w.path(), &["report"]);
    assert!(out.status.success(), "{}", text(&out));
    for f in [
        "comparison-unknown.png",
        "summary.csv",
        "README.md",
        "baseline/diagnostics.png",
        "deeper/boxplot.png",
    ] {
        assert!(r.join(f).is_file(), "{f} missing");
    }
    let summary = std::fs::read_to_string(r.join("summary.csv")).unwrap();
    assert!(summary.starts_with("experiment,dataset,folds,mean,std,min,max,params,epochs,split,test_acc\nbaseline,unknown,5,98.666,0.054,"), "{summary}");
    let readme = std::fs::read_to_string(r.join("README.md")).unwrap();
    assert!(
        readme.contains("| [deeper](#deeper) | 5 | 99.062 ± 0.062 | +0.396 ["),
        "{readme}"
    );
    assert!(readme.contains("| better |"), "{readme}");
    assert!(
        readme.contains("not comparable (different folds)"),
        "{readme}"
    );
    let drawn = || -> Vec<Vec<u8>> {
        [
            "comparison-unknown.png",
            "deeper/diagnostics.png",
            "README.md",
        ]
        .iter()
        .map(|f| std::fs::read(r.join(f)).unwrap())
        .collect()
    };
    let before = drawn();
    assert!(mnist_lab(w.path(), &["report"]).status.success());
    let after = drawn();
    assert_eq!(before, after, "report output must be deterministic");
}

/// A resolved spec of a one-dense-layer model on `dataset`.
fn write_spec(results: &Path, name: &str, dataset: &str) {
    std::fs::write(
        results.join(name).join("spec.toml"),
        format!("description = \"{name}\"\n[data]\ndataset = \"{dataset}\"\n[[model.layers]]\nflatten = true\n[[model.layers]]\ndense = {{ units = 10, activation = \"softmax\" }}\n"),
    )
    .unwrap();
}

#[test]
fn report_compares_experiments_only_with_the_baseline_of_their_own_dataset() {
    let w = TempDir::new("report-datasets");
    let r = w.path().join("results");
    let mnist = [0.9867, 0.9863, 0.9875, 0.9859, 0.9869];
    let fashion = [0.9101, 0.9123, 0.9087, 0.9110, 0.9095];
    for (name, dataset, accs) in [
        ("baseline", "mnist", mnist),
        ("deeper", "mnist", mnist.map(|a| a + 0.004)),
        ("fashion-baseline", "fashion-mnist", fashion),
        ("fashion-deeper", "fashion-mnist", fashion.map(|a| a + 0.01)),
    ] {
        write_exp(&r, name, &accs, "aaaa");
        write_spec(&r, name, dataset);
    }
    let out = mnist_lab(w.path(), &["report"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        r.join("comparison-mnist.png").is_file()
            && r.join("comparison-fashion-mnist.png").is_file()
    );
    let readme = std::fs::read_to_string(r.join("README.md")).unwrap();
    let mnist_at = readme.find("## mnist").expect("an mnist section");
    let fashion_at = readme
        .find("## fashion-mnist")
        .expect("a fashion-mnist section");
    assert!(mnist_at < fashion_at, "{readme}");
    let fashion_part = &readme[fashion_at..readme.find("## Experiments").unwrap()];
    assert!(
        fashion_part.contains("Δ vs fashion-baseline"),
        "{fashion_part}"
    );
    assert!(
        fashion_part.contains(
            "| [fashion-baseline](#fashion-baseline) | 5 | 91.032 ± 0.124 | (reference) |"
        ),
        "{fashion_part}"
    );
    let row = fashion_part
        .lines()
        .find(|l| l.starts_with("| [fashion-deeper]"))
        .unwrap();
    assert!(row.contains("+1.000 [") && row.contains("better"), "{row}");
    let mnist_part = &readme[mnist_at..fashion_at];
    assert!(!mnist_part.contains("fashion"), "{mnist_part}");
    let summary = std::fs::read_to_string(r.join("summary.csv")).unwrap();
    assert!(
        summary.contains("\nfashion-baseline,fashion-mnist,5,91.032,0.124,")
            && summary.contains(",7850,10,aaaa,"),
        "{summary}"
    );
}

#[test]
fn report_rejects_a_malformed_csv_naming_file_and_line() {
    let w = TempDir::new("report-bad");
    let r = w.path().join("results");
    write_exp(&r, "baseline", &[0.98, 0.99], "aaaa");
    std::fs::write(
        r.join("baseline/folds.csv"),
        "fold,val_acc,val_loss,split\n1,0.98,0.1,aaaa\n2,high,0.1,aaaa\n",
    )
    .unwrap();
    let out = mnist_lab(w.path(), &["report"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("baseline/folds.csv:3: column val_acc is \"high\""),
        "{}",
        text(&out)
    );
}

#[test]
fn diff_compares_with_an_earlier_commit() {
    let w = TempDir::new("diff");
    let d = w.path();
    git(d, &["init", "-q"]);
    git(d, &["config", "user.email", "t@example.com"]);
    git(d, &["config", "user.name", "t"]);
    let r = d.join("results");
    write_exp(
        &r,
        "baseline",
        &[0.9867, 0.9863, 0.9875, 0.9859, 0.9869],
        "aaaa",
    );
    write_exp(
        &r,
        "deeper",
        &[0.9906, 0.9915, 0.9898, 0.9911, 0.9901],
        "aaaa",
    );
    write_exp(&r, "gone", &[0.97, 0.98], "aaaa");
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "v1"]);
    // deeper gets clearly worse on every fold; gone is removed; new is added.
    write_exp(
        &r,
        "deeper",
        &[0.9806, 0.9815, 0.9800, 0.9809, 0.9803],
        "aaaa",
    );
    std::fs::remove_dir_all(r.join("gone")).unwrap();
    write_exp(&r, "new", &[0.95, 0.96], "bbbb");
    let out = mnist_lab(d, &["diff", "HEAD"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    let line = |name: &str| {
        t.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {t}"))
            .to_string()
    };
    assert!(line("baseline").contains("unchanged"));
    assert!(line("deeper").contains("worse (paired by fold)"), "{t}");
    assert!(
        line("gone").contains("removed") && line("new").contains("added"),
        "{t}"
    );
    let fail = mnist_lab(d, &["diff", "HEAD", "--fail-on-regression"]);
    let f = text(&fail);
    assert_eq!(fail.status.code(), Some(1), "{f}");
    assert!(
        f.contains("worse (paired by fold)")
            && f.contains("error: at least one experiment got significantly worse than at HEAD"),
        "the diff, then why it fails: {f}"
    );
    // Nothing worse (deeper restored): the flag passes.
    write_exp(
        &r,
        "deeper",
        &[0.9906, 0.9915, 0.9898, 0.9911, 0.9901],
        "aaaa",
    );
    let pass = mnist_lab(d, &["diff", "HEAD", "--fail-on-regression"]);
    assert!(pass.status.success(), "{}", text(&pass));
    assert!(
        !text(&pass).contains("worse") && text(&pass).contains("added"),
        "{}",
        text(&pass)
    );
    let bad = mnist_lab(d, &["diff", "no-such-rev"]);
    assert!(
        !bad.status.success() && text(&bad).contains("\"no-such-rev\" is not a commit"),
        "{}",
        text(&bad)
    );
    std::fs::write(d.join("x.txt"), "x").unwrap();
    git(d, &["rm", "-rqf", "results"]);
    git(d, &["add", "x.txt"]);
    git(d, &["commit", "-qm", "no results"]);
    write_exp(&r, "baseline", &[0.98, 0.99], "aaaa");
    let none = mnist_lab(d, &["diff", "HEAD"]);
    assert!(
        !none.status.success() && text(&none).contains("has no results/*/folds.csv"),
        "{}",
        text(&none)
    );
}

#[test]
fn report_baseline_names_the_experiment_everything_is_compared_with() {
    let w = TempDir::new("report-baseline");
    let r = w.path().join("results");
    write_exp(
        &r,
        "baseline",
        &[0.9867, 0.9863, 0.9875, 0.9859, 0.9869],
        "aaaa",
    );
    write_exp(
        &r,
        "deeper",
        &[0.9906, 0.9915, 0.9898, 0.9911, 0.9901],
        "aaaa",
    );
    let out = mnist_lab(w.path(), &["report", "--baseline", "deeper"]);
    assert!(out.status.success(), "{}", text(&out));
    let readme = std::fs::read_to_string(r.join("README.md")).unwrap();
    // baseline is now the one compared, against deeper: the same difference, negated.
    assert!(
        readme.contains("| [baseline](#baseline) | 5 | 98.666 ± 0.054 | -0.396 ["),
        "{readme}"
    );
    assert!(
        !readme.contains("| [deeper](#deeper) | 5 | 99.062 ± 0.062 | +0.396 ["),
        "{readme}"
    );
}
