//! Where MNIST-format datasets live, their checksums, loading and fetching.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::idx::{maybe_gunzip, read_idx_file};

/// The four files of an MNIST-format dataset, in a fixed order.
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// sha256 of the decompressed MNIST files, in the order of [`FILES`].
pub const MNIST_SHA256: [&str; 4] = [
    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
];

/// Public mirrors tried by `data fetch` (gzip files), in order.
pub const MNIST_MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];

/// Image side length of every MNIST-format dataset.
pub const SIDE: usize = 28;
/// Number of pixels in one image.
pub const PIXELS: usize = SIDE * SIDE;
/// Number of classes.
pub const CLASSES: usize = 10;

/// Which part of a dataset to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The 60,000 training images.
    Train,
    /// The 10,000 held-out test images.
    Test,
}

/// Images (row-major u8, 28×28 each) and their labels.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// `len() * PIXELS` bytes.
    pub images: Vec<u8>,
    /// One label in 0..10 per image.
    pub labels: Vec<u8>,
    /// sha256 over the two files this split came from (identifies the data in cache keys).
    pub sha256: String,
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
        &self.images[i * PIXELS..(i + 1) * PIXELS]
    }

    /// Keeps only the first `n` images.
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            self.images.truncate(n * PIXELS);
            self.labels.truncate(n);
        }
    }
}

/// Expected sha256 values of a known dataset, if we have them.
pub fn expected_sha256(dataset: &str) -> Option<[&'static str; 4]> {
    (dataset == "mnist").then_some(MNIST_SHA256)
}

/// The folder a dataset lives in under the data root.
pub fn dataset_dir(data_root: &Path, dataset: &str) -> PathBuf {
    data_root.join(dataset)
}

fn find_file(dir: &Path, name: &str) -> Result<PathBuf> {
    for candidate in [dir.join(name), dir.join(format!("{name}.gz"))] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "{} is missing (nor is there a .gz of it); run `mnist-lab data fetch` or `make data`",
        dir.join(name).display()
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    format!("{:x}", h.finalize())
}

/// Loads one split of the dataset in `dir`, with strict shape and label checks.
pub fn load(dir: &Path, split: Split) -> Result<Dataset> {
    let (img_name, lbl_name) = match split {
        Split::Train => (FILES[0], FILES[1]),
        Split::Test => (FILES[2], FILES[3]),
    };
    let img_path = find_file(dir, img_name)?;
    let lbl_path = find_file(dir, lbl_name)?;
    let images = read_idx_file(&img_path)?;
    let labels = read_idx_file(&lbl_path)?;
    if images.dims.len() != 3 || images.dims[1] != SIDE || images.dims[2] != SIDE {
        bail!(
            "{}: dimensions {:?}, expected [N, 28, 28]",
            img_path.display(),
            images.dims
        );
    }
    if labels.dims.len() != 1 {
        bail!(
            "{}: dimensions {:?}, expected [N]",
            lbl_path.display(),
            labels.dims
        );
    }
    if images.dims[0] != labels.dims[0] {
        bail!(
            "{} has {} images but {} has {} labels",
            img_path.display(),
            images.dims[0],
            lbl_path.display(),
            labels.dims[0]
        );
    }
    if let Some(pos) = labels.data.iter().position(|&l| l as usize >= CLASSES) {
        bail!(
            "{}: label {} at byte offset {} is not a digit 0-9",
            lbl_path.display(),
            labels.data[pos],
            8 + pos
        );
    }
    let mut h = Sha256::new();
    h.update(&images.data);
    h.update(&labels.data);
    Ok(Dataset {
        images: images.data,
        labels: labels.data,
        sha256: format!("{:x}", h.finalize()),
    })
}

/// Checks every file of the dataset in `dir` against its known sha256 (after decompression).
pub fn verify(dir: &Path, dataset: &str) -> Result<()> {
    let Some(expected) = expected_sha256(dataset) else {
        // Unknown dataset: the strict IDX checks in `load` are all we can do.
        for split in [Split::Train, Split::Test] {
            load(dir, split)?;
        }
        return Ok(());
    };
    for (name, want) in FILES.iter().zip(expected) {
        let path = find_file(dir, name)?;
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let bytes = maybe_gunzip(bytes, &path.display().to_string())?;
        let got = sha256_hex(&bytes);
        if got != want {
            bail!(
                "{}: sha256 of the decompressed file is {got}, expected {want} (corrupt or a different file)",
                path.display()
            );
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (temp file in the same folder, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Unique per process and call, so threads and processes writing the same file never
    // share a temp file; the rename makes the last complete write win.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{n}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

fn fetch_url(url: &str) -> Result<Vec<u8>> {
    let out = std::process::Command::new("curl")
        .args(["-fsSL", "--connect-timeout", "15", "--max-time", "300", url])
        .output()
        .context("cannot run curl (needed to download from the mirrors)")?;
    if !out.status.success() {
        bail!("{url}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out.stdout)
}

/// Puts the four files of `dataset` into `dir`, decompressed and verified.
///
/// Sources, in order: `from` (a folder with the raw or .gz files), then (if `mirrors`) the
/// public mirrors.
pub fn fetch(dir: &Path, dataset: &str, from: Option<&Path>, mirrors: bool) -> Result<()> {
    if verify(dir, dataset).is_ok() {
        eprintln!("{} is complete and verified", dir.display());
        return Ok(());
    }
    let expected = expected_sha256(dataset);
    for (i, name) in FILES.iter().enumerate() {
        let dest = dir.join(name);
        let want = expected.map(|e| e[i]);
        let good = |bytes: &[u8]| want.is_none_or(|w| sha256_hex(bytes) == w);
        if let Ok(bytes) = std::fs::read(&dest) {
            if good(&bytes) {
                continue;
            }
        }
        let mut errors = Vec::new();
        let mut got = None;
        if let Some(src) = from {
            match find_file(src, name).and_then(|p| {
                let b =
                    std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
                maybe_gunzip(b, &p.display().to_string())
            }) {
                Ok(b) if good(&b) => got = Some(b),
                Ok(_) => errors.push(format!("{}: sha256 mismatch", src.join(name).display())),
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        if got.is_none() && mirrors && dataset == "mnist" {
            for mirror in MNIST_MIRRORS {
                let url = format!("{mirror}{name}.gz");
                match fetch_url(&url).and_then(|b| maybe_gunzip(b, &url)) {
                    Ok(b) if good(&b) => {
                        got = Some(b);
                        break;
                    }
                    Ok(_) => errors.push(format!("{url}: sha256 mismatch")),
                    Err(e) => errors.push(format!("{e:#}")),
                }
            }
        }
        match got {
            Some(bytes) => {
                write_atomic(&dest, &bytes)?;
                eprintln!("wrote {}", dest.display());
            }
            None => bail!(
                "could not obtain {name} for {dataset}; tried:\n  {}",
                if errors.is_empty() {
                    "no source (give --from DIR)".to_string()
                } else {
                    errors.join("\n  ")
                }
            ),
        }
    }
    verify(dir, dataset)
}
