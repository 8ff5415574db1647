//! `affine = { rotation, shift, zoom }`: a random rotation (± `rotation` degrees, positive
//! counter-clockwise), zoom (scale 1 ± `zoom`) and shift (± `shift` × the side, each
//! direction drawn separately) of each training image about its centre, applied as one
//! bilinear resampling (torchvision's RandomAffine; Keras' RandomRotation, RandomZoom and
//! RandomTranslation in one pass). Uncovered areas take the background value.

use serde::{Deserialize, Serialize};

use super::warp::{each_image, resample};
use super::{BatchInfo, Transform, TransformSpec};
use crate::data::ImageShape;
use crate::model::par;
use crate::rng::Rng;

/// Affine augmentation settings; each 0 (the default) leaves that part out.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AffineSpec {
    /// Largest rotation, in degrees.
    pub rotation: f32,
    /// Largest shift, as a fraction of the image side.
    pub shift: f32,
    /// Largest change of scale (0.1: 0.9× to 1.1×).
    pub zoom: f32,
}

impl TransformSpec for AffineSpec {
    fn validate(&self) -> Result<(), String> {
        if !(0.0..=180.0).contains(&self.rotation) {
            return Err(format!(
                "rotation is {}, expected 0..=180 degrees",
                self.rotation
            ));
        }
        if !(0.0..=1.0).contains(&self.shift) {
            return Err(format!(
                "shift is {}, expected a fraction of the side in 0..=1",
                self.shift
            ));
        }
        if !(0.0..1.0).contains(&self.zoom) {
            return Err(format!("zoom is {}, expected 0 <= zoom < 1", self.zoom));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "rotation ±{}°, shift ±{}, zoom ±{}",
            self.rotation, self.shift, self.zoom
        )
    }

    fn build(&self) -> Box<dyn Transform> {
        Box::new(Affine(*self))
    }
}

/// One draw of the transform.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    /// Counter-clockwise rotation, degrees.
    pub degrees: f32,
    /// Scale (> 1 enlarges).
    pub scale: f32,
    /// Shift right, pixels.
    pub dx: f32,
    /// Shift down, pixels.
    pub dy: f32,
}

/// Writes `img` moved by `pose` into `out`.
pub fn warp(img: &[f32], shape: ImageShape, background: f32, pose: Pose, out: &mut [f32]) {
    let (cy, cx) = (shape.height as f32 / 2.0, shape.width as f32 / 2.0);
    let (sin, cos) = (pose.degrees as f64).to_radians().sin_cos();
    let (sin, cos) = (sin as f32, cos as f32);
    let inv = 1.0 / pose.scale;
    resample(img, shape, background, out, |i, j| {
        // Output pixel centre relative to the shifted centre, mapped back through the inverse
        // rotation and scale. With y pointing down, a counter-clockwise turn on screen maps
        // source (x, y) to (x·cos + y·sin, −x·sin + y·cos).
        let px = j as f32 + 0.5 - cx - pose.dx;
        let py = i as f32 + 0.5 - cy - pose.dy;
        let sx = (cos * px - sin * py) * inv + cx - 0.5;
        let sy = (sin * px + cos * py) * inv + cy - 0.5;
        (sy, sx)
    });
}

/// The transform.
#[derive(Debug, Clone, Copy)]
pub struct Affine(pub AffineSpec);

impl Transform for Affine {
    fn apply(&self, batch: &mut [f32], info: &BatchInfo, rng: &mut Rng) {
        let shape = info.image;
        let s = self.0;
        let len = shape.len();
        // Four draws per image, whatever the settings, in the images' order: the stream stays
        // aligned. They are all drawn first, on this thread; the images are then warped by
        // pieces of the batch on the step's threads (each image on its own: the same bits).
        let poses: Vec<Pose> = (0..batch.len() / len)
            .map(|_| Pose {
                degrees: rng.uniform(s.rotation),
                scale: 1.0 + rng.uniform(s.zoom),
                dx: rng.uniform(s.shift) * shape.width as f32,
                dy: rng.uniform(s.shift) * shape.height as f32,
            })
            .collect();
        let ranges = par::ranges(poses.len(), (par::MIN_VALUES / len).max(1));
        par::each_mut(batch, len, &ranges, |r, images| {
            let mut i = poses[r].iter();
            each_image(images, shape, |img, out| {
                let pose = *i.next().expect("one pose per image");
                warp(img, shape, info.background, pose, out)
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: ImageShape = ImageShape {
        height: 4,
        width: 4,
        channels: 1,
    };

    fn still() -> Pose {
        Pose {
            degrees: 0.0,
            scale: 1.0,
            dx: 0.0,
            dy: 0.0,
        }
    }

    fn moved(img: &[f32], pose: Pose) -> Vec<f32> {
        let mut out = vec![0.0; img.len()];
        warp(img, SHAPE, -1.0, pose, &mut out);
        out
    }

    #[test]
    fn a_batch_is_warped_alike_on_any_number_of_threads() {
        // Large enough to be cut into pieces (100 images of 28×28), with the draws after it
        // compared too: the stream is drawn on the calling thread whatever the pieces.
        let shape = ImageShape {
            height: 28,
            width: 28,
            channels: 1,
        };
        let info = BatchInfo {
            image: shape,
            background: -0.5,
            foreground: 1.0,
        };
        let t = Affine(AffineSpec {
            rotation: 15.0,
            shift: 0.1,
            zoom: 0.2,
        });
        let mut src = Rng::new(4, 4);
        let batch: Vec<f32> = (0..100 * shape.len()).map(|_| src.uniform(1.0)).collect();
        let mut outcomes = Vec::new();
        for threads in [1, 2, 3] {
            par::set_threads(threads);
            let (mut b, mut rng) = (batch.clone(), Rng::new(9, 1));
            t.apply(&mut b, &info, &mut rng);
            par::set_threads(1);
            let bits: Vec<u32> = b.iter().map(|v| v.to_bits()).collect();
            outcomes.push((bits, rng.uniform(1.0).to_bits()));
        }
        assert!(outcomes[0] != (batch.iter().map(|v| v.to_bits()).collect(), 0));
        assert!(outcomes.windows(2).all(|o| o[0] == o[1]));
    }

    /// Keras 3.15.1's numbers (bench/reference_numbers.py, section affine).
    #[allow(clippy::excessive_precision)]
    #[test]
    fn warp_matches_keras_affine_transform() {
        // keras.ops.image.affine_transform(img, t, interpolation="bilinear",
        // fill_mode="constant", fill_value=-0.25) of a 6×5 image with the matrix of this pose
        // about the image's centre: what Keras' RandomRotation, RandomZoom and
        // RandomTranslation apply, in one pass.
        let shape = ImageShape {
            height: 6,
            width: 5,
            channels: 1,
        };
        let img: Vec<f32> = (0..30).map(|i| ((i * 3) % 7) as f32 / 7.0 - 0.3).collect();
        let pose = Pose {
            degrees: 20.0,
            scale: 1.1,
            dx: 0.7,
            dy: -0.4,
        };
        let want = [
            -0.16467233, 0.204319462, 0.133957177, 0.0792165324, 0.387359679, -0.181812987,
            0.228719234, -0.104782589, 0.0497836433, 0.0238099732, -0.123192273, 0.217502639,
            0.194928229, 0.0385670513, 0.307460576, -0.127126992, 0.206286043, 0.449703217,
            0.0423756428, 0.437882721, -0.206951618, 0.193566859, -0.128951401, 0.0161339082,
            0.152578205, -0.25, 0.128294438, 0.0940607041, -0.0224724114, -0.00134345889,
        ];
        let mut out = vec![0.0; 30];
        warp(&img, shape, -0.25, pose, &mut out);
        for (g, w) in out.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn zero_strength_is_the_identity() {
        let img: Vec<f32> = (0..16).map(|v| v as f32 * 0.37).collect();
        assert_eq!(moved(&img, still()), img);
        let mut batch = img.repeat(3);
        let info = BatchInfo {
            image: SHAPE,
            background: 0.0,
            foreground: 1.0,
        };
        Affine(AffineSpec::default()).apply(&mut batch, &info, &mut Rng::new(1, 1));
        assert_eq!(batch, img.repeat(3));
    }

    #[test]
    fn rotation_by_90_degrees_turns_the_image_counter_clockwise() {
        let img: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let r = moved(
            &img,
            Pose {
                degrees: 90.0,
                ..still()
            },
        );
        // Counter-clockwise: the top row (0 1 2 3) becomes the left column, read upwards.
        let want: Vec<f32> = (0..4)
            .flat_map(|i| (0..4).map(move |j| (j * 4 + 3 - i) as f32))
            .collect();
        for (a, b) in r.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{r:?} vs {want:?}");
        }
    }

    #[test]
    fn shift_by_whole_pixels_moves_values_and_fills_the_background() {
        let img: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let r = moved(
            &img,
            Pose {
                dx: 1.0,
                dy: 2.0,
                ..still()
            },
        );
        for i in 0..4 {
            for j in 0..4 {
                let want = if i >= 2 && j >= 1 {
                    img[(i - 2) * 4 + j - 1]
                } else {
                    -1.0
                };
                assert_eq!(r[i * 4 + j], want, "({i}, {j})");
            }
        }
    }

    #[test]
    fn zoom_by_two_enlarges_about_the_centre() {
        // A 4×4 image zoomed 2×: the output's centre 2×2 samples the input's centre 1×1 area.
        let img: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let r = moved(
            &img,
            Pose {
                scale: 2.0,
                ..still()
            },
        );
        // Output (1, 1) samples input (1.25, 1.25): 5·0.5625 + 6·0.1875 + 9·0.1875 + 10·0.0625.
        assert!((r[5] - 6.25).abs() < 1e-5, "{r:?}");
        // Symmetric about the centre: (1,1)+(2,2) = (1,2)+(2,1) = 15.
        assert!((r[5] + r[10] - 15.0).abs() < 1e-5 && (r[6] + r[9] - 15.0).abs() < 1e-5);
    }
}
