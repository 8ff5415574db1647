//! `final`, `evaluate` and `predict` as a user runs them, on synthetic data.

mod common;
use common::*;

use image::{GrayImage, Luma, Rgb, RgbImage};

#[test]
fn final_evaluate_predict_round_trip() {
    let w = workspace("final");
    let d = w.path();
    let out = mnist_lab(d, &["final", "experiments/tiny.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    let model = d.join("results/tiny/final/model.safetensors");
    assert!(model.is_file() && d.join("results/tiny/final/spec.toml").is_file());
    // Up to date: not trained again.
    let again = mnist_lab(d, &["final", "experiments/tiny.toml"]);
    assert!(text(&again).contains("up to date"), "{}", text(&again));

    let ev = mnist_lab(d, &["evaluate", "results/tiny/final"]);
    assert!(ev.status.success(), "{}", text(&ev));
    let acc: f64 = text(&ev)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(acc > 50.0, "{}", text(&ev));
    let test_csv = std::fs::read_to_string(d.join("results/tiny/final/test.csv")).unwrap();
    assert!(
        test_csv.starts_with("class,n,accuracy,pred_0"),
        "{test_csv}"
    );
    assert_eq!(test_csv.lines().count(), 12);
    assert!(test_csv.lines().last().unwrap().starts_with("all,100,"));
    assert!(d.join("results/tiny/final/confusion.png").is_file());

    // Test images exported as 28×28 PNGs are predicted as the in-memory path predicts them.
    let ds = mnist_lab::data::dataset::load(
        &d.join("data/synthetic"),
        "synthetic",
        mnist_lab::data::Split::Test,
    )
    .unwrap();
    let mut saved = mnist_lab::model::io::load(&model).unwrap();
    let imgs: Vec<GrayImage> = (0..20)
        .map(|i| GrayImage::from_raw(28, 28, ds.image(i).to_vec()).unwrap())
        .collect();
    let in_memory = mnist_lab::predict::predict_prepared(&mut saved, &imgs).unwrap();
    let mut paths = Vec::new();
    for (i, img) in imgs.iter().enumerate() {
        let p = d.join(format!("digit-{i}.png"));
        img.save(&p).unwrap();
        paths.push(p.to_string_lossy().into_owned());
    }
    let mut args = vec!["predict", "results/tiny/final/model.safetensors"];
    args.extend(paths.iter().map(String::as_str));
    let pr = mnist_lab(d, &args);
    assert!(pr.status.success(), "{}", text(&pr));
    let stdout = String::from_utf8_lossy(&pr.stdout).into_owned();
    let digits: Vec<usize> = stdout
        .lines()
        .map(|l| l.split('\t').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        digits,
        in_memory.iter().map(|p| p.class).collect::<Vec<_>>()
    );

    // --top, --json and --save-preprocessed.
    let pr = mnist_lab(
        d,
        &[
            "predict",
            "results/tiny/final",
            &paths[0],
            "--top",
            "3",
            "--json",
            "--save-preprocessed",
            "seen",
        ],
    );
    assert!(pr.status.success(), "{}", text(&pr));
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&pr.stdout).trim()).unwrap();
    assert_eq!(v["top"].as_array().unwrap().len(), 3);
    assert!(d.join("seen/digit-0.png").is_file());
}

#[test]
fn predict_reports_bad_files_and_still_predicts_the_good_ones() {
    let w = workspace("predict-bad");
    let d = w.path();
    assert!(mnist_lab(d, &["final", "experiments/tiny.toml"])
        .status
        .success());
    // A light-background RGB drawing of a bar (the synthetic "digit"), large and off-centre.
    let mut drawing = RgbImage::from_pixel(300, 200, Rgb([255, 255, 255]));
    for y in 60..75 {
        for x in 40..200 {
            drawing.put_pixel(x, y, Rgb([0, 0, 0]));
        }
    }
    drawing.save(d.join("drawing.png")).unwrap();
    std::fs::write(d.join("notes.png"), b"this is text, not a picture").unwrap();
    GrayImage::from_pixel(40, 40, Luma([255]))
        .save(d.join("blank.png"))
        .unwrap();
    let out = mnist_lab(
        d,
        &[
            "predict",
            "results/tiny/final",
            "drawing.png",
            "notes.png",
            "blank.png",
        ],
    );
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("drawing.png\t"), "{t}");
    assert!(t.contains("notes.png: not a readable"), "{t}");
    assert!(
        t.contains("blank.png: the image is blank (no ink stands out from the background)"),
        "{t}"
    );
    assert!(t.contains("2 of 3 images could not be predicted"), "{t}");
    assert!(!t.contains("panicked"), "{t}");

    let model = d.join("results/tiny/final/model.safetensors");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    let out = mnist_lab(d, &["predict", "results/tiny/final", "drawing.png"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("model.safetensors") && text(&out).contains("truncated"),
        "{}",
        text(&out)
    );
}

#[test]
fn final_marked_trains_only_marked_experiments_and_force_retrains() {
    let w = workspace("final-marked");
    let d = w.path();
    std::fs::write(
        d.join("experiments/marked.toml"),
        TINY.replace(
            "description = \"tiny test model\"",
            "description = \"m\"\nfinal = true",
        ),
    )
    .unwrap();
    let both = [
        "final",
        "--marked",
        "experiments/tiny.toml",
        "experiments/marked.toml",
    ];
    let out = mnist_lab(d, &both);
    assert!(out.status.success(), "{}", text(&out));
    let model = d.join("results/marked/final/model.safetensors");
    assert!(model.is_file());
    assert!(!d.join("results/tiny/final").exists(), "tiny is not marked");
    let first = std::fs::read(&model).unwrap();
    // Up to date: nothing trained again.
    let out = mnist_lab(d, &both);
    assert!(
        text(&out).contains("marked: final model is up to date"),
        "{}",
        text(&out)
    );
    // A new description changes no bit of the model: still up to date, and the folder's
    // spec.toml takes the new words.
    let spec = d.join("results/marked/final/spec.toml");
    assert!(std::fs::read_to_string(&spec)
        .unwrap()
        .contains("description = \"m\""));
    let file = d.join("experiments/marked.toml");
    let text_now = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text_now.replace("description = \"m\"", "description = \"n\""),
    )
    .unwrap();
    let out = mnist_lab(d, &both);
    assert!(
        text(&out).contains("marked: final model is up to date"),
        "{}",
        text(&out)
    );
    assert!(std::fs::read_to_string(&spec)
        .unwrap()
        .contains("description = \"n\""));
    assert!(
        std::fs::read(&model).unwrap() == first,
        "the model file was rewritten"
    );
    // --force trains it again, to the same bytes (the file holds the spec it was trained with:
    // the first description again).
    std::fs::write(&file, text_now).unwrap();
    let out = mnist_lab(d, &["final", "--force", "experiments/marked.toml"]);
    let t = text(&out);
    assert!(out.status.success() && !t.contains("up to date"), "{t}");
    assert!(
        std::fs::read(&model).unwrap() == first,
        "retrained to other bytes"
    );
}

#[test]
fn final_jobs_train_several_models_at_once_to_the_same_bytes_and_report_each_failure() {
    // Three models: two that train (a bigger one, taken first, and the tiny one) and one whose
    // layers do not fit its data, which fails without stopping the others.
    let experiments = [
        ("tiny", TINY.to_string()),
        ("wide", TINY.replace("units = 16", "units = 48")),
        ("broken", TINY.replace("kernel = 3", "kernel = 40")),
    ];
    let mut models = Vec::new();
    for jobs in ["1", "3"] {
        let w = workspace(&format!("final-jobs-{jobs}"));
        let d = w.path();
        for (name, toml) in &experiments {
            std::fs::write(d.join(format!("experiments/{name}.toml")), toml).unwrap();
        }
        let out = mnist_lab(
            d,
            &[
                "--threads",
                "2",
                "final",
                "--jobs",
                jobs,
                "experiments/broken.toml",
                "experiments/tiny.toml",
                "experiments/wide.toml",
            ],
        );
        let said = text(&out);
        assert!(!out.status.success(), "{said}");
        assert!(said.contains("1 of 3 final model(s) failed"), "{said}");
        assert!(said.contains("broken: "), "{said}");
        assert!(!d.join("results/broken/final/model.safetensors").exists());
        models.push(["tiny", "wide"].map(|n| {
            std::fs::read(d.join(format!("results/{n}/final/model.safetensors"))).unwrap()
        }));
    }
    assert!(models[0] == models[1], "--jobs changed a model's bytes");
}
