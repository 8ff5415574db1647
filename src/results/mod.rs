//! Result rows on disk and the exporters that read them.

pub mod csv;
pub mod diff;
pub mod plots;
pub mod report;
pub mod search;
pub mod stats;
