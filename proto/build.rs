//! Compiles the API contract under `cwsm/` into Rust with tonic clients and servers.
//!
//! protox parses the `.proto` files in pure Rust, so no system `protoc` is needed. The
//! resulting descriptor set (with imports and source info) is also written to
//! `$OUT_DIR/cwsm_descriptor.bin` for gRPC server reflection.

use std::error::Error;
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut files = Vec::new();
    collect_protos(&root.join("cwsm"), &mut files)?;
    // Sorted so that the generated code and the descriptor set do not depend on
    // directory order.
    files.sort();

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=cwsm");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_imports(true).include_source_info(true);
    for file in &files {
        compiler.open_file(file)?;
    }
    std::fs::write(
        out_dir.join("cwsm_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // An RPC of the contract that a service has not built yet answers UNIMPLEMENTED
        // instead of failing to compile; each service's module doc lists which.
        .generate_default_stubs(true)
        .compile_fds_with_config(compiler.file_descriptor_set(), {
            // `prost::Name` on every message: its full name finds it in the descriptor set
            // (the CLI's --json prints a reply as the API's JSON through it).
            let mut config = prost_build::Config::new();
            config.enable_type_names();
            config
        })?;
    Ok(())
}

/// Every `.proto` file under `dir`, recursively.
fn collect_protos(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            files.push(path);
        }
    }
    Ok(())
}
