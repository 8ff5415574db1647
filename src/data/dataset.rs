//! A dataset in memory, and what a network needs to know about one before it is loaded: the
//! image shape and the classes.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::catalog::{descriptor, FILES};
use super::idx::{read_idx_file, read_idx_file_hashed, read_idx_header};
use super::recipe::Recipe;

/// The most values one image may hold (2²⁴, the limit of one layer's output too: a 28×28
/// image with 21,400 channels).
pub const MAX_IMAGE_VALUES: f64 = 16_777_216.0;

/// Height × width × channels of every image of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageShape {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Values per pixel (1 for gray).
    pub channels: usize,
}

impl ImageShape {
    /// Values in one image.
    pub fn len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// True for a zero-sized image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that images of this shape are within [`MAX_IMAGE_VALUES`]: what an IDX header or
    /// a model file declares is checked before anything of that size is allocated.
    pub fn check_size(&self) -> Result<(), String> {
        let values = self.height as f64 * self.width as f64 * self.channels as f64;
        if values > MAX_IMAGE_VALUES {
            return Err(format!(
                "images of {self} are {values:.3e} values each, above the limit of {MAX_IMAGE_VALUES} (2^24)"
            ));
        }
        Ok(())
    }

    /// Reads the shape from IDX dimensions `[N, H, W]` (gray) or `[N, H, W, C]`.
    fn from_dims(dims: &[usize]) -> Option<Self> {
        match *dims {
            [_, h, w] if h > 0 && w > 0 => Some(ImageShape {
                height: h,
                width: w,
                channels: 1,
            }),
            [_, h, w, c] if h > 0 && w > 0 && c > 0 => Some(ImageShape {
                height: h,
                width: w,
                channels: c,
            }),
            _ => None,
        }
    }
}

impl std::fmt::Display for ImageShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×{}×{}", self.height, self.width, self.channels)
    }
}

/// What a network needs to know about a dataset: its image shape, its classes, and how its
/// images were made from pictures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetInfo {
    /// Every image's shape.
    pub image: ImageShape,
    /// Class names by label (the labels themselves, "0", "1", …, when the dataset has none).
    pub class_names: Vec<String>,
    /// How its images were made (what `predict` does to a picture).
    pub recipe: Recipe,
}

impl DatasetInfo {
    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.class_names.len()
    }

    /// Names "0", "1", … for `n` classes, of a dataset known only from its files (made by
    /// [`Recipe::Fit`]).
    pub fn numbered(image: ImageShape, n: usize) -> Self {
        DatasetInfo {
            image,
            class_names: (0..n).map(|c| c.to_string()).collect(),
            recipe: Recipe::Fit,
        }
    }
}

/// Which part of a dataset to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The training images (cross-validation and final models).
    Train,
    /// The held-out test images.
    Test,
}

impl Split {
    /// The (images, labels) file names of this split.
    fn files(self) -> (&'static str, &'static str) {
        let (i, l) = self.indices();
        (FILES[i], FILES[l])
    }

    /// The positions of its (images, labels) files in [`FILES`].
    fn indices(self) -> (usize, usize) {
        match self {
            Split::Train => (0, 1),
            Split::Test => (2, 3),
        }
    }
}

/// Images (row-major u8, channels last) and their labels.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// `len() * info.image.len()` bytes.
    pub images: Vec<u8>,
    /// One label per image, each below `info.classes()`.
    pub labels: Vec<u8>,
    /// sha256 over the two files this split came from (identifies the data in cache keys).
    pub sha256: String,
    /// Image shape and classes.
    pub info: DatasetInfo,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.info.image.len();
        &self.images[i * n..(i + 1) * n]
    }
}

/// The path of `name` (raw, or else its .gz) in `dir`.
pub fn find_file(dir: &Path, name: &str) -> Result<PathBuf> {
    for candidate in [dir.join(name), dir.join(format!("{name}.gz"))] {
        if candidate.is_file() {
            return Ok(candidate);
        }
        if candidate.is_dir() {
            bail!(
                "{} is a folder, expected the IDX file {name} (raw or .gz)",
                candidate.display()
            );
        }
    }
    let dataset = dir.file_name().and_then(|n| n.to_str()).unwrap_or("NAME");
    bail!(
        "{} is missing (nor is there a .gz of it); {}",
        dir.join(name).display(),
        super::catalog::missing_hint(dataset, dir)
    )
}

/// Checks that the four files of dataset `name` are in `dir` and that their IDX headers fit
/// together (images of `info`'s shape, as many labels as images), without reading the pixels:
/// what `check` can promise `run` cheaply. (`data verify` checks the contents.)
pub fn check_present(dir: &Path, name: &str, info: &DatasetInfo) -> Result<()> {
    for split in [Split::Train, Split::Test] {
        let (img_name, lbl_name) = split.files();
        let (img_path, lbl_path) = (find_file(dir, img_name)?, find_file(dir, lbl_name)?);
        let (images, labels) = check_headers(&img_path, &lbl_path, name, info)?;
        check_counts(&img_path, images, &lbl_path, labels)?;
    }
    Ok(())
}

/// Checks the IDX headers of an image file and its label file: images of `info`'s shape and
/// labels in one dimension. Read before the payloads, so a file of the wrong kind (a label
/// file where the images belong) is named as such, not by a payload length. Returns the
/// number of images and of labels.
fn check_headers(
    img_path: &Path,
    lbl_path: &Path,
    name: &str,
    info: &DatasetInfo,
) -> Result<(usize, usize)> {
    let images = read_idx_header(img_path)?;
    if ImageShape::from_dims(&images) != Some(info.image) {
        let i = info.image;
        bail!(
            "{}: dimensions {images:?}, expected [N, {}, {}{}] (an idx3 image file of {name})",
            img_path.display(),
            i.height,
            i.width,
            if i.channels == 1 {
                String::new()
            } else {
                format!(", {}", i.channels)
            }
        );
    }
    let labels = read_idx_header(lbl_path)?;
    if labels.len() != 1 {
        bail!(
            "{}: dimensions {labels:?}, expected [N] (an idx1 label file)",
            lbl_path.display()
        );
    }
    Ok((images[0], labels[0]))
}

/// Fails unless a file of the dataset known as `name` has its known sha256: other files under a
/// known name (a corrupt download, or a dataset of one's own in `data/mnist`) would train and
/// be scored as if they were that dataset.
fn check_known(path: &Path, got: &str, want: &str, name: &str) -> Result<()> {
    if got != want {
        bail!(
            "{}: sha256 of the decompressed file is {got}, not {name}'s {want}: not {name}'s file (corrupt, or another dataset under its name); fetch it again with `mnist-lab data fetch --dataset {name}` (or `make data`), or give a dataset of your own a folder name of its own",
            path.display()
        );
    }
    Ok(())
}

/// Fails unless there is one label per image.
fn check_counts(img_path: &Path, images: usize, lbl_path: &Path, labels: usize) -> Result<()> {
    if images != labels {
        bail!(
            "{} has {images} images but {} has {labels} labels",
            img_path.display(),
            lbl_path.display(),
        );
    }
    Ok(())
}

/// Image shape and classes of the dataset `name` in `dir`: from its descriptor when the
/// dataset is known by name (no file is read), else from the training images' IDX header and
/// the largest label of both label files.
pub fn info(dir: &Path, name: &str) -> Result<DatasetInfo> {
    if let Some(d) = descriptor(name) {
        return Ok(DatasetInfo {
            image: d.image,
            class_names: d.class_names.iter().map(|s| s.to_string()).collect(),
            recipe: d.recipe,
        });
    }
    let images = find_file(dir, FILES[0])?;
    let dims = read_idx_header(&images)?;
    let image = ImageShape::from_dims(&dims).with_context(|| {
        format!(
            "{}: dimensions {dims:?}, expected [N, height, width] or [N, height, width, channels] (an idx3 image file)",
            images.display()
        )
    })?;
    image
        .check_size()
        .map_err(|e| anyhow::anyhow!("{}: {e}", images.display()))?;
    let mut classes = 0;
    for name in [FILES[1], FILES[3]] {
        let labels = read_idx_file(&find_file(dir, name)?)?;
        classes = classes.max(
            labels
                .data
                .iter()
                .map(|&l| l as usize + 1)
                .max()
                .unwrap_or(0),
        );
    }
    if classes < 2 {
        bail!(
            "{}: the labels name fewer than 2 classes; nothing to classify",
            dir.display()
        );
    }
    Ok(DatasetInfo::numbered(image, classes))
}

/// Loads one split of the dataset `name` in `dir`, with strict shape and label checks.
pub fn load(dir: &Path, name: &str, split: Split) -> Result<Dataset> {
    let info = info(dir, name)?;
    let (img_name, lbl_name) = split.files();
    let img_path = find_file(dir, img_name)?;
    let lbl_path = find_file(dir, lbl_name)?;
    check_headers(&img_path, &lbl_path, name, &info)?;
    // The payloads before the counts: a truncated file is the first thing to say.
    let (images, images_sha) = read_idx_file_hashed(&img_path)?;
    let (labels, labels_sha) = read_idx_file_hashed(&lbl_path)?;
    if let Some(d) = descriptor(name) {
        let (i, l) = split.indices();
        check_known(&img_path, &images_sha, d.sha256[i], name)?;
        check_known(&lbl_path, &labels_sha, d.sha256[l], name)?;
    }
    check_counts(&img_path, images.dims[0], &lbl_path, labels.dims[0])?;
    let classes = info.classes();
    if let Some(pos) = labels.data.iter().position(|&l| l as usize >= classes) {
        bail!(
            "{}: label {} at byte offset {} is not a class of {name} (0–{})",
            lbl_path.display(),
            labels.data[pos],
            8 + pos,
            classes - 1
        );
    }
    let mut h = Sha256::new();
    h.update(&images.data);
    h.update(&labels.data);
    Ok(Dataset {
        images: images.data,
        labels: labels.data,
        sha256: format!("{:x}", h.finalize()),
        info,
    })
}
