//! The `cwsm` binary's library half: [`app`] starts services in one process (what `cwsm serve`
//! and the end-to-end tests run), [`cli`] is the command-line client, [`bench`] the benchmarks
//! it runs, [`demo`] the demo marketplace's loader.

pub mod app;
pub mod bench;
pub mod cli;
pub mod demo;
pub mod import;
