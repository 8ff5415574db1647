//! The datasets mnist-lab knows by name: their files, checksums, mirrors, image shape and
//! class names. Any other folder of MNIST-format IDX files works too; its shape then comes from
//! the IDX headers and its classes from the labels (see [`super::dataset::info`]).

use super::dataset::ImageShape;
use super::recipe::Recipe;

/// The four files of an MNIST-format dataset, in a fixed order: training images and labels,
/// then test images and labels.
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// A dataset known by name.
#[derive(Debug)]
pub struct Descriptor {
    /// Folder name under the data root, and the `data.dataset` value that selects it.
    pub name: &'static str,
    /// sha256 of each decompressed file, in the order of [`FILES`].
    pub sha256: [&'static str; 4],
    /// Public mirrors holding `<file>.gz`, tried in order by `data fetch`.
    pub mirrors: &'static [&'static str],
    /// Folders where a system package puts the files (raw or .gz), tried before the mirrors.
    pub packaged: &'static [&'static str],
    /// Shape of every image (the loader checks the IDX header against it).
    pub image: ImageShape,
    /// Class names, by label.
    pub class_names: &'static [&'static str],
    /// How its images were made from pictures (what `predict` does to a user's picture).
    pub recipe: Recipe,
}

/// Every dataset known by name.
pub const KNOWN: &[Descriptor] = &[
    Descriptor {
        name: "mnist",
        sha256: [
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ],
        mirrors: &[
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ],
        packaged: &[],
        image: ImageShape {
            height: 28,
            width: 28,
            channels: 1,
        },
        class_names: &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
        recipe: Recipe::Digit,
    },
    // Zalando's Fashion-MNIST (MIT licence). The checksums are of the decompressed files, the
    // same whichever mirror or package the .gz came from (Debian's dataset-fashion-mnist
    // recompresses them).
    Descriptor {
        name: "fashion-mnist",
        sha256: [
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ],
        mirrors: &[
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ],
        // Debian's dataset-fashion-mnist.
        packaged: &["/usr/share/datasets/fashion-mnist"],
        image: ImageShape {
            height: 28,
            width: 28,
            channels: 1,
        },
        class_names: &[
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ],
        recipe: Recipe::Product,
    },
];

/// How the images of dataset `name` were made: its descriptor's recipe, or [`Recipe::Fit`] for
/// a dataset known only from its IDX files.
pub fn recipe_of(name: &str) -> Recipe {
    descriptor(name).map_or(Recipe::Fit, |d| d.recipe)
}

/// The descriptor of a dataset known by name.
pub fn descriptor(name: &str) -> Option<&'static Descriptor> {
    KNOWN.iter().find(|d| d.name == name)
}

/// The one rule for a dataset name, wherever one is given (`data.dataset`, `--dataset`): a
/// folder name under the data root of lowercase ASCII letters, digits and '-', so that it can
/// never point outside the data root (`../x`, `/x`) or differ only by case.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(format!(
            "dataset {name:?} is not a dataset name: expected a folder name under the data root of lowercase letters, digits and '-', such as {}",
            known_names()
        ));
    }
    Ok(())
}

/// "\"mnist\" or \"fashion-mnist\"" (the datasets known by name).
pub fn known_names() -> String {
    let names: Vec<String> = KNOWN.iter().map(|d| format!("{:?}", d.name)).collect();
    names.join(" or ")
}

/// What to do when the files of dataset `name` are missing from `dir`: fetch a known one, or
/// put an unknown one's files there.
pub fn missing_hint(name: &str, dir: &std::path::Path) -> String {
    if descriptor(name).is_some() {
        format!("run `mnist-lab data fetch --dataset {name}` or `make data`")
    } else {
        format!(
            "dataset {name:?} is unknown to mnist-lab (it knows {}), so it cannot be fetched: put its four IDX files (raw or .gz) in {}, or copy them there with `mnist-lab data fetch --dataset {name} --from FOLDER`",
            known_names(),
            dir.display()
        )
    }
}
