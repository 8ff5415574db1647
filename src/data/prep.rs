//! Pixel scaling: `unit` (/255, as the seed), `center` (minus the mean pixel) and `standardize`
//! (minus the mean, over the standard deviation). Statistics come from the training images only.

use serde::{Deserialize, Serialize};

use super::Dataset;

/// How pixels are mapped to network inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scaling {
    /// p / 255, in [0, 1].
    #[default]
    Unit,
    /// p / 255 minus the mean over all training pixels.
    Center,
    /// (p / 255 − mean) / std over all training pixels.
    Standardize,
}

impl Scaling {
    /// The name used in files and descriptions.
    pub fn name(self) -> &'static str {
        match self {
            Scaling::Unit => "unit",
            Scaling::Center => "center",
            Scaling::Standardize => "standardize",
        }
    }
}

/// A fitted scaling: a lookup table from byte value to input value.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaler {
    /// Mean subtracted (after /255).
    pub mean: f32,
    /// Divisor applied after the mean is subtracted.
    pub std: f32,
    lut: [f32; 256],
}

impl Scaler {
    /// A scaler from explicit statistics.
    pub fn new(mean: f32, std: f32) -> Self {
        let mut lut = [0.0f32; 256];
        for (p, v) in lut.iter_mut().enumerate() {
            *v = (p as f32 / 255.0 - mean) / std;
        }
        Scaler { mean, std, lut }
    }

    /// Fits `scaling` on the images at `indices` of `ds`.
    pub fn fit(scaling: Scaling, ds: &Dataset, indices: &[usize]) -> Self {
        if scaling == Scaling::Unit || indices.is_empty() {
            return Scaler::new(0.0, 1.0);
        }
        // Integer histogram: exact, order-independent statistics.
        let mut hist = [0u64; 256];
        for &i in indices {
            for &p in ds.image(i) {
                hist[p as usize] += 1;
            }
        }
        let n = (indices.len() * ds.info.image.len()) as f64;
        let mean = hist
            .iter()
            .enumerate()
            .map(|(p, &c)| p as f64 / 255.0 * c as f64)
            .sum::<f64>()
            / n;
        let var = hist
            .iter()
            .enumerate()
            .map(|(p, &c)| (p as f64 / 255.0 - mean).powi(2) * c as f64)
            .sum::<f64>()
            / n;
        match scaling {
            Scaling::Center => Scaler::new(mean as f32, 1.0),
            _ => Scaler::new(mean as f32, var.sqrt().max(1e-12) as f32),
        }
    }

    /// The input value of pixel value `p` (0 is the background of MNIST-format images).
    pub fn value(&self, p: u8) -> f32 {
        self.lut[p as usize]
    }

    /// Writes the scaled pixels of one image into `out` (of the image's length).
    pub fn scale_into(&self, pixels: &[u8], out: &mut [f32]) {
        for (o, &p) in out.iter_mut().zip(pixels) {
            *o = self.lut[p as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{DatasetInfo, ImageShape};

    const PIXELS: usize = 28 * 28;

    fn dataset(pixels: &[u8]) -> Dataset {
        let n = pixels.len() / PIXELS;
        let image = ImageShape {
            height: 28,
            width: 28,
            channels: 1,
        };
        Dataset {
            images: pixels.to_vec(),
            labels: vec![0; n],
            sha256: String::new(),
            info: DatasetInfo::numbered(image, 10),
        }
    }

    #[test]
    fn unit_divides_by_255() {
        let s = Scaler::new(0.0, 1.0);
        let mut out = [0.0; 3];
        s.scale_into(&[0, 51, 255], &mut out);
        assert_eq!(out, [0.0, 0.2, 1.0]);
    }

    #[test]
    fn standardize_gives_zero_mean_unit_variance_on_training_images() {
        let mut px = vec![0u8; PIXELS * 2];
        for (i, p) in px.iter_mut().enumerate() {
            *p = (i * 37 % 256) as u8;
        }
        let ds = dataset(&px);
        let s = Scaler::fit(Scaling::Standardize, &ds, &[0, 1]);
        let mut out = vec![0.0; PIXELS * 2];
        s.scale_into(&px, &mut out);
        let n = out.len() as f64;
        let mean = out.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = out.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 1e-5, "{mean}");
        assert!((var - 1.0).abs() < 1e-4, "{var}");
        let c = Scaler::fit(Scaling::Center, &ds, &[0, 1]);
        assert_eq!(c.std, 1.0);
        assert!((c.mean - s.mean).abs() < 1e-7);
    }
}
