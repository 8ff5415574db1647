//! MNIST's recipe (LeCun, Bottou, Bengio and Haffner 1998): the ink, stretched to full
//! contrast, cropped to its bounding box, scaled into a 20×20 box keeping its aspect ratio,
//! and placed so that its centre of mass is the centre of the 28×28 field. For a model of
//! another size, the same proportions (a 20/28 box).

use anyhow::{bail, Result};
use image::{imageops, GrayImage, Luma};

use super::Picture;

/// MNIST's digits fill a 20×20 box inside their 28×28 field.
const BOX_FRACTION: f64 = 20.0 / 28.0;

/// A pixel at least this far from the background towards the strongest ink is ink (for the
/// bounding box).
const INK: f32 = 0.3;

/// Makes `picture` (light on dark) into a `width`×`height` digit image.
pub fn make(picture: &Picture, width: u32, height: u32) -> Result<GrayImage> {
    let (w, h) = (picture.width, picture.height);
    let (bg, peak) = (picture.background, picture.peak());
    // Stretch so background → 0 and the strongest ink → 1, then find the ink's bounding box.
    let ink: Vec<f32> = picture
        .gray
        .iter()
        .map(|v| ((v - bg) / (peak - bg)).clamp(0.0, 1.0))
        .collect();
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if ink[(y * w + x) as usize] > INK {
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
    let crop = GrayImage::from_fn(cw, ch, |x, y| {
        Luma([(ink[((y + y0) * w + x + x0) as usize] * 255.0).round() as u8])
    });
    // Fit into the box (20×20 in 28×28) keeping the aspect ratio.
    let box_side = (BOX_FRACTION * width.min(height) as f64).round().max(1.0) as f32;
    let scale = box_side / cw.max(ch) as f32;
    let (nw, nh) = (
        ((cw as f32 * scale).round() as u32).clamp(1, width),
        ((ch as f32 * scale).round() as u32).clamp(1, height),
    );
    let small = imageops::resize(&crop, nw, nh, imageops::FilterType::Triangle);
    // Centre of mass to the centre of the field.
    let (cx, cy) = centre_of_mass(&small).unwrap_or((nw as f64 / 2.0, nh as f64 / 2.0));
    let (fw, fh) = (width as i64, height as i64);
    let ox = ((fw as f64 / 2.0 - cx).round() as i64).clamp(0, fw - nw as i64);
    let oy = ((fh as f64 / 2.0 - cy).round() as i64).clamp(0, fh - nh as i64);
    let mut out = GrayImage::new(width, height);
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
