//! How a dataset's images were made from pictures, declared by each dataset (see
//! [`super::catalog`]) and recorded in every model file, so that `predict` makes any picture
//! the way the model's training images were made: [`Recipe::Digit`] (MNIST's), [`Recipe::Product`]
//! (Fashion-MNIST's) and [`Recipe::Fit`] (the default for a dataset known only from its IDX
//! files). Every recipe starts from the same [`Picture`] (gray, light on a dark background, as
//! MNIST-format images are); one file per recipe does the rest. A picture that is already in
//! the dataset's format (its size, on black) is taken as it is, byte for byte.

mod digit;
mod fit;
mod product;

use anyhow::{bail, Result};
use image::{imageops, DynamicImage, GrayImage};

use super::ImageShape;

/// How the images of a dataset were made from pictures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipe {
    /// MNIST's: the ink cropped, scaled into a 20×20 box keeping its aspect ratio and centred
    /// by its centre of mass in 28×28 (LeCun et al.); for another size the same proportions.
    Digit,
    /// Fashion-MNIST's (Xiao, Rasul and Vollgraf 2017): the edges as dark as the background
    /// (within 5% of full intensity) trimmed, the longest edge scaled to the frame, the
    /// shorter one extended to it, centred.
    Product,
    /// The default: the whole picture scaled so that its longest edge fills the frame, keeping
    /// the aspect ratio, centred on black.
    Fit,
}

/// A border at least this dark (as a fraction of full intensity) is the black of a
/// dataset's own images.
const DARK: f32 = 0.1;

/// A picture at the model's size with at least this share of its border dark is taken as
/// already made by the recipe. Every MNIST and Fashion-MNIST image (train and test) has at least
/// 28% of its border pixels at or below 10% intensity (a product can fill most of the frame);
/// a picture on paper of any brightness above that has none.
const DARK_BORDER_SHARE: f32 = 0.2;

/// Less contrast than this between the ink and the background is a blank picture.
const MIN_CONTRAST: f32 = 0.15;

impl Recipe {
    /// Every recipe.
    pub const ALL: [Recipe; 3] = [Recipe::Digit, Recipe::Product, Recipe::Fit];

    /// The name model files record.
    pub fn name(self) -> &'static str {
        match self {
            Recipe::Digit => "digit",
            Recipe::Product => "product",
            Recipe::Fit => "fit",
        }
    }

    /// The recipe of a name, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Makes a decoded picture into an image of `shape`'s height and width (gray, light on
    /// black) the way this recipe made the dataset's images.
    pub fn prepare(self, img: &DynamicImage, shape: ImageShape) -> Result<GrayImage> {
        let (width, height) = (shape.width as u32, shape.height as u32);
        let mut picture = Picture::new(img)?;
        if (picture.width, picture.height) == (width, height)
            && picture.dark_border_share() >= DARK_BORDER_SHARE
        {
            // Already the dataset's format: an exported dataset image is seen exactly as the
            // network saw it in training.
            if picture.peak() - picture.darkest() < MIN_CONTRAST {
                bail!("the image is blank (no ink stands out from the background)");
            }
            return Ok(picture.bytes());
        }
        picture.make_light_on_dark();
        if picture.peak() - picture.background < MIN_CONTRAST {
            bail!("the image is blank (no ink stands out from the background)");
        }
        match self {
            Recipe::Digit => digit::make(&picture, width, height),
            Recipe::Product => product::make(&picture, width, height),
            Recipe::Fit => fit::make(&picture, width, height),
        }
    }
}

/// A decoded picture in gray: transparency composited over white, luminance in [0, 1].
#[derive(Debug, Clone)]
pub struct Picture {
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Row-major gray values in [0, 1].
    pub gray: Vec<f32>,
    /// The background's level: the median of the border.
    pub background: f32,
}

impl Picture {
    /// The gray picture of a decoded image.
    pub fn new(img: &DynamicImage) -> Result<Self> {
        // Composite transparency over white (a transparent canvas with dark strokes is a drawing).
        let rgba = img.to_rgba32f();
        let (width, height) = rgba.dimensions();
        if width == 0 || height == 0 {
            bail!("the image is empty (0×0)");
        }
        let gray = rgba
            .pixels()
            .map(|p| {
                let [r, g, b, a] = p.0;
                let l = 0.299 * r + 0.587 * g + 0.114 * b;
                l * a + (1.0 - a)
            })
            .collect();
        let mut picture = Picture {
            width,
            height,
            gray,
            background: 0.0,
        };
        let mut border = picture.border();
        border.sort_by(|a, b| a.total_cmp(b));
        picture.background = border[border.len() / 2];
        Ok(picture)
    }

    /// The value at column `x`, row `y`.
    pub fn at(&self, x: u32, y: u32) -> f32 {
        self.gray[(y * self.width + x) as usize]
    }

    /// The outermost rows and columns, every pixel of each (corners twice).
    fn border(&self) -> Vec<f32> {
        let (w, h) = (self.width, self.height);
        let mut border = Vec::with_capacity(2 * (w + h) as usize);
        for x in 0..w {
            border.push(self.at(x, 0));
            border.push(self.at(x, h - 1));
        }
        for y in 0..h {
            border.push(self.at(0, y));
            border.push(self.at(w - 1, y));
        }
        border
    }

    /// The share of border pixels as dark as a dataset image's black.
    fn dark_border_share(&self) -> f32 {
        let border = self.border();
        border.iter().filter(|&&v| v <= DARK).count() as f32 / border.len() as f32
    }

    /// The brightest value.
    pub fn peak(&self) -> f32 {
        self.gray.iter().cloned().fold(0.0f32, f32::max)
    }

    /// The darkest value.
    fn darkest(&self) -> f32 {
        self.gray.iter().cloned().fold(1.0f32, f32::min)
    }

    /// Inverts a picture on a light background (dark ink on paper, a product on white), so that
    /// it is light on dark as MNIST-format images are.
    fn make_light_on_dark(&mut self) {
        if self.background > 0.5 {
            self.gray.iter_mut().for_each(|v| *v = 1.0 - *v);
            self.background = 1.0 - self.background;
        }
    }

    /// The picture as bytes, as it is.
    fn bytes(&self) -> GrayImage {
        let px = self
            .gray
            .iter()
            .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect();
        GrayImage::from_raw(self.width, self.height, px).expect("buffer of the picture's size")
    }

    /// The picture with the background at 0 and full intensity kept at 255: (v − background) /
    /// (1 − background), as bytes.
    fn on_black(&self) -> GrayImage {
        let bg = self.background;
        let px = self
            .gray
            .iter()
            .map(|v| (((v - bg) / (1.0 - bg)).clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect();
        GrayImage::from_raw(self.width, self.height, px).expect("buffer of the picture's size")
    }
}

/// Scales `img` so that it fits a `width`×`height` frame keeping its aspect ratio (its longer
/// edge, relative to the frame, fills it) and centres it on black.
fn fit_centred(img: &GrayImage, width: u32, height: u32) -> GrayImage {
    let (w, h) = img.dimensions();
    let scale = (width as f64 / w as f64).min(height as f64 / h as f64);
    let (nw, nh) = (
        ((w as f64 * scale).round() as u32).clamp(1, width),
        ((h as f64 * scale).round() as u32).clamp(1, height),
    );
    let small = if (nw, nh) == (w, h) {
        img.clone()
    } else if nw <= w && nh <= h {
        imageops::thumbnail(img, nw, nh)
    } else {
        imageops::resize(img, nw, nh, imageops::FilterType::Triangle)
    };
    let mut out = GrayImage::new(width, height);
    imageops::overlay(
        &mut out,
        &small,
        ((width - nw) / 2) as i64,
        ((height - nh) / 2) as i64,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Luma, Rgb, RgbImage};

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

    /// A 28×28 "product" in Fashion-MNIST's format: 16 wide, its longest edge (28) filling
    /// the frame, centred on black, light with a darker stripe.
    fn product() -> GrayImage {
        GrayImage::from_fn(28, 28, |x, y| {
            let inside = (6..22).contains(&x);
            Luma([match (inside, y) {
                (false, _) => 0,
                (true, 10..=13) => 90,
                (true, _) => 210,
            }])
        })
    }

    /// Mean absolute difference of two images of one size, in gray levels.
    fn mean_diff(a: &GrayImage, b: &GrayImage) -> f64 {
        assert_eq!(a.dimensions(), b.dimensions());
        let sum: f64 = a
            .pixels()
            .zip(b.pixels())
            .map(|(p, q)| (p.0[0] as f64 - q.0[0] as f64).abs())
            .sum();
        sum / a.len() as f64
    }

    #[test]
    fn digit_light_background_is_inverted_cropped_scaled_and_centred() {
        let out = Recipe::Digit.prepare(&drawing(400, 300), MNIST).unwrap();
        assert_eq!(out.dimensions(), (28, 28));
        // Border is background (black) after inversion.
        assert_eq!(out.get_pixel(0, 0).0[0], 0);
        assert_eq!(out.get_pixel(27, 27).0[0], 0);
        // The ink (tall, thin) fills 20 rows and is centred by mass.
        let rows_with_ink = (0..28)
            .filter(|&y| (0..28).any(|x| out.get_pixel(x, y).0[0] > 100))
            .count();
        assert!((19..=21).contains(&rows_with_ink), "{rows_with_ink}");
        let (cx, cy) = digit::centre_of_mass(&out).unwrap();
        assert!(
            (cx - 14.0).abs() <= 1.0 && (cy - 14.0).abs() <= 1.0,
            "{cx} {cy}"
        );
    }

    #[test]
    fn an_image_already_in_the_datasets_format_comes_out_byte_for_byte() {
        let mut digit = GrayImage::new(28, 28);
        for y in 4..24 {
            for x in 12..16 {
                digit.put_pixel(x, y, Luma([255 - (x + y) as u8]));
            }
        }
        for (recipe, img) in [(Recipe::Digit, &digit), (Recipe::Product, &product())] {
            for r in Recipe::ALL {
                let out = r.prepare(&DynamicImage::ImageLuma8(img.clone()), MNIST);
                assert!(out.unwrap() == *img, "{recipe:?} image through {r:?}");
            }
        }
    }

    #[test]
    fn a_28_pixel_digit_on_light_paper_is_prepared_like_any_size() {
        // A dark stroke on grey paper (background 200): at the model's size, yet not in its
        // format; it must come out as the same picture drawn at 56×56 does.
        let paper = |side: u32| {
            let s = side / 28;
            DynamicImage::ImageLuma8(GrayImage::from_fn(side, side, |x, y| {
                let stroke = (5 * s..7 * s).contains(&x) && (3 * s..15 * s).contains(&y);
                Luma([if stroke { 40 } else { 200 }])
            }))
        };
        let small = Recipe::Digit.prepare(&paper(28), MNIST).unwrap();
        let large = Recipe::Digit.prepare(&paper(56), MNIST).unwrap();
        assert_eq!(small.get_pixel(0, 0).0[0], 0, "background made black");
        let (cx, cy) = digit::centre_of_mass(&small).unwrap();
        assert!(
            (cx - 14.0).abs() <= 1.0 && (cy - 14.0).abs() <= 1.0,
            "centred by mass: {cx} {cy}"
        );
        assert!(
            mean_diff(&small, &large) < 6.0,
            "{}",
            mean_diff(&small, &large)
        );
    }

    #[test]
    fn a_product_upscaled_or_photographed_on_white_comes_back_to_its_dataset_form() {
        let original = product();
        let up = image::imageops::resize(&original, 112, 112, imageops::FilterType::Triangle);
        // Dark product on white with a white margin, in colour.
        let mut photo = RgbImage::from_pixel(160, 160, Rgb([255, 255, 255]));
        for (x, y, p) in up.enumerate_pixels() {
            let v = 255 - p.0[0];
            photo.put_pixel(x + 24, y + 24, Rgb([v, v, v]));
        }
        for (what, img) in [
            (
                "light on black, 112×112",
                DynamicImage::ImageLuma8(up.clone()),
            ),
            (
                "dark on white with a margin",
                DynamicImage::ImageRgb8(photo),
            ),
        ] {
            let out = Recipe::Product.prepare(&img, MNIST).unwrap();
            let d = mean_diff(&out, &original);
            // Within 10 gray levels on average (the resampled edges blur; measured 8.0).
            assert!(d < 10.0, "{what}: {d} gray levels from the original");
            // MNIST's recipe shrinks it into a 20×20 box instead (measured 66).
            let digit = Recipe::Digit.prepare(&img, MNIST).unwrap();
            assert!(mean_diff(&digit, &original) > 4.0 * d, "{what}");
        }
    }

    #[test]
    fn fit_scales_the_whole_picture_into_the_frame_and_centres_it() {
        // 40 wide, 20 high, light on black with a black margin that fit keeps.
        let img = GrayImage::from_fn(40, 20, |x, y| {
            Luma([if (10..30).contains(&x) && (5..15).contains(&y) {
                200
            } else {
                0
            }])
        });
        let out = Recipe::Fit
            .prepare(&DynamicImage::ImageLuma8(img), MNIST)
            .unwrap();
        // 40×20 → 28×14, rows 7..21; its content (half of each side) → columns 7..21, rows
        // 10..17 (a pixel half covered may fall below the threshold).
        let lit: Vec<(u32, u32)> = out
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0[0] > 100)
            .map(|(x, y, _)| (x, y))
            .collect();
        let xs = lit.iter().map(|p| p.0);
        let ys = lit.iter().map(|p| p.1);
        let (x0, x1) = (xs.clone().min().unwrap(), xs.max().unwrap());
        let (y0, y1) = (ys.clone().min().unwrap(), ys.max().unwrap());
        assert!(
            (6..=8).contains(&x0) && (19..=21).contains(&x1),
            "{x0}..{x1}"
        );
        assert!(
            (10..=11).contains(&y0) && (16..=17).contains(&y1),
            "{y0}..{y1}"
        );
    }

    #[test]
    fn blank_images_are_an_error() {
        let white = DynamicImage::ImageRgb8(RgbImage::from_pixel(50, 50, Rgb([255, 255, 255])));
        let black = DynamicImage::ImageLuma8(GrayImage::new(28, 28));
        for r in Recipe::ALL {
            for img in [&white, &black] {
                assert!(format!("{:#}", r.prepare(img, MNIST).unwrap_err()).contains("blank"));
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for r in Recipe::ALL {
            assert_eq!(Recipe::from_name(r.name()), Some(r));
        }
        assert_eq!(Recipe::from_name("mnist"), None);
    }
}
