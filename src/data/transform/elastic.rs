//! `elastic = { alpha, sigma }`: Simard et al. (2003)'s elastic distortion. Each training
//! image gets a random displacement field (uniform in ±1 pixel at every pixel, for rows and
//! columns separately), smoothed by a Gaussian of standard deviation `sigma` pixels (zero
//! outside the image, as scipy's gaussian_filter with mode "constant") and scaled by `alpha`;
//! the image is resampled bilinearly at the displaced positions. Simard used α = 34, σ = 4 on
//! 28×28 digits.

use serde::{Deserialize, Serialize};

use super::warp::{each_image, resample};
use super::{BatchInfo, Transform, TransformSpec};
use crate::rng::Rng;

/// Elastic distortion settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticSpec {
    /// Scale of the smoothed displacement, pixels.
    pub alpha: f32,
    /// Smoothing, pixels.
    pub sigma: f32,
}

impl Default for ElasticSpec {
    fn default() -> Self {
        ElasticSpec {
            alpha: 34.0,
            sigma: 4.0,
        }
    }
}

impl TransformSpec for ElasticSpec {
    fn validate(&self) -> Result<(), String> {
        if !(self.alpha >= 0.0 && self.alpha.is_finite()) {
            return Err(format!("alpha is {}, expected >= 0", self.alpha));
        }
        if !(self.sigma > 0.0 && self.sigma <= 64.0) {
            return Err(format!("sigma is {}, expected 0 < sigma <= 64", self.sigma));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("elastic α {} σ {}", self.alpha, self.sigma)
    }

    fn build(&self) -> Box<dyn Transform> {
        let r = (3.0 * self.sigma).ceil() as isize;
        let k: Vec<f32> = (-r..=r)
            .map(|i| (-((i * i) as f32) / (2.0 * self.sigma * self.sigma)).exp())
            .collect();
        let sum: f32 = k.iter().sum();
        Box::new(Elastic {
            alpha: self.alpha,
            kernel: k.iter().map(|v| v / sum).collect(),
        })
    }
}

/// The transform, with its normalized Gaussian kernel.
#[derive(Debug, Clone)]
pub struct Elastic {
    alpha: f32,
    kernel: Vec<f32>,
}

impl Elastic {
    /// Smooths an h×w field in place (rows, then columns; zero outside).
    fn smooth(&self, f: &mut [f32], h: usize, w: usize, tmp: &mut [f32]) {
        let r = (self.kernel.len() / 2) as isize;
        let k = &self.kernel;
        for i in 0..h {
            for j in 0..w {
                let mut s = 0.0;
                for (t, kv) in k.iter().enumerate() {
                    let x = j as isize + t as isize - r;
                    if x >= 0 && x < w as isize {
                        s += kv * f[i * w + x as usize];
                    }
                }
                tmp[i * w + j] = s;
            }
        }
        for i in 0..h {
            for j in 0..w {
                let mut s = 0.0;
                for (t, kv) in k.iter().enumerate() {
                    let y = i as isize + t as isize - r;
                    if y >= 0 && y < h as isize {
                        s += kv * tmp[y as usize * w + j];
                    }
                }
                f[i * w + j] = s;
            }
        }
    }
}

impl Transform for Elastic {
    fn apply(&self, batch: &mut [f32], info: &BatchInfo, rng: &mut Rng) {
        let shape = info.image;
        let (h, w) = (shape.height, shape.width);
        let (mut dy, mut dx, mut tmp) = (vec![0.0; h * w], vec![0.0; h * w], vec![0.0; h * w]);
        each_image(batch, shape, |img, out| {
            dy.iter_mut().for_each(|v| *v = rng.uniform(1.0));
            dx.iter_mut().for_each(|v| *v = rng.uniform(1.0));
            self.smooth(&mut dy, h, w, &mut tmp);
            self.smooth(&mut dx, h, w, &mut tmp);
            let a = self.alpha;
            resample(img, shape, info.background, out, |i, j| {
                (
                    i as f32 + a * dy[i * w + j],
                    j as f32 + a * dx[i * w + j],
                )
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ImageShape;

    const SHAPE: ImageShape = ImageShape {
        height: 28,
        width: 28,
        channels: 1,
    };

    fn digit() -> Vec<f32> {
        (0..784)
            .map(|p| {
                let (i, j) = (p / 28, p % 28);
                if (8..20).contains(&i) && (12..16).contains(&j) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect()
    }

    #[test]
    fn zero_alpha_is_the_identity_and_distortion_keeps_most_ink() {
        let info = BatchInfo {
            image: SHAPE,
            background: 0.0,
        };
        let mut b = digit();
        ElasticSpec {
            alpha: 0.0,
            sigma: 4.0,
        }
        .build()
        .apply(&mut b, &info, &mut Rng::new(1, 1));
        assert_eq!(b, digit());
        let mut b = digit();
        ElasticSpec::default()
            .build()
            .apply(&mut b, &info, &mut Rng::new(1, 1));
        assert_ne!(b, digit());
        let (before, after): (f32, f32) = (digit().iter().sum(), b.iter().sum());
        assert!((after - before).abs() < 0.25 * before, "{before} vs {after}");
    }

    /// The displacement (rows, columns) the transform gave each pixel, read back from ramp
    /// images (pixel (i, j) holds i / 27, or j / 27: bilinear resampling returns the sampled
    /// row or column; the same seed draws the same field), for the pixels whose sample read
    /// only pixels of the image.
    fn displacements(spec: ElasticSpec, seed: u64) -> Vec<(usize, usize, f32, f32)> {
        // A sample that touches a pixel off the image reads NaN and is left out.
        let info = BatchInfo {
            image: SHAPE,
            background: f32::NAN,
        };
        let warped = |coordinate: fn(usize) -> usize| {
            let mut b: Vec<f32> = (0..784).map(|p| coordinate(p) as f32 / 27.0).collect();
            spec.build().apply(&mut b, &info, &mut Rng::new(seed, 1));
            b
        };
        let (rows, cols) = (warped(|p| p / 28), warped(|p| p % 28));
        (0..784)
            .map(|p| (p / 28, p % 28, rows[p] * 27.0, cols[p] * 27.0))
            .filter(|&(_, _, y, x)| (0.0..=27.0).contains(&y) && (0.0..=27.0).contains(&x))
            .map(|(i, j, y, x)| (i, j, y - i as f32, x - j as f32))
            .collect()
    }

    #[test]
    fn the_displacement_field_is_smooth_and_scaled_by_alpha() {
        // Neighbours move alike: a row's displacement changes by a small part of its size from
        // one pixel to the next (σ = 4 correlates them over about 8 pixels; measured 0.18); with
        // σ = 0.3 the field is nearly white noise and they do not (measured 1.31).
        let roughness = |sigma: f32| {
            let d = displacements(ElasticSpec { alpha: 8.0, sigma }, 3);
            let at = |i: usize, j: usize| d.iter().find(|e| (e.0, e.1) == (i, j)).map(|e| e.3);
            let (mut step, mut size, mut n) = (0.0f32, 0.0f32, 0);
            for &(i, j, _, v) in &d {
                if let Some(next) = at(i, j + 1) {
                    step += (next - v).abs();
                    size += v.abs();
                    n += 1;
                }
            }
            assert!(n > 300, "too few pixels sampled inside: {n}");
            step / size
        };
        let smooth = roughness(4.0);
        let rough = roughness(0.3);
        assert!(smooth < 0.3, "σ 4: neighbours differ by {smooth} of the displacement");
        assert!(rough > 0.8, "σ 0.3: neighbours differ by {rough} of the displacement");
        // α scales the smoothed field: with the same draws, twice α moves every pixel twice as
        // far (where both samples fall inside the image).
        let once = displacements(ElasticSpec { alpha: 8.0, sigma: 4.0 }, 3);
        let twice = displacements(ElasticSpec { alpha: 16.0, sigma: 4.0 }, 3);
        let mut compared = 0;
        for &(i, j, dy, dx) in &once {
            if let Some(&(_, _, dy2, dx2)) = twice.iter().find(|e| (e.0, e.1) == (i, j)) {
                let off = (dy2 - 2.0 * dy).abs().max((dx2 - 2.0 * dx).abs());
                assert!(off < 1e-3, "({i}, {j}): ({dy}, {dx}) then ({dy2}, {dx2})");
                compared += 1;
            }
        }
        assert!(compared > 300, "{compared}");
    }
}
