//! The `cwsm` binary's library half: [`app`] starts services in one process (what `cwsm serve`
//! and the end-to-end tests run), [`cli`] is the command-line client.

pub mod app;
pub mod cli;
pub mod demo;
pub mod import;
