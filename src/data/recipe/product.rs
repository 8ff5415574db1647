//! Fashion-MNIST's recipe, as its paper describes it (Xiao, Rasul and Vollgraf 2017, section
//! 2): trim the edges close to the corner colour (within 5% of the maximum intensity), resize
//! the longest edge to 28, extend the shorter edge to 28 and centre the product, negate the
//! intensities (a product photographed on white becomes light on black), convert to 8-bit
//! gray. Here the background is the border's median rather than one corner's colour (a shadow
//! in one corner of a photo then does not stop the trim), the negation is the picture's
//! light-on-dark step, and the paper's sharpening is left out (it restored detail lost by its
//! subsampling; the resize here filters instead). For a model of another size, the longest
//! edge fills the frame.

use anyhow::Result;
use image::GrayImage;

use super::{fit_centred, Picture};

/// Edges whose every pixel is within this of the background are trimmed (the paper's 5%).
const TRIM: f32 = 0.05;

/// Makes `picture` (light on dark) into a `width`×`height` product image.
pub fn make(picture: &Picture, width: u32, height: u32) -> Result<GrayImage> {
    let (w, h) = (picture.width, picture.height);
    let near = |x: u32, y: u32| picture.at(x, y) - picture.background <= TRIM;
    let row_is_background = |y: u32| (0..w).all(|x| near(x, y));
    let col_is_background = |x: u32, y0: u32, y1: u32| (y0..y1).all(|y| near(x, y));
    let y0 = (0..h).find(|&y| !row_is_background(y)).unwrap_or(0);
    let y1 = (y0..h)
        .rev()
        .find(|&y| !row_is_background(y))
        .unwrap_or(h - 1)
        + 1;
    let x0 = (0..w).find(|&x| !col_is_background(x, y0, y1)).unwrap_or(0);
    let x1 = (x0..w)
        .rev()
        .find(|&x| !col_is_background(x, y0, y1))
        .unwrap_or(w - 1)
        + 1;
    let trimmed =
        image::imageops::crop_imm(&picture.on_black(), x0, y0, x1 - x0, y1 - y0).to_image();
    Ok(fit_centred(&trimmed, width, height))
}
