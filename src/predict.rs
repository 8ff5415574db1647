//! Predicting the class of real images, with MNIST's own digit preprocessing (ink on black,
//! cropped, scaled into a 20/28 box keeping aspect ratio, centred by centre of mass), applied
//! to whatever H×W the model takes. This is the one place that assumes MNIST-like pictures: gray
//! ink on a plain background. An image that already has the model's size is only converted to
//! gray (and inverted if light).

use std::path::Path;

use anyhow::{bail, Context, Result};
use image::{imageops, GrayImage, Luma};

use crate::data::ImageShape;
use crate::model::io::SavedModel;
use crate::model::loss::softmax;
use crate::train::logits;

/// MNIST's digits fill a 20×20 box inside their 28×28 field.
const BOX_FRACTION: f64 = 20.0 / 28.0;

/// Converts any decoded image to MNIST form at the size of `shape` (gray): bytes, white ink on
/// black.
pub fn preprocess(img: &image::DynamicImage, shape: ImageShape) -> Result<GrayImage> {
    let (side_w, side_h) = (shape.width as u32, shape.height as u32);
    // Composite transparency over white (a transparent canvas with dark strokes is a drawing).
    let rgba = img.to_rgba32f();
    let (w, h) = rgba.dimensions();
    if w == 0 || h == 0 {
        bail!("the image is empty (0×0)");
    }
    let mut gray: Vec<f32> = rgba
        .pixels()
        .map(|p| {
            let [r, g, b, a] = p.0;
            let l = 0.299 * r + 0.587 * g + 0.114 * b;
            l * a + (1.0 - a)
        })
        .collect();
    // Background = median of the border; light background ⇒ dark ink ⇒ invert.
    let mut border: Vec<f32> = Vec::new();
    for x in 0..w {
        border.push(gray[x as usize]);
        border.push(gray[((h - 1) * w + x) as usize]);
    }
    for y in 0..h {
        border.push(gray[(y * w) as usize]);
        border.push(gray[(y * w + w - 1) as usize]);
    }
    border.sort_by(|a, b| a.total_cmp(b));
    let mut bg = border[border.len() / 2];
    if bg > 0.5 {
        gray.iter_mut().for_each(|v| *v = 1.0 - *v);
        bg = 1.0 - bg;
    }
    let peak = gray.iter().cloned().fold(0.0f32, f32::max);
    if peak - bg < 0.15 {
        bail!("the image is blank (no ink stands out from the background)");
    }
    if (w, h) == (side_w, side_h) {
        // Already the model's size: taken as it is (only inverted if light), so an exported
        // dataset image is seen exactly as the network saw it in training.
        let px = gray
            .iter()
            .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect();
        return Ok(GrayImage::from_raw(w, h, px).expect("buffer of the image's size"));
    }
    // Stretch so background → 0 and the strongest ink → 1, then find the ink's bounding box.
    let ink: Vec<f32> = gray
        .iter()
        .map(|v| ((v - bg) / (peak - bg)).clamp(0.0, 1.0))
        .collect();
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if ink[(y * w + x) as usize] > 0.3 {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
        }
    }
    if x1 < x0 {
        bail!("the image is blank (no ink found)");
    }
    let (cw, ch) = (x1 - x0 + 1, y1 - y0 + 1);
    let mut crop = GrayImage::new(cw, ch);
    for y in 0..ch {
        for x in 0..cw {
            let v = ink[((y + y0) * w + x + x0) as usize];
            crop.put_pixel(x, y, Luma([(v * 255.0).round() as u8]));
        }
    }
    // Fit into the box (20×20 in 28×28) keeping the aspect ratio.
    let box_side = (BOX_FRACTION * side_w.min(side_h) as f64).round().max(1.0) as f32;
    let scale = box_side / cw.max(ch) as f32;
    let (nw, nh) = (
        ((cw as f32 * scale).round() as u32).clamp(1, side_w),
        ((ch as f32 * scale).round() as u32).clamp(1, side_h),
    );
    let small = imageops::resize(&crop, nw, nh, imageops::FilterType::Triangle);
    // Centre of mass to the centre of the field.
    let (cx, cy) = centre_of_mass(&small).unwrap_or((nw as f64 / 2.0, nh as f64 / 2.0));
    let (fw, fh) = (side_w as i64, side_h as i64);
    let ox = ((fw as f64 / 2.0 - cx).round() as i64).clamp(0, fw - nw as i64);
    let oy = ((fh as f64 / 2.0 - cy).round() as i64).clamp(0, fh - nh as i64);
    let mut out = GrayImage::new(side_w, side_h);
    imageops::overlay(&mut out, &small, ox, oy);
    Ok(out)
}

/// Intensity-weighted centre (x, y) of an image, in pixel units; None when it is all black.
pub fn centre_of_mass(img: &GrayImage) -> Option<(f64, f64)> {
    let (mut sx, mut sy, mut sm) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y, p) in img.enumerate_pixels() {
        let m = p.0[0] as f64;
        sx += m * (x as f64 + 0.5);
        sy += m * (y as f64 + 0.5);
        sm += m;
    }
    (sm > 0.0).then(|| (sx / sm, sy / sm))
}

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

/// Classifies images already in the model's form and size (white on black).
pub fn predict_prepared(model: &mut SavedModel, images: &[GrayImage]) -> Vec<Prediction> {
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
            Prediction {
                class: crate::model::loss::argmax(&probs),
                probs,
                input: img.clone(),
            }
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
    // that takes gigabytes decoded.
    let (w, h) = reader()?.into_dimensions().map_err(|e| {
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
    let prepared = preprocess(&img, shape).with_context(|| path.display().to_string())?;
    Ok(predict_prepared(model, &[prepared]).remove(0))
}

/// `mnist-lab predict`: prints the prediction of each image file (text or JSON lines), writes
/// the image the network saw into `save` when given, and fails if any image could not be
/// predicted (after predicting the others).
pub fn predict_files(
    model: &Path,
    images: &[std::path::PathBuf],
    top: usize,
    json: bool,
    save: Option<&Path>,
) -> Result<()> {
    let mut m = crate::model::io::load(&crate::final_model::model_path(model))?;
    let classes = m.info.classes();
    if top == 0 || top > classes {
        bail!("--top {top}: expected 1..={classes} (the model's classes)");
    }
    if let Some(dir) = save {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut failed = 0;
    for path in images {
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
        if let Some(dir) = save {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image".into());
            let out = dir.join(format!("{stem}.png"));
            p.input
                .save(&out)
                .with_context(|| format!("cannot write {}", out.display()))?;
        }
    }
    if failed > 0 {
        bail!("{failed} of {} images could not be predicted", images.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, Rgb, RgbImage};

    const MNIST: ImageShape = ImageShape {
        height: 28,
        width: 28,
        channels: 1,
    };

    /// A large RGB picture: black "pen" rectangle on white paper, off-centre.
    fn drawing(w: u32, h: u32) -> DynamicImage {
        let mut img = RgbImage::from_pixel(w, h, Rgb([250, 248, 240]));
        for y in h / 5..h / 2 {
            for x in w / 10..w / 10 + w / 20 {
                img.put_pixel(x, y, Rgb([10, 10, 30]));
            }
        }
        DynamicImage::ImageRgb8(img)
    }

    #[test]
    fn light_background_is_inverted_cropped_scaled_and_centred() {
        let out = preprocess(&drawing(400, 300), MNIST).unwrap();
        assert_eq!(out.dimensions(), (28, 28));
        // Border is background (black) after inversion.
        assert_eq!(out.get_pixel(0, 0).0[0], 0);
        assert_eq!(out.get_pixel(27, 27).0[0], 0);
        // The ink (tall, thin) fills 20 rows and is centred by mass.
        let rows_with_ink = (0..28)
            .filter(|&y| (0..28).any(|x| out.get_pixel(x, y).0[0] > 100))
            .count();
        assert!((19..=21).contains(&rows_with_ink), "{rows_with_ink}");
        let (cx, cy) = centre_of_mass(&out).unwrap();
        assert!(
            (cx - 14.0).abs() <= 1.0 && (cy - 14.0).abs() <= 1.0,
            "{cx} {cy}"
        );
    }

    #[test]
    fn dark_background_mnist_style_input_is_kept_as_is() {
        let mut img = GrayImage::new(28, 28);
        for y in 4..24 {
            for x in 12..16 {
                img.put_pixel(x, y, Luma([255]));
            }
        }
        let out = preprocess(&DynamicImage::ImageLuma8(img), MNIST).unwrap();
        assert!(out.get_pixel(14, 14).0[0] > 200);
        assert_eq!(out.get_pixel(2, 2).0[0], 0);
    }

    #[test]
    fn blank_images_are_an_error() {
        let white = DynamicImage::ImageRgb8(RgbImage::from_pixel(50, 50, Rgb([255, 255, 255])));
        assert!(format!("{:#}", preprocess(&white, MNIST).unwrap_err()).contains("blank"));
        let black = DynamicImage::ImageLuma8(GrayImage::new(28, 28));
        assert!(format!("{:#}", preprocess(&black, MNIST).unwrap_err()).contains("blank"));
    }
}
