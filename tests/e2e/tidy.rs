//! House rules that hold by themselves (issue 13 §7), checked on the sources as rust-analyzer's
//! tidy tests do: protobuf only at the edge. A service's domain and store modules are plain
//! Rust; only its adapter (`grpc`, `convert`, `events`), its wiring (`lib`, which builds the
//! gRPC server) and its benchmark (which feeds the event handler) may name `cwsm_proto`,
//! `tonic` or `prost`.

use std::path::PathBuf;

/// The files of a service that are its edge.
const EDGE: [&str; 5] = ["grpc.rs", "convert.rs", "events.rs", "lib.rs", "bench.rs"];

/// What the domain and stores may not name.
const PROTOBUF: [&str; 3] = ["cwsm_proto", "tonic", "prost"];

/// The names of `PROTOBUF` that `line` uses as a path (`tonic::…`, `use prost`), outside
/// comments.
fn named<'a>(line: &str) -> Vec<&'a str> {
    let code = line.split("//").next().unwrap_or_default();
    PROTOBUF
        .iter()
        .copied()
        .filter(|name| {
            code.match_indices(name).any(|(at, _)| {
                let before = code[..at].chars().next_back();
                let after = &code[at + name.len()..];
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    && (after.starts_with("::") || after.starts_with(';'))
            })
        })
        .collect()
}

#[test]
fn protobuf_is_named_only_at_the_edge_of_each_service() -> anyhow::Result<()> {
    let services = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../services");
    let mut seen = 0;
    let mut found = Vec::new();
    for service in ["matching", "projects", "reporting", "accounts"] {
        let src = services.join(service).join("src");
        for entry in std::fs::read_dir(&src)? {
            let path = entry?.path();
            let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                continue;
            };
            if !file.ends_with(".rs") || EDGE.contains(&file) {
                continue;
            }
            seen += 1;
            let text = std::fs::read_to_string(&path)?;
            for (n, line) in text.lines().enumerate() {
                for name in named(line) {
                    found.push(format!("{service}/src/{file}:{}: {name}", n + 1));
                }
            }
        }
    }
    assert!(seen > 20, "read only {seen} files");
    assert!(
        found.is_empty(),
        "domain and store code names protobuf (move it to the adapter):\n{}",
        found.join("\n")
    );
    Ok(())
}

#[test]
fn the_check_sees_paths_not_words() {
    assert_eq!(named("use prost::Message;"), vec!["prost"]);
    assert_eq!(named("    let s = tonic::Status::ok(\"\");"), vec!["tonic"]);
    assert_eq!(
        named("use cwsm_proto::projects::v1 as pb;"),
        vec!["cwsm_proto"]
    );
    assert!(named("// tonic::Status in a comment").is_empty());
    assert!(named("let prostate = 1; // a word, not the crate").is_empty());
    assert!(named("fn cwsm_protocol() {}").is_empty());
}
