//! The recipe of a dataset known only from its IDX files: the whole picture, its background
//! made black, scaled so that its longest edge (relative to the frame) fills the frame,
//! keeping the aspect ratio, and centred. Nothing is cropped: mnist-lab cannot know how such a
//! dataset's images were framed, and a letterbox keeps whatever framing the picture has.

use anyhow::Result;
use image::GrayImage;

use super::{fit_centred, Picture};

/// Makes `picture` (light on dark) into a `width`×`height` image.
pub fn make(picture: &Picture, width: u32, height: u32) -> Result<GrayImage> {
    Ok(fit_centred(&picture.on_black(), width, height))
}
