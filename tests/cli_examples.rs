//! The committed final models on the committed example images: what a fresh clone can do
//! before any training.

mod common;
use common::*;

#[test]
fn committed_models_predict_the_example_digits() {
    // The README's model (modern), and the seed's deeper one.
    for name in ["modern", "deeper"] {
        predicts_the_example_digits(name);
    }
}

fn predicts_the_example_digits(name: &str) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = root.join(format!("results/{name}/final"));
    if !model.join("model.safetensors").is_file() {
        panic!("results/{name}/final/model.safetensors is missing: it is committed so a fresh clone can predict");
    }
    let mut images: Vec<String> = std::fs::read_dir(root.join("examples/digits"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png" || e == "jpg"))
        .map(|p| p.display().to_string())
        .collect();
    images.sort();
    let mut args = vec!["predict".to_string(), model.display().to_string()];
    args.extend(images.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = mnist_lab(root, &args);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(stdout.lines().count(), images.len());
    for line in stdout.lines() {
        let mut f = line.split('\t');
        let path = f.next().unwrap();
        let digit = f.next().unwrap();
        let stem = std::path::Path::new(path)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // drawn-3 → 3, photo-7 → 7; the first MNIST test image is a 7 (the seed's check).
        let want = if stem == "mnist-test-0" {
            "7".to_string()
        } else {
            stem.rsplit('-').next().unwrap().to_string()
        };
        assert_eq!(digit, want, "{name}: {line}");
    }
}

#[test]
fn the_committed_fashion_model_reads_drawn_clothing_and_keeps_dataset_images_as_they_are() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let w = TempDir::new("clothing");
    let seen = w.path().join("seen");
    let mut images: Vec<std::path::PathBuf> = std::fs::read_dir(root.join("examples/clothing"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    images.sort();
    let mut args = vec![
        "predict".to_string(),
        "results/fashion-deeper/final".to_string(),
        "--json".to_string(),
        "--save-preprocessed".to_string(),
        seen.display().to_string(),
    ];
    args.extend(images.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = mnist_lab(root, &args);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(stdout.lines().count(), images.len(), "{stdout}");
    let mut drawn = 0;
    for (line, path) in stdout.lines().zip(&images) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        // The JSON fields the README lists, with the class's name from the model file.
        assert_eq!(v["path"], path.display().to_string(), "{line}");
        let p = v["probability"].as_f64().unwrap();
        assert!(p > 0.0 && p <= 1.0, "{line}");
        let top = v["top"].as_array().unwrap();
        assert_eq!(top.len(), 1, "{line}");
        assert_eq!(
            (&top[0]["class"], &top[0]["name"]),
            (&v["class"], &v["name"]),
            "{line}"
        );
        let names = [
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ];
        assert_eq!(
            v["name"],
            names[v["class"].as_u64().unwrap() as usize],
            "{line}"
        );
        if let Some(garment) = stem.strip_prefix("drawn-") {
            // What the Fashion-MNIST recipe makes of a drawing on paper: the right class.
            let want = match garment {
                "tshirt" => "T-shirt/top",
                "trousers" => "Trouser",
                "sneaker" => "Sneaker",
                "bag" => "Bag",
                "dress" => "Dress",
                "ankle-boot" => "Ankle boot",
                other => panic!("no expected class for drawn-{other}"),
            };
            assert_eq!(v["name"], want, "{line}");
            drawn += 1;
        } else {
            // A dataset image (including those whose product fills most of the border) is
            // seen exactly as it is.
            let original = image::open(path).unwrap().to_luma8();
            let prepared = image::open(seen.join(format!("{stem}.png")))
                .unwrap()
                .to_luma8();
            assert!(original == prepared, "{stem}: changed by preprocessing");
        }
    }
    assert_eq!(drawn, 6);
    // The text form: path, class, probability, the top classes with their names, the name.
    let out = mnist_lab(
        root,
        &[
            "predict",
            "results/fashion-deeper/final",
            "examples/clothing/drawn-trousers.png",
            "--top",
            "2",
        ],
    );
    let line = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields.len(), 5, "{line}");
    assert_eq!(
        (fields[0], fields[1], fields[4]),
        ("examples/clothing/drawn-trousers.png", "1", "Trouser"),
        "{line}"
    );
    assert!(
        fields[3].starts_with("1 Trouser (") && fields[3].matches(" (").count() == 2,
        "{line}"
    );
}

/// Every MNIST and Fashion-MNIST image, train and test (140,000), made a picture of its own
/// size and prepared by its dataset's recipe, comes out unchanged byte for byte. Needs the real
/// data (`make data`), so it is run by hand:
/// `cargo test --release --test cli_examples -- --ignored`.
#[test]
#[ignore]
fn every_dataset_image_comes_out_of_its_recipe_unchanged() {
    use mnist_lab::data::{dataset, Split};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in ["mnist", "fashion-mnist"] {
        for split in [Split::Train, Split::Test] {
            let ds = dataset::load(&root.join("data").join(name), name, split)
                .unwrap_or_else(|e| panic!("{e:#} (run `make data` first)"));
            let shape = ds.info.image;
            let mut changed = Vec::new();
            for i in 0..ds.len() {
                let img = image::GrayImage::from_raw(
                    shape.width as u32,
                    shape.height as u32,
                    ds.image(i).to_vec(),
                )
                .unwrap();
                let out = ds
                    .info
                    .recipe
                    .prepare(&image::DynamicImage::ImageLuma8(img.clone()), shape)
                    .unwrap();
                if out != img {
                    changed.push(i);
                }
            }
            assert!(
                changed.is_empty(),
                "{name} {split:?}: {} images changed, the first {:?}",
                changed.len(),
                &changed[..changed.len().min(10)]
            );
        }
    }
}
