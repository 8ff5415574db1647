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
        Box::new(self.elastic())
    }
}

impl ElasticSpec {
    /// The transform, with its Gaussian kernel of radius ⌈3σ⌉ normalized to sum 1.
    fn elastic(&self) -> Elastic {
        let r = (3.0 * self.sigma).ceil() as isize;
        let k: Vec<f32> = (-r..=r)
            .map(|i| (-((i * i) as f32) / (2.0 * self.sigma * self.sigma)).exp())
            .collect();
        let sum: f32 = k.iter().sum();
        Elastic {
            alpha: self.alpha,
            kernel: k.iter().map(|v| v / sum).collect(),
        }
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

    /// scipy 1.17.1's numbers (bench/reference_numbers.py, section elastic).
    #[allow(clippy::excessive_precision)]
    #[test]
    fn smoothing_and_resampling_match_scipy() {
        // scipy.ndimage.gaussian_filter(field, 1.5, mode="constant", truncate=3.0) of a 6×7
        // field (its radius, int(3·1.5 + 0.5) = 5, is ⌈3σ⌉ here too).
        let (h, w) = (6, 7);
        let mut field: Vec<f32> = (0..42).map(|i| ((i * 3) % 7) as f32 / 7.0 - 0.5).collect();
        let smoothed = [
            -0.0731859723, -0.0429118275, -0.00595981291, 0.00153008175, -0.0153294609,
            -0.0289786512, -0.0245050496, -0.0976940461, -0.0572818795, -0.00795559885,
            0.00204246624, -0.0204628976, -0.0386828459, -0.0327111517, -0.109459413,
            -0.0641803788, -0.00891369752, 0.00228844196, -0.0229272595, -0.0433414496,
            -0.03665058, -0.109459413, -0.0641803788, -0.00891369752, 0.00228844196,
            -0.0229272595, -0.0433414496, -0.03665058, -0.0976940461, -0.0572818795,
            -0.00795559885, 0.00204246624, -0.0204628976, -0.0386828459, -0.0327111517,
            -0.0731859723, -0.0429118275, -0.00595981291, 0.00153008175, -0.0153294609,
            -0.0289786512, -0.0245050496,
        ];
        let e = ElasticSpec {
            alpha: 1.0,
            sigma: 1.5,
        }
        .elastic();
        e.smooth(&mut field, h, w, &mut [0.0; 42]);
        for (g, want) in field.iter().zip(smoothed) {
            assert!((g - want).abs() < 1e-6, "{field:?}");
        }
        // scipy.ndimage.map_coordinates(img, [ys, xs], order=1, mode="grid-constant",
        // cval=-1): bilinear, with the background beyond the edge taking part.
        let img: Vec<f32> = (0..42).map(|i| ((i * 5) % 9) as f32 / 9.0).collect();
        let resampled = [
            -0.25, -0.130512281, 0.245049312, -0.313041064, -0.529903511, -0.707466478,
            -0.944509953, 0.491639541, 0.212707146, 0.0914305711, 0.36245189, 0.313097713,
            0.554396726, -0.839397289, 0.403023419, 0.424763904, 0.286796549, 0.144355609,
            0.11939717, 0.374017074, -0.762716563, 0.317518222, 0.522113304, 0.477688942,
            0.592776598, 0.507725173, 0.547064325, -0.648096391, 0.236337861, 0.313097713,
            0.68791386, 0.695154764, 0.539042705, 0.462177098, -0.346318753, 0.131964142,
            0.286293589, 0.374017074, 0.28114652, 0.492637187, 0.792490686, 0.29177788,
        ];
        let shape = ImageShape {
            height: h,
            width: w,
            channels: 1,
        };
        let mut out = vec![0.0; 42];
        resample(&img, shape, -1.0, &mut out, |i, j| {
            let (y, x) = (i as f64, j as f64);
            (
                (y + 0.3 * (y + x).sin() - 0.5) as f32,
                (x + 0.7 * (y * x).cos() + 0.2) as f32,
            )
        });
        for (g, want) in out.iter().zip(resampled) {
            assert!((g - want).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn zero_alpha_is_the_identity_and_distortion_keeps_most_ink() {
        let info = BatchInfo {
            image: SHAPE,
            background: 0.0,
            foreground: 1.0,
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
            foreground: 1.0,
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
