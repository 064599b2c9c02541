//! The README cannot drift (issue 13 §5): its walk-through, the shell between
//! `<!-- walkthrough -->` and `<!-- /walkthrough -->`, runs as written against a fresh
//! `cwsm serve --demo`, with `cwsm` on the PATH and the repository's `seeds/` beside it, as a
//! reader would run it. What the README says the walk-through ends with is checked against
//! what the commands printed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use cwsm_tests::ServeProcess;

const README: &str = include_str!("../../README.md");
const SECRET: &str = "readme-walkthrough-signing-secret";

/// What the README says of the walk-through's end, each as the commands print it: January's
/// savings (m³) and the company's share of them (yuan).
const STATED: [(&str, &str); 2] = [
    ("January's savings", "623.649 m³"),
    ("the company's share", "1,789.87 yuan"),
];

/// The shell of the README's walk-through: every fenced block between the markers.
fn walkthrough(readme: &str) -> anyhow::Result<String> {
    let (_, rest) = readme
        .split_once("<!-- walkthrough -->")
        .context("README.md has no <!-- walkthrough --> marker")?;
    let (section, _) = rest
        .split_once("<!-- /walkthrough -->")
        .context("README.md has no <!-- /walkthrough --> marker")?;
    let mut script = String::new();
    let mut fenced = false;
    for line in section.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            script.push_str(line);
            script.push('\n');
        }
    }
    anyhow::ensure!(
        script
            .lines()
            .filter(|l| l.trim_start().starts_with("cwsm "))
            .count()
            >= 10,
        "the walk-through has fewer than ten cwsm commands:\n{script}"
    );
    Ok(script)
}

#[cfg(unix)]
fn link(target: &Path, at: &Path) -> anyhow::Result<()> {
    std::os::unix::fs::symlink(target, at)
        .with_context(|| format!("linking {} to {}", at.display(), target.display()))
}

#[test]
fn the_walkthrough_finds_its_shell_and_only_that() -> anyhow::Result<()> {
    let readme = "intro\n```sh\ncwsm not this\n```\n<!-- walkthrough -->\ntext\n```sh\n\
                  cwsm a\ncwsm b\ncwsm c\ncwsm d\ncwsm e\n```\nmore text\n```sh\ncwsm f\ncwsm g\n\
                  cwsm h\ncwsm i\ncwsm j\n```\n<!-- /walkthrough -->\n```sh\ncwsm nor this\n```\n";
    let script = walkthrough(readme)?;
    assert!(
        script.starts_with("cwsm a\n") && script.ends_with("cwsm j\n"),
        "{script}"
    );
    assert!(!script.contains("this"));
    assert!(walkthrough("no markers").is_err());
    Ok(())
}

#[cfg(unix)]
#[test]
fn the_readme_walkthrough_runs_as_written_on_a_fresh_demo() -> anyhow::Result<()> {
    let script = walkthrough(README)?;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the tests' folder has no parent")?
        .to_path_buf();
    let root = tempfile::tempdir()?;
    let bin = root.path().join("bin");
    let work = root.path().join("work");
    std::fs::create_dir_all(&bin)?;
    std::fs::create_dir_all(&work)?;
    // `cwsm` as the reader has it on the PATH, and the seeds the walk-through reads.
    let cwsm = PathBuf::from(env!("CARGO_BIN_EXE_cwsm-serve"));
    link(&cwsm, &bin.join("cwsm"))?;
    link(&repo.join("seeds"), &work.join("seeds"))?;
    let log = root.path().join("serve.log");
    let server =
        ServeProcess::start_with(&cwsm, &root.path().join("data"), SECRET, &log, &["--demo"])?;
    // The demo is loaded when the banner goes on to what to run next (a guard, not a figure).
    server.wait_for_line("Next:", Duration::from_secs(600))?;
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = Command::new("bash")
        .args(["-e", "-u", "-o", "pipefail", "-x", "-c", &script])
        .current_dir(&work)
        .env("PATH", path)
        .env("CWSM_SERVER", &server.url)
        .env_remove("CWSM_TOKEN")
        .env_remove("CWSM_API_KEY")
        .env_remove("CWSM_PASSWORD")
        .env_remove("CWSM_DATA_DIR")
        .output()
        .context("running bash")?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    server.kill();
    anyhow::ensure!(
        run.status.success(),
        "the README's walk-through failed ({}):\n--- stdout\n{stdout}\n--- stderr (each command \
         as run, then what it said)\n{stderr}\n--- the server's log: {}",
        run.status,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    for (what, figure) in STATED {
        assert!(
            stdout.contains(figure),
            "{what}: the commands did not print {figure}:\n{stdout}"
        );
        assert!(
            README.contains(figure),
            "{what}: README.md does not say {figure}"
        );
    }
    // The verification report was saved where the walk-through said, as archived.
    let report = std::fs::read_to_string(work.join("verification.html"))?;
    assert!(report.contains("核查报告"), "{report:.400}");
    assert!(stdout.contains("yes (as verified)"), "{stdout}");
    Ok(())
}
