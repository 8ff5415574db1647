//! Predicting the class of real images: each picture is made into what the network saw in
//! training by the recipe of the model's dataset (see [`crate::data::recipe`]: MNIST's for
//! digits, Fashion-MNIST's for clothing, a plain fit for other datasets), then classified.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::GrayImage;

use crate::model::io::SavedModel;
use crate::model::loss::softmax;
use crate::train::logits;

/// One image's prediction.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// Most probable class.
    pub class: usize,
    /// Softmax probabilities of the classes.
    pub probs: Vec<f32>,
    /// The image the network saw.
    pub input: GrayImage,
}

impl Prediction {
    /// The `k` most probable classes, most probable first.
    pub fn top(&self, k: usize) -> Vec<(usize, f32)> {
        let mut v: Vec<(usize, f32)> = self.probs.iter().cloned().enumerate().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(k);
        v
    }
}

/// A class's name, when the classes have names other than their numbers.
fn name_of(names: &[String], class: usize) -> Option<&str> {
    let n = names.get(class)?;
    (*n != class.to_string()).then_some(n.as_str())
}

/// `predict`'s text line for one image: path, class, probability, then (with `top` > 1) the
/// `top` most probable classes, then the class's name when the classes have names.
pub fn text_line(path: &Path, p: &Prediction, top: usize, names: &[String]) -> String {
    let mut line = format!("{}\t{}\t{:.3}", path.display(), p.class, p.probs[p.class]);
    if top > 1 {
        let alts: Vec<String> = p
            .top(top)
            .iter()
            .map(|(c, pr)| match name_of(names, *c) {
                Some(n) => format!("{c} {n} ({pr:.3})"),
                None => format!("{c} ({pr:.3})"),
            })
            .collect();
        line += &format!("\t{}", alts.join(" "));
    }
    if let Some(n) = name_of(names, p.class) {
        line += &format!("\t{n}");
    }
    line
}

/// `predict --json`'s line for one image.
pub fn json_line(path: &Path, p: &Prediction, top: usize, names: &[String]) -> String {
    let entry = |c: usize, pr: f32| {
        let mut v = serde_json::json!({"class": c, "probability": pr});
        if let Some(n) = name_of(names, c) {
            v["name"] = n.into();
        }
        v
    };
    let mut v = entry(p.class, p.probs[p.class]);
    v["path"] = path.display().to_string().into();
    v["top"] = p
        .top(top.max(1))
        .iter()
        .map(|&(c, pr)| entry(c, pr))
        .collect();
    v.to_string()
}

/// Classifies images already in the model's form and size (white on black). A model whose
/// outputs are not finite numbers (weights finite but so large that they overflow) is an
/// error, not a prediction.
pub fn predict_prepared(model: &mut SavedModel, images: &[GrayImage]) -> Result<Vec<Prediction>> {
    let pixels = model.info.image.len();
    let mut x = vec![0.0f32; images.len() * pixels];
    for (row, img) in x.chunks_exact_mut(pixels).zip(images) {
        model.scaler.scale_into(img.as_raw(), row);
    }
    let out = logits(&mut model.net, x);
    out.chunks_exact(model.info.classes())
        .zip(images)
        .map(|(l, img)| {
            let probs = softmax(l);
            if let Some(bad) = l.iter().chain(&probs).find(|v| !v.is_finite()) {
                bail!(
                    "the output of the model {} is {bad}, not a finite number: its weights overflow (finite but far too large); retrain it",
                    model.path.display()
                );
            }
            Ok(Prediction {
                class: crate::model::loss::argmax(&probs),
                probs,
                input: img.clone(),
            })
        })
        .collect()
}

/// The most pixels `predict` decodes from one image file (40 MP: a 7,300 × 5,500 photo; about
/// 160 MB decoded as RGBA).
pub const MAX_PIXELS: u64 = 40_000_000;

/// Reads, preprocesses and classifies one image file.
pub fn predict_file(model: &mut SavedModel, path: &Path) -> Result<Prediction> {
    let shape = model.info.image;
    if shape.channels != 1 {
        bail!(
            "{}: predict prepares gray images; this model takes {} channels",
            path.display(),
            shape.channels
        );
    }
    let reader = || -> Result<_> {
        image::ImageReader::open(path)
            .with_context(|| format!("{}: cannot open", path.display()))?
            .with_guessed_format()
            .with_context(|| format!("{}: cannot read", path.display()))
    };
    // The size in the header, before anything is decoded: a small file can declare an image
    // that takes gigabytes decoded. Read without the decoder's memory limits (reading a header
    // allocates nothing of the image's size), so that the limit said is ours, in pixels.
    let mut header = reader()?;
    header.no_limits();
    let (w, h) = header.into_dimensions().map_err(|e| {
        anyhow::anyhow!(
            "{}: not a readable PNG/JPEG/BMP image ({e})",
            path.display()
        )
    })?;
    if w as u64 * h as u64 > MAX_PIXELS {
        bail!(
            "{}: {w}×{h} pixels ({:.1} MP) is above predict's limit of {} MP; scale the image down first",
            path.display(),
            w as f64 * h as f64 / 1e6,
            MAX_PIXELS / 1_000_000
        );
    }
    let img = reader()?.decode().map_err(|e| {
        anyhow::anyhow!(
            "{}: not a readable PNG/JPEG/BMP image ({e})",
            path.display()
        )
    })?;
    let prepared = model
        .info
        .recipe
        .prepare(&img, shape)
        .with_context(|| path.display().to_string())?;
    let mut predicted =
        predict_prepared(model, &[prepared]).with_context(|| path.display().to_string())?;
    Ok(predicted.remove(0))
}

/// Where `--save-preprocessed DIR` writes each image's prepared form: `DIR/<stem>.png`. Two
/// images of one stem (`a/x.png`, `b/x.jpg`) would overwrite each other, and a path that is one
/// of the images would overwrite the user's picture: both are refused before anything is
/// predicted.
pub fn saved_paths(dir: &Path, images: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let inputs: Vec<PathBuf> = images.iter().map(|p| canonical(p)).collect();
    let mut out: Vec<PathBuf> = Vec::with_capacity(images.len());
    for path in images {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        let saved = dir.join(format!("{stem}.png"));
        if let Some(j) = out.iter().position(|o| *o == saved) {
            bail!(
                "--save-preprocessed: {} and {} would both be saved as {}; predict them in separate runs (or rename one)",
                images[j].display(),
                path.display(),
                saved.display()
            );
        }
        if let Some(j) = inputs.iter().position(|p| *p == canonical(&saved)) {
            bail!(
                "--save-preprocessed: saving {} as {} would overwrite the image {}; choose another folder",
                path.display(),
                saved.display(),
                images[j].display()
            );
        }
        out.push(saved);
    }
    Ok(out)
}

/// `mnist-lab predict`: prints the prediction of each image file (text or JSON lines), writes
/// the image the network saw into `save` when given, and fails if any image could not be
/// predicted (after predicting the others).
pub fn predict_files(
    model: &Path,
    images: &[PathBuf],
    top: usize,
    json: bool,
    save: Option<&Path>,
) -> Result<()> {
    let mut m = crate::model::io::load(&crate::final_model::model_path(model))?;
    let classes = m.info.classes();
    if top == 0 || top > classes {
        bail!("--top {top}: expected 1..={classes} (the model's classes)");
    }
    let saved = match save {
        Some(dir) => {
            let saved = saved_paths(dir, images)?;
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            saved
        }
        None => Vec::new(),
    };
    let mut failed = 0;
    for (i, path) in images.iter().enumerate() {
        let p = match predict_file(&mut m, path) {
            Ok(p) => p,
            Err(e) => {
                crate::output::eprintln(&format!("error: {e:#}"));
                failed += 1;
                continue;
            }
        };
        let names = &m.info.class_names;
        if json {
            crate::output::println(&json_line(path, &p, top, names));
        } else {
            crate::output::println(&text_line(path, &p, top, names));
        }
        if let Some(out) = saved.get(i) {
            p.input
                .save(out)
                .with_context(|| format!("cannot write {}", out.display()))?;
        }
    }
    if failed > 0 {
        bail!("{failed} of {} images could not be predicted", images.len());
    }
    Ok(())
}
