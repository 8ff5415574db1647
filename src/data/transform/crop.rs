//! `crop = { padding = p }`: each training image padded by `p` background pixels on every
//! side, then cut back to its size at a random position: a shift by a whole number of pixels,
//! −p..=p in each direction, drawn uniformly and separately per image (torchvision's
//! `RandomCrop(size, padding)`; Keras' ZeroPadding2D then RandomCrop computes the same crop, but
//! draws one position per batch).

use serde::{Deserialize, Serialize};

use super::{BatchInfo, Transform, TransformSpec};
use crate::data::ImageShape;
use crate::rng::Rng;

/// Random crop settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CropSpec {
    /// Background pixels added on each side before cropping.
    pub padding: usize,
}

/// The largest padding (a crop of an image padded by more is mostly background).
pub const MAX_PADDING: usize = 64;

impl TransformSpec for CropSpec {
    fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_PADDING).contains(&self.padding) {
            return Err(format!(
                "padding is {}, expected 1..={MAX_PADDING} pixels",
                self.padding
            ));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("crops after padding {}", self.padding)
    }

    fn build(&self) -> Box<dyn Transform> {
        Box::new(Crop(*self))
    }
}

/// Writes into `out` the window of `img` padded by `pad` background pixels whose top-left
/// corner is at (`top`, `left`) of the padded image (0..=2·pad each).
pub fn crop(
    img: &[f32],
    shape: ImageShape,
    pad: usize,
    (top, left): (usize, usize),
    background: f32,
    out: &mut [f32],
) {
    let (h, w, c) = (shape.height, shape.width, shape.channels);
    for i in 0..h {
        for j in 0..w {
            // Row and column of the original image under output pixel (i, j).
            let (y, x) = ((i + top).wrapping_sub(pad), (j + left).wrapping_sub(pad));
            let dst = &mut out[(i * w + j) * c..(i * w + j + 1) * c];
            if y < h && x < w {
                dst.copy_from_slice(&img[(y * w + x) * c..(y * w + x + 1) * c]);
            } else {
                dst.fill(background);
            }
        }
    }
}

/// The transform.
#[derive(Debug, Clone, Copy)]
pub struct Crop(pub CropSpec);

impl Transform for Crop {
    fn apply(&self, batch: &mut [f32], info: &BatchInfo, rng: &mut Rng) {
        let pad = self.0.padding;
        let mut out = vec![0.0; info.image.len()];
        for img in batch.chunks_exact_mut(info.image.len()) {
            let at = (rng.below(2 * pad + 1), rng.below(2 * pad + 1));
            crop(img, info.image, pad, at, info.background, &mut out);
            img.copy_from_slice(&out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: ImageShape = ImageShape {
        height: 4,
        width: 5,
        channels: 2,
    };

    /// Keras 3.15.1's numbers (bench/reference_numbers.py, section crop): the 4×5×2 image of
    /// values (v % 7) / 7 − 0.4, through ZeroPadding2D(2) and RandomCrop(4, 5, seed=3) in
    /// training, which cropped at (0, 2) of the padded image: two rows down, no column.
    #[allow(clippy::excessive_precision)]
    #[test]
    fn crop_after_padding_matches_keras() {
        let img: Vec<f32> = (1..=40).map(|v| (v % 7) as f32 / 7.0 - 0.4).collect();
        let mut keras = vec![0.0f32; 20];
        keras.extend([
            -0.257142872, -0.114285715, 0.0285714287, 0.171428576, 0.314285725, 0.45714286,
            -0.400000006, -0.257142872, -0.114285715, 0.0285714287, 0.171428576, 0.314285725,
            0.45714286, -0.400000006, -0.257142872, -0.114285715, 0.0285714287, 0.171428576,
            0.314285725, 0.45714286,
        ]);
        let mut out = vec![9.0; 40];
        crop(&img, SHAPE, 2, (0, 2), 0.0, &mut out);
        for (a, b) in out.iter().zip(&keras) {
            assert!((a - b).abs() < 1e-6, "{out:?}\nvs Keras {keras:?}");
        }
    }

    #[test]
    fn crops_are_whole_pixel_shifts_within_the_padding() {
        let img: Vec<f32> = (0..40).map(|v| v as f32 + 1.0).collect();
        let mut out = vec![0.0; 40];
        // The centre of the padded image is the image itself.
        crop(&img, SHAPE, 2, (2, 2), -1.0, &mut out);
        assert_eq!(out, img);
        // One row down and two columns right in the padded image: the image moves up one
        // row and left two columns; what comes in is background.
        crop(&img, SHAPE, 2, (3, 4), -1.0, &mut out);
        assert_eq!(&out[..6], &[15., 16., 17., 18., 19., 20.]);
        assert_eq!(&out[6..10], &[-1.; 4]);
        assert_eq!(&out[30..], &[-1.; 10]);
        // Every position of a batch's crops lies within the padding, and all are drawn.
        let info = BatchInfo {
            image: SHAPE,
            background: -1.0,
            foreground: 1.0,
        };
        let mut batch = img.repeat(500);
        Crop(CropSpec { padding: 2 }).apply(&mut batch, &info, &mut Rng::new(2, 2));
        let mut seen = std::collections::BTreeSet::new();
        for got in batch.chunks_exact(40) {
            let at = (0..5)
                .flat_map(|t| (0..5).map(move |l| (t, l)))
                .find(|&at| {
                    crop(&img, SHAPE, 2, at, -1.0, &mut out);
                    out == got
                })
                .expect("every crop is one of the 25 positions");
            seen.insert(at);
        }
        assert_eq!(seen.len(), 25);
    }
}
