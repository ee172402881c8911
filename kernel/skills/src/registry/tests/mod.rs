//! Integration-style tests of the registry on temporary directories.

pub(crate) mod fixtures;

mod discovery;
mod index_reuse;
mod lifecycle_paths;
mod reloading;
mod trust;
mod versions_and_deps;
