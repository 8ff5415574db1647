//! A dataset that is neither 28×28 nor 10 classes (32×32 images, 26 classes, made here as IDX
//! files) through every command a user runs: nothing may assume MNIST's shape.

mod common;
use common::*;

use image::{GrayImage, Luma};

const LETTERS: &str = r#"
description = "tiny model on 32×32 letters"
[data]
dataset = "letters"
[[model.layers]]
conv = { filters = 6, kernel = 3, activation = "relu", init = "he_uniform" }
[[model.layers]]
maxpool = 2
[[model.layers]]
flatten = true
[[model.layers]]
dense = { units = 26, activation = "softmax" }
[train]
epochs = 4
batch_size = 16
learning_rate = 0.05
[cv]
folds = 2
"#;

fn workspace_of_letters(tag: &str) -> TempDir {
    let t = TempDir::new(tag);
    write_synthetic(&t.path().join("data/letters"), 32, 26, 520, 130);
    std::fs::create_dir_all(t.path().join("experiments")).unwrap();
    std::fs::write(t.path().join("experiments/letters.toml"), LETTERS).unwrap();
    t
}

#[test]
fn a_32x32_dataset_of_26_classes_goes_through_every_command() {
    let w = workspace_of_letters("letters");
    let d = w.path();

    let out = mnist_lab(d, &["data", "verify", "--dataset", "letters"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("520 training, 130 test images") && text(&out).contains("not verified"),
        "{}",
        text(&out)
    );

    let out = mnist_lab(d, &["check", "experiments/letters.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("input 32×32×1 (letters, 26 classes)")
            && t.contains("(30, 30, 6)")
            && t.contains("(15, 15, 6)")
            && t.contains("(1350)")
            && t.contains(&format!("{}", 1350 * 26 + 26)),
        "{t}"
    );
    // The last layer must have one unit per class of this dataset.
    std::fs::write(
        d.join("experiments/ten.toml"),
        LETTERS.replace("units = 26", "units = 10"),
    )
    .unwrap();
    let out = mnist_lab(d, &["check", "experiments/ten.toml"]);
    assert!(
        !out.status.success()
            && text(&out).contains("units = 26")
            && text(&out).contains("26 classes"),
        "{}",
        text(&out)
    );

    let out = mnist_lab(d, &["run", "experiments/letters.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    let folds = std::fs::read_to_string(d.join("results/letters/folds.csv")).unwrap();
    for line in folds.lines().skip(1) {
        let acc: f64 = line.split(',').nth(1).unwrap().parse().unwrap();
        assert!(acc > 0.5, "fold did not learn (chance is 1/26): {line}");
    }

    let out = mnist_lab(d, &["report"]);
    assert!(out.status.success(), "{}", text(&out));
    let readme = std::fs::read_to_string(d.join("results/README.md")).unwrap();
    assert!(readme.contains("## letters"), "{readme}");
    assert!(d.join("results/samples-letters.png").is_file());
    assert!(d.join("results/comparison-letters.png").is_file());

    let out = mnist_lab(d, &["final", "experiments/letters.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = mnist_lab(d, &["evaluate", "results/letters/final"]);
    assert!(out.status.success(), "{}", text(&out));
    let test_csv = std::fs::read_to_string(d.join("results/letters/final/test.csv")).unwrap();
    let header = test_csv.lines().next().unwrap();
    assert!(header.ends_with(",pred_24,pred_25,loss"), "{header}");
    assert_eq!(test_csv.lines().count(), 1 + 26 + 1, "{test_csv}");
    assert!(test_csv.lines().last().unwrap().starts_with("all,130,"));
    assert!(d.join("results/letters/final/confusion.png").is_file());

    // A test image exported at the model's size, and letter 4 drawn ten times as large, dark on
    // light: its bar on rows 10–11 and columns 2–13 of 32, as `synthetic_letter` draws it (the
    // plain `fit` recipe of a dataset known only from its files scales the whole picture).
    let ds = mnist_lab::data::dataset::load(
        &d.join("data/letters"),
        "letters",
        mnist_lab::data::Split::Test,
    )
    .unwrap();
    let exported = GrayImage::from_raw(32, 32, ds.image(0).to_vec()).unwrap();
    exported.save(d.join("exported.png")).unwrap();
    let drawn = GrayImage::from_fn(320, 320, |x, y| {
        Luma([match (y / 10, (20..140).contains(&x)) {
            (10, true) => 55,
            (11, true) => 135,
            _ => 255,
        }])
    });
    drawn.save(d.join("drawn.png")).unwrap();
    let out = mnist_lab(
        d,
        &[
            "predict",
            "results/letters/final",
            "exported.png",
            "drawn.png",
            "--top",
            "3",
            "--save-preprocessed",
            "seen",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let classes: Vec<usize> = stdout
        .lines()
        .map(|l| l.split('\t').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        classes,
        [ds.labels[0] as usize, 4],
        "the exported image's label, then the drawn letter: {stdout}"
    );
    // The exported image is seen as it is; the drawing as the letter it draws.
    let seen = |f: &str| image::open(d.join("seen").join(f)).unwrap().to_luma8();
    assert!(seen("exported.png") == exported);
    assert_eq!(seen("drawn.png").get_pixel(5, 10).0[0], 200);
    assert_eq!(
        image::open(d.join("seen/drawn.png"))
            .unwrap()
            .to_luma8()
            .dimensions(),
        (32, 32)
    );
}
