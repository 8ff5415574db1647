//! Resampling shared by the geometric transforms: bilinear interpolation of an image at
//! fractional positions, with the background value outside it.

use crate::data::ImageShape;

/// Replaces each image of `batch` by what `f(image, out)` writes into `out` (one image's
/// buffer, reused).
pub fn each_image(batch: &mut [f32], shape: ImageShape, mut f: impl FnMut(&[f32], &mut [f32])) {
    let mut out = vec![0.0f32; shape.len()];
    for img in batch.chunks_exact_mut(shape.len()) {
        f(img, &mut out);
        img.copy_from_slice(&out);
    }
}

/// Writes into `out` (one image) the values of `img` at source position `src(y, x)` (row,
/// column, in pixel units: (0, 0) is the centre of the top-left pixel) for every output pixel,
/// interpolated bilinearly; positions off the image read `background`.
pub fn resample(
    img: &[f32],
    shape: ImageShape,
    background: f32,
    out: &mut [f32],
    mut src: impl FnMut(usize, usize) -> (f32, f32),
) {
    let (h, w, c) = (shape.height, shape.width, shape.channels);
    let at = |y: isize, x: isize, ch: usize| -> f32 {
        if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
            background
        } else {
            img[(y as usize * w + x as usize) * c + ch]
        }
    };
    for i in 0..h {
        for j in 0..w {
            let (sy, sx) = src(i, j);
            let (y0, x0) = (sy.floor(), sx.floor());
            let (fy, fx) = (sy - y0, sx - x0);
            let (y0, x0) = (y0 as isize, x0 as isize);
            for ch in 0..c {
                let top = at(y0, x0, ch) * (1.0 - fx) + at(y0, x0 + 1, ch) * fx;
                let bottom = at(y0 + 1, x0, ch) * (1.0 - fx) + at(y0 + 1, x0 + 1, ch) * fx;
                out[(i * w + j) * c + ch] = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
}
