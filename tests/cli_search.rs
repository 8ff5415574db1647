//! Searches: variants drawn from a declared space, pruned by successive halving or a race,
//! decided from scores alone.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::Path;

/// The tiny model of `common`, 4 epochs and 3 folds, searched over 4 learning rates with
/// successive halving (rungs at 1, 2 and 4 epochs, keeping half each time).
fn search_toml() -> String {
    TINY.replace("epochs = 2", "epochs = 4").replace("folds = 2", "folds = 3")
        + "\n[search]\n\"train.learning_rate\" = [0.001, 0.003, 0.01, 0.03]\n[search.halving]\nmin_epochs = 1\neta = 2\n"
}

fn search_workspace(tag: &str) -> TempDir {
    let w = workspace(tag);
    std::fs::write(w.path().join("experiments/s.toml"), search_toml()).unwrap();
    w
}

/// Every result file under `dir` with its bytes, leaving out what differs by nature from run
/// to run (timings) and what only lives while a run does (locks, checkpoints, temporaries).
fn result_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if !(name.starts_with('.')
                || name.ends_with("timing.csv")
                || name.ends_with(".ckpt"))
            {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn a_search_prunes_rung_by_rung_and_cross_validates_its_survivor() {
    let w = search_workspace("search");
    let d = w.path();
    let out = mnist_lab(d, &["check", "experiments/s.toml"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("search s of 4 variants")
            && t.contains("rungs at 1, 2, 4 epochs on folds [1]")
            && t.contains(
                "at most 16 fold-epochs (unpruned: 4 variants × 3 folds × 4 epochs = 48)"
            ),
        "{t}"
    );
    let out = mnist_lab(d, &["run", "experiments/s.toml"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("(search rung 2: to epoch 2)"), "{t}");
    assert!(t.contains("Search s: 4 variants, 1 survivor"), "{t}");
    let csv = std::fs::read_to_string(d.join("results/s/search.csv")).unwrap();
    let status: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap())
        .collect();
    assert_eq!(
        status
            .iter()
            .filter(|s| s.starts_with("stopped at rung"))
            .count(),
        3,
        "{csv}"
    );
    let survivor = csv
        .lines()
        .find(|l| l.ends_with(",survivor"))
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    // Only the survivor is cross-validated; the stopped keep the rows they trained.
    for line in csv.lines().skip(1) {
        let v = line.split(',').next().unwrap();
        let folds = d.join("results").join(v).join("folds.csv");
        assert_eq!(folds.is_file(), v == survivor, "{v}: {csv}");
        if v != survivor {
            assert!(d
                .join("results")
                .join(v)
                .join("folds/fold-1.partial.csv")
                .is_file());
        }
    }
    let folds =
        std::fs::read_to_string(d.join("results").join(&survivor).join("folds.csv")).unwrap();
    assert_eq!(folds.lines().count(), 4, "{folds}");
    // No checkpoint is left once the search is decided.
    let leftovers: Vec<String> = result_files_all(&d.join("results"))
        .into_iter()
        .filter(|n| n.ends_with(".ckpt"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A second run trains nothing.
    let out = mnist_lab(d, &["run", "experiments/s.toml"]);
    assert!(!text(&out).contains("> "), "{}", text(&out));
    // The report: the search's table, compute and plot; the stopped never with a CV score.
    let out = mnist_lab(d, &["report"]);
    assert!(out.status.success(), "{}", text(&out));
    let readme = std::fs::read_to_string(d.join("results/README.md")).unwrap();
    assert!(
        readme.contains("## Searches")
            && readme.contains("Compute: 16 fold-epochs, 33.3% of the 48")
            && readme.contains(&format!("Winner: [{survivor}]")),
        "{readme}"
    );
    let stopped_rows: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("| s-") && l.contains("stopped at rung"))
        .collect();
    assert_eq!(stopped_rows.len(), 3, "{readme}");
    assert!(stopped_rows.iter().all(|l| l.contains("| — |")), "{readme}");
    assert!(d.join("results/s/search.png").is_file());
    // Of a search marked `final = true`, only the winner gets a final model.
    let marked = search_toml().replace(
        "description = \"tiny test model\"",
        "description = \"t\"\nfinal = true",
    );
    std::fs::write(d.join("experiments/s.toml"), marked).unwrap();
    let out = mnist_lab(d, &["final", "--marked", "experiments/s.toml"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains(&format!("s: the final model of its winner, {survivor}")),
        "{t}"
    );
    let finals: Vec<String> = result_files_all(&d.join("results"))
        .into_iter()
        .filter(|n| n.ends_with("final/model.safetensors"))
        .collect();
    assert_eq!(finals.len(), 1, "{finals:?}");
    assert!(
        finals[0].contains(&format!("/{survivor}/final/")),
        "{finals:?}"
    );
}

/// Every file name under `dir`, hidden ones included.
fn result_files_all(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

#[test]
fn a_survivors_folds_are_byte_identical_to_its_run_without_a_search() {
    let w = search_workspace("search-same");
    let d = w.path();
    assert!(mnist_lab(d, &["run", "experiments/s.toml"])
        .status
        .success());
    let csv = std::fs::read_to_string(d.join("results/s/search.csv")).unwrap();
    let line = csv.lines().find(|l| l.ends_with(",survivor")).unwrap();
    let survivor = line.split(',').next().unwrap();
    let lr = line
        .split(',')
        .nth(1)
        .unwrap()
        .trim_start_matches("learning_rate=");
    // The same variant as an experiment of its own, trained in one go.
    let plain = TINY
        .replace("epochs = 2", "epochs = 4")
        .replace("folds = 2", "folds = 3")
        .replace("[train]", &format!("[train]\nlearning_rate = {lr}"));
    std::fs::write(d.join("experiments/plain.toml"), plain).unwrap();
    assert!(mnist_lab(d, &["run", "experiments/plain.toml"])
        .status
        .success());
    for f in [
        "fold-1.csv",
        "fold-1.key",
        "fold-2.csv",
        "fold-3.csv",
        "fold-3.key",
    ] {
        let read =
            |exp: &str| std::fs::read(d.join("results").join(exp).join("folds").join(f)).unwrap();
        assert_eq!(read(survivor), read("plain"), "{f}");
    }
    let stopped = csv
        .lines()
        .find(|l| l.contains("stopped at rung 2"))
        .unwrap();
    let v = stopped.split(',').next().unwrap();
    let lr = stopped
        .split(',')
        .nth(1)
        .unwrap()
        .trim_start_matches("learning_rate=");
    // A stopped variant's rows are its full run's first rows.
    let full = TINY
        .replace("epochs = 2", "epochs = 4")
        .replace("folds = 2", "folds = 3")
        .replace("[train]", &format!("[train]\nlearning_rate = {lr}"));
    std::fs::write(d.join("experiments/full.toml"), full).unwrap();
    assert!(
        mnist_lab(d, &["run", "experiments/full.toml", "--fold", "1"])
            .status
            .success()
    );
    let partial =
        std::fs::read_to_string(d.join("results").join(v).join("folds/fold-1.partial.csv"))
            .unwrap();
    let whole = std::fs::read_to_string(d.join("results/full/folds/fold-1.csv")).unwrap();
    assert_eq!(partial.lines().count(), 3, "{partial}");
    assert!(whole.starts_with(&partial), "{partial}\n{whole}");
}

#[test]
fn a_search_writes_the_same_files_with_one_or_two_workers_plan_lines_or_a_kill() {
    let reference = search_workspace("search-ref");
    let r = reference.path();
    assert!(mnist_lab(r, &["run", "experiments/s.toml", "--jobs", "1"])
        .status
        .success());
    assert!(mnist_lab(r, &["report"]).status.success());
    let want = result_files(&r.join("results"));
    assert!(want.keys().any(|k| k.ends_with("search.csv")));
    // Two workers.
    let two = search_workspace("search-two");
    assert!(
        mnist_lab(two.path(), &["run", "experiments/s.toml", "--jobs", "2"])
            .status
            .success()
    );
    assert!(mnist_lab(two.path(), &["report"]).status.success());
    assert_eq!(result_files(&two.path().join("results")), want, "--jobs 2");
    // Plan lines, one process each, rung after rung (as a job array would), then one run.
    let planned = search_workspace("search-plan");
    let p = planned.path();
    let mut rounds = Vec::new();
    loop {
        let plan = String::from_utf8_lossy(&mnist_lab(p, &["plan", "experiments/s.toml"]).stdout)
            .into_owned();
        if plan.is_empty() {
            break;
        }
        rounds.push(plan.lines().count());
        std::fs::write(p.join("jobs.txt"), &plan).unwrap();
        for i in 0..plan.lines().count() {
            let out = mnist_lab(
                p,
                &["run", "--from-plan", "jobs.txt", "--index", &i.to_string()],
            );
            assert!(out.status.success(), "{}", text(&out));
        }
        assert!(rounds.len() < 10, "{rounds:?}");
    }
    assert_eq!(
        rounds,
        [4, 2, 1, 2],
        "rungs of 4, 2 and 1 variants, then folds 2 and 3"
    );
    assert!(mnist_lab(p, &["run", "experiments/s.toml"])
        .status
        .success());
    assert!(mnist_lab(p, &["report"]).status.success());
    assert_eq!(result_files(&p.join("results")), want, "plan lines");
    // Killed once a checkpoint exists (some variant's fold mid-way), then run again.
    let killed = search_workspace("search-kill");
    let k = killed.path();
    std::fs::write(
        k.join("experiments/s.toml"),
        search_toml()
            .replace("epochs = 4", "epochs = 40")
            .replace("min_epochs = 1", "min_epochs = 10"),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mnist-lab"))
        .current_dir(k)
        .args(["run", "experiments/s.toml", "--jobs", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !result_files_all(&k.join("results"))
        .iter()
        .any(|n| n.ends_with("fold-1.partial.csv"))
    {
        assert!(start.elapsed() < std::time::Duration::from_secs(120));
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(mnist_lab(k, &["run", "experiments/s.toml", "--jobs", "2"])
        .status
        .success());
    // Against a run of the same search never killed.
    let whole = search_workspace("search-whole");
    std::fs::write(
        whole.path().join("experiments/s.toml"),
        std::fs::read(k.join("experiments/s.toml")).unwrap(),
    )
    .unwrap();
    assert!(
        mnist_lab(whole.path(), &["run", "experiments/s.toml", "--jobs", "1"])
            .status
            .success()
    );
    assert_eq!(
        result_files(&k.join("results")),
        result_files(&whole.path().join("results")),
        "killed and resumed"
    );
}

#[test]
fn drawn_variants_are_the_same_on_every_load_and_their_names_show_their_values() {
    let w = workspace("search-draws");
    let d = w.path();
    let toml = TINY.to_string()
        + "\n[search]\ntrials = 5\nseed = 3\n\"train.learning_rate\" = { log_uniform = [0.0001, 0.1] }\n\"model.layers.3.dense.units\" = { int = [8, 64] }\n";
    std::fs::write(d.join("experiments/draw.toml"), toml).unwrap();
    let names = |d: &Path| -> Vec<String> {
        let out = mnist_lab(d, &["plan", "experiments/draw.toml"]);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split_whitespace().nth(2).unwrap().to_string())
            .collect()
    };
    let first = names(d);
    assert_eq!(first.len(), 5 * 2, "5 variants × 2 folds: {first:?}");
    assert_eq!(names(d), first);
    let value = |n: &str, key: &str| -> String {
        // draw-units=42-learning_rate=0.00123: keys in order, each `-<key>=<value>`.
        let rest = n.split(&format!("-{key}=")).nth(1).unwrap();
        rest.split("-units=")
            .next()
            .unwrap()
            .split("-learning_rate=")
            .next()
            .unwrap()
            .to_string()
    };
    for n in &first {
        // Three significant digits, a whole number.
        let lr: f64 = value(n, "learning_rate").parse().unwrap();
        assert!((0.0001..=0.1).contains(&lr), "{n}");
        assert_eq!(format!("{lr:.2e}").parse::<f64>().unwrap(), lr, "{n}");
        let units: usize = value(n, "units").parse().unwrap();
        assert!((8..=64).contains(&units), "{n}");
    }
    // The value in the name is the one trained: the resolved spec says so.
    let out = mnist_lab(d, &["check", "experiments/draw.toml"]);
    let t = text(&out);
    let units: usize = value(&first[0], "units").parse().unwrap();
    assert!(t.contains(&format!("({units})")), "{t}");
}

#[test]
fn bad_searches_are_refused_naming_what_is_wrong() {
    let w = workspace("search-bad");
    let d = w.path();
    let cases = [
        ("[search]\n[search.halving]\nmin_epochs = 1\neta = 2\n", "[search] has no key to search (and the file no [sweep] to prune)"),
        ("[search]\n\"train.learning_rate\" = []\n", "\"train.learning_rate\": has no values"),
        ("[search]\ntrials = 3\n\"train.learning_rate\" = { uniform = [0.1, 0.01] }\n", "uniform = [0.1, 0.01]: a is above b"),
        ("[search]\ntrials = 3\n\"train.learning_rate\" = { log_uniform = [0, 0.01] }\n", "expected 0 < a"),
        ("[search]\n\"train.learning_rate\" = [0.1, 0.01]\n[search.halving]\nmin_epochs = 1\neta = 1\n", "halving.eta is 1, expected more than 1"),
        ("[search]\n\"train.learning_rate\" = [0.1, 0.01]\n[search.halving]\nmin_epochs = 3\neta = 2\n", "halving.min_epochs is 3, beyond train.epochs (2)"),
        ("[search]\n\"train.learning_rate\" = [0.1, 0.01]\n[search.race]\nafter = 2\nalpha = 0.05\n", "a race needs at least 3 folds"),
        ("[search]\ntrials = 3\n\"train.learning_rate\" = [0.1, 0.01]\n", "trials is 3, more than the 2 combinations the space has"),
        ("[search]\n\"train.learning_rate\" = { uniform = [0.01, 0.1] }\n", "trials is needed"),
        ("[sweep]\n\"train.seed\" = [1, 2]\n[search]\n\"train.learning_rate\" = [0.1, 0.01]\n", "[sweep] and [search] both name keys"),
        ("[search]\ntrials = 2\n\"train.learning_rate\" = { uniform = [-1, 0.1] }\n", "-1.0 is not a value it takes"),
    ];
    for (search, want) in cases {
        std::fs::write(d.join("experiments/bad.toml"), format!("{TINY}\n{search}")).unwrap();
        let out = mnist_lab(d, &["check", "experiments/bad.toml"]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{search}: {t}");
        assert!(
            t.contains("experiments/bad.toml") && t.contains(want),
            "{search}\nwant {want:?}\n{t}"
        );
    }
}

#[test]
fn a_race_stops_a_variant_behind_the_leader_and_cross_validates_the_rest() {
    let w = workspace("search-race");
    let d = w.path();
    let toml = TINY.replace("epochs = 2", "epochs = 4").replace("folds = 2", "folds = 5")
        + "\n[search]\n\"train.learning_rate\" = [0.001, 0.003, 0.01, 0.03]\n[search.race]\nafter = 2\nalpha = 0.05\n";
    std::fs::write(d.join("experiments/r.toml"), toml).unwrap();
    let out = mnist_lab(d, &["run", "experiments/r.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    let csv = std::fs::read_to_string(d.join("results/r/search.csv")).unwrap();
    // The slowest learner is raced out once its deficit is significant; it trains no more
    // folds and is never merged as cross-validated.
    let raced = csv
        .lines()
        .find(|l| l.contains("raced out"))
        .unwrap_or_else(|| panic!("{csv}"));
    assert!(raced.starts_with("r-learning_rate=0.001,"), "{csv}");
    let after: usize = raced.split("raced out after fold ").nth(1).unwrap()[..1]
        .parse()
        .unwrap();
    let folds_done: usize = raced.split(',').nth(3).unwrap().parse().unwrap();
    assert_eq!(folds_done, after, "{csv}");
    assert!(!d.join("results/r-learning_rate=0.001/folds.csv").exists());
    let survivors = csv.lines().filter(|l| l.ends_with(",survivor")).count();
    assert_eq!(survivors, 3, "{csv}");
}
