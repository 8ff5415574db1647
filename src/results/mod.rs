//! Result rows on disk and the exporters that read them.

pub mod csv;
