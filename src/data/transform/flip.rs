//! `flip = "horizontal"` (or `"vertical"`, `"horizontal_and_vertical"`, Keras' modes): each
//! training image mirrored left to right with probability ½, and/or top to bottom with
//! probability ½, drawn separately (Keras' RandomFlip). For clothing, not for digits: a
//! mirrored shoe is still a shoe, a mirrored 2 is not a 2.

use serde::{Deserialize, Serialize};

use super::{BatchInfo, Transform, TransformSpec};
use crate::data::ImageShape;
use crate::rng::Rng;

/// Which mirrorings are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlipSpec {
    /// Left to right.
    Horizontal,
    /// Top to bottom.
    Vertical,
    /// Each, drawn separately.
    HorizontalAndVertical,
}

impl FlipSpec {
    fn horizontal(self) -> bool {
        self != FlipSpec::Vertical
    }

    fn vertical(self) -> bool {
        self != FlipSpec::Horizontal
    }
}

impl TransformSpec for FlipSpec {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    fn describe(&self) -> String {
        match self {
            FlipSpec::Horizontal => "horizontal flips".into(),
            FlipSpec::Vertical => "vertical flips".into(),
            FlipSpec::HorizontalAndVertical => "horizontal and vertical flips".into(),
        }
    }

    fn build(&self) -> Box<dyn Transform> {
        Box::new(Flip(*self))
    }
}

/// Mirrors `img` in place: columns reversed when `horizontal`, rows when `vertical`.
pub fn flip(img: &mut [f32], shape: ImageShape, horizontal: bool, vertical: bool) {
    let (h, w, c) = (shape.height, shape.width, shape.channels);
    if horizontal {
        for row in img.chunks_exact_mut(w * c) {
            for j in 0..w / 2 {
                for ch in 0..c {
                    row.swap(j * c + ch, (w - 1 - j) * c + ch);
                }
            }
        }
    }
    if vertical {
        for i in 0..h / 2 {
            let (top, bottom) = img.split_at_mut((h - 1 - i) * w * c);
            top[i * w * c..(i + 1) * w * c].swap_with_slice(&mut bottom[..w * c]);
        }
    }
}

/// The transform.
#[derive(Debug, Clone, Copy)]
pub struct Flip(pub FlipSpec);

impl Transform for Flip {
    fn apply(&self, batch: &mut [f32], info: &BatchInfo, rng: &mut Rng) {
        for img in batch.chunks_exact_mut(info.image.len()) {
            // Two draws per image whatever the mode: the stream stays aligned.
            let h = rng.next_f32() < 0.5;
            let v = rng.next_f32() < 0.5;
            flip(img, info.image, h && self.0.horizontal(), v && self.0.vertical());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: ImageShape = ImageShape {
        height: 3,
        width: 4,
        channels: 2,
    };

    /// Pixel (i, j, ch) of a 3×4×2 image holds 100·i + 10·j + ch.
    fn image() -> Vec<f32> {
        let mut v = Vec::new();
        for i in 0..3 {
            for j in 0..4 {
                for ch in 0..2 {
                    v.push((100 * i + 10 * j + ch) as f32);
                }
            }
        }
        v
    }

    #[test]
    fn flips_mirror_hand_made_images() {
        let mut img = image();
        flip(&mut img, SHAPE, true, false);
        assert_eq!(&img[..8], &[30., 31., 20., 21., 10., 11., 0., 1.]);
        assert_eq!(&img[16..24], &[230., 231., 220., 221., 210., 211., 200., 201.]);
        let mut img = image();
        flip(&mut img, SHAPE, false, true);
        assert_eq!(&img[..2], &[200., 201.]);
        assert_eq!(&img[8..10], &[100., 101.]);
        assert_eq!(&img[16..18], &[0., 1.]);
        // Both: the image turned half a turn; twice is the identity.
        let mut img = image();
        flip(&mut img, SHAPE, true, true);
        assert_eq!(&img[..2], &[230., 231.]);
        flip(&mut img, SHAPE, true, true);
        assert_eq!(img, image());
    }

    /// Keras 3.15.1's numbers (bench/reference_numbers.py, section flip): the images its
    /// RandomFlip("horizontal") and RandomFlip("vertical") mirrored, 4 of 8 copies each.
    #[test]
    fn flips_match_keras() {
        let keras_h = [
            30., 31., 20., 21., 10., 11., 0., 1., 130., 131., 120., 121., 110., 111., 100., 101.,
            230., 231., 220., 221., 210., 211., 200., 201.,
        ];
        let keras_v = [
            200., 201., 210., 211., 220., 221., 230., 231., 100., 101., 110., 111., 120., 121.,
            130., 131., 0., 1., 10., 11., 20., 21., 30., 31.,
        ];
        let mut img = image();
        flip(&mut img, SHAPE, true, false);
        assert_eq!(img, keras_h);
        let mut img = image();
        flip(&mut img, SHAPE, false, true);
        assert_eq!(img, keras_v);
    }

    #[test]
    fn about_half_the_images_flip_and_only_in_the_declared_direction() {
        let info = BatchInfo {
            image: SHAPE,
            background: 0.0,
            foreground: 1.0,
        };
        let mut batch = image().repeat(400);
        Flip(FlipSpec::Horizontal).apply(&mut batch, &info, &mut Rng::new(4, 4));
        let mut mirrored = image();
        flip(&mut mirrored, SHAPE, true, false);
        let flipped = batch
            .chunks_exact(SHAPE.len())
            .filter(|img| {
                assert!(*img == image() || *img == mirrored);
                *img == mirrored
            })
            .count();
        assert!((160..240).contains(&flipped), "{flipped} of 400");
    }
}
