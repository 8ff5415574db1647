//! `erasing = { probability, area, aspect, fill }`: random erasing (Zhong et al. 2017, as
//! torchvision's `RandomErasing` draws it): with probability `probability` a rectangle of each
//! training image is filled, its area a fraction of the image drawn uniformly from `area`, its
//! aspect ratio (height / width) drawn log-uniformly from `aspect`, its position uniformly
//! where it fits; up to 10 draws for a rectangle that fits, else the image is left as it is.
//! `fill = "background"` (default; torchvision's value 0) fills it with the background,
//! `"random"` with values drawn uniformly between background and full intensity (the paper's
//! best variant).

use serde::{Deserialize, Serialize};

use super::{BatchInfo, Transform, TransformSpec};
use crate::data::ImageShape;
use crate::rng::Rng;

/// Random erasing settings (torchvision's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErasingSpec {
    /// Chance that an image gets a rectangle.
    pub probability: f32,
    /// Smallest and largest area, as fractions of the image.
    pub area: [f32; 2],
    /// Smallest and largest height / width.
    pub aspect: [f32; 2],
    /// What the rectangle holds.
    pub fill: Fill,
}

impl Default for ErasingSpec {
    fn default() -> Self {
        ErasingSpec {
            probability: 0.5,
            area: [0.02, 0.33],
            aspect: [0.3, 3.3],
            fill: Fill::Background,
        }
    }
}

/// What an erased rectangle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fill {
    /// The background value.
    #[default]
    Background,
    /// Values drawn uniformly between background and full intensity, one per value.
    Random,
}

impl TransformSpec for ErasingSpec {
    fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.probability) {
            return Err(format!(
                "probability is {}, expected 0..=1",
                self.probability
            ));
        }
        let [a0, a1] = self.area;
        if !(0.0 < a0 && a0 <= a1 && a1 <= 1.0) {
            return Err(format!(
                "area is [{a0}, {a1}], expected fractions of the image with 0 < low <= high <= 1"
            ));
        }
        let [r0, r1] = self.aspect;
        if !(0.0 < r0 && r0 <= r1 && r1.is_finite()) {
            return Err(format!(
                "aspect is [{r0}, {r1}], expected height/width ratios with 0 < low <= high"
            ));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let fill = match self.fill {
            Fill::Background => "",
            Fill::Random => ", random fill",
        };
        format!(
            "erasing p {} of {}–{} of the area{fill}",
            self.probability, self.area[0], self.area[1]
        )
    }

    fn build(&self) -> Box<dyn Transform> {
        Box::new(Erasing(*self))
    }
}

/// A rectangle: top row, left column, height, width.
pub type Rect = (usize, usize, usize, usize);

impl ErasingSpec {
    /// The rectangle to erase in an image of `shape`, or `None` (not drawn, or no fitting
    /// rectangle in 10 draws).
    pub fn rect(&self, shape: ImageShape, rng: &mut Rng) -> Option<Rect> {
        if rng.next_f32() >= self.probability {
            return None;
        }
        let (h, w) = (shape.height, shape.width);
        let area = (h * w) as f32;
        let (l0, l1) = (self.aspect[0].ln(), self.aspect[1].ln());
        for _ in 0..10 {
            let target = area * (self.area[0] + (self.area[1] - self.area[0]) * rng.next_f32());
            let aspect = (l0 + (l1 - l0) * rng.next_f32()).exp();
            let eh = (target * aspect).sqrt().round() as usize;
            let ew = (target / aspect).sqrt().round() as usize;
            if eh == 0 || ew == 0 || eh >= h || ew >= w {
                continue;
            }
            return Some((rng.below(h - eh + 1), rng.below(w - ew + 1), eh, ew));
        }
        None
    }
}

/// Fills rectangle `rect` of `img` with `value()`, one call per value.
pub fn erase(img: &mut [f32], shape: ImageShape, rect: Rect, mut value: impl FnMut() -> f32) {
    let (top, left, eh, ew) = rect;
    let (w, c) = (shape.width, shape.channels);
    for i in top..top + eh {
        for v in &mut img[(i * w + left) * c..(i * w + left + ew) * c] {
            *v = value();
        }
    }
}

/// The transform.
#[derive(Debug, Clone, Copy)]
pub struct Erasing(pub ErasingSpec);

impl Transform for Erasing {
    fn apply(&self, batch: &mut [f32], info: &BatchInfo, rng: &mut Rng) {
        let (bg, fg) = (info.background, info.foreground);
        for img in batch.chunks_exact_mut(info.image.len()) {
            let Some(rect) = self.0.rect(info.image, rng) else {
                continue;
            };
            match self.0.fill {
                Fill::Background => erase(img, info.image, rect, || bg),
                Fill::Random => erase(img, info.image, rect, || bg + (fg - bg) * rng.next_f32()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: ImageShape = ImageShape {
        height: 6,
        width: 5,
        channels: 2,
    };

    #[test]
    fn erase_fills_exactly_the_rectangle_of_a_hand_made_image() {
        let mut img = vec![1.0; SHAPE.len()];
        erase(&mut img, SHAPE, (1, 2, 3, 2), || -1.0);
        for i in 0..6 {
            for j in 0..5 {
                let inside = (1..4).contains(&i) && (2..4).contains(&j);
                let want = if inside { -1.0 } else { 1.0 };
                assert_eq!(&img[(i * 5 + j) * 2..(i * 5 + j + 1) * 2], &[want; 2], "({i}, {j})");
            }
        }
    }

    #[test]
    fn rectangles_follow_the_probability_area_and_aspect_drawn() {
        let spec = ErasingSpec {
            probability: 0.3,
            area: [0.1, 0.2],
            aspect: [0.5, 2.0],
            fill: Fill::Random,
        };
        let shape = ImageShape {
            height: 28,
            width: 28,
            channels: 1,
        };
        let mut rng = Rng::new(6, 6);
        let rects: Vec<Rect> = (0..4000).filter_map(|_| spec.rect(shape, &mut rng)).collect();
        let share = rects.len() as f64 / 4000.0;
        assert!((0.27..0.33).contains(&share), "{share}");
        for &(t, l, h, w) in &rects {
            assert!(t + h <= 28 && l + w <= 28);
            // Rounding the sides moves the area and ratio a little off the drawn ones.
            let area = (h * w) as f32 / 784.0;
            assert!((0.07..0.25).contains(&area), "{h}×{w}");
            let ratio = h as f32 / w as f32;
            assert!((0.4..2.5).contains(&ratio), "{h}×{w}");
        }
        // Random fill stays within background..foreground.
        let info = BatchInfo {
            image: shape,
            background: -0.5,
            foreground: 2.0,
        };
        let mut batch = vec![7.0; 784 * 50];
        Erasing(spec).apply(&mut batch, &info, &mut Rng::new(1, 1));
        let erased: Vec<f32> = batch.iter().copied().filter(|v| *v != 7.0).collect();
        assert!(!erased.is_empty() && erased.iter().all(|v| (-0.5..2.0).contains(v)));
    }
}
