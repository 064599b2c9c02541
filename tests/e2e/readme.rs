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
    // The walk-through as written, then where it left its request and project (for the
    // language check below).
    let script = format!(
        "{}\necho \"$REQUEST $PROJECT\" > walkthrough.ids\n",
        walkthrough(README)?
    );
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
        // The figures the README states are the English tables'.
        .env("CWSM_LANG", "en")
        .env_remove("CWSM_TOKEN")
        .env_remove("CWSM_API_KEY")
        .env_remove("CWSM_PASSWORD")
        .env_remove("CWSM_DATA_DIR")
        .output()
        .context("running bash")?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
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
    speaks_both_languages(&cwsm, &server.url, &work)?;
    server.kill();
    Ok(())
}

/// Issue 13 §1: the report, a ranking and a settlement in Chinese say nothing in English (but
/// codes, units and ids), and in English they are English.
fn speaks_both_languages(cwsm: &Path, server: &str, work: &Path) -> anyhow::Result<()> {
    let ids = std::fs::read_to_string(work.join("walkthrough.ids"))?;
    let (request, project) = ids
        .trim()
        .split_once(' ')
        .context("walkthrough.ids holds the request and the project")?;
    let run = |lang: &str, login: &str, args: &[&str]| -> anyhow::Result<String> {
        let env = |c: &mut Command| {
            c.env("CWSM_SERVER", server)
                .env("CWSM_PASSWORD", cwsm::demo::DEMO_PASSWORD)
                .env_remove("CWSM_TOKEN")
                .env_remove("CWSM_API_KEY")
                .env_remove("CWSM_DATA_DIR")
                .env_remove("CWSM_LANG")
                .env("LANG", "C.UTF-8");
        };
        let mut sign_in = Command::new(cwsm);
        env(sign_in.args(["sign-in", "--login", login]));
        let token = sign_in.output()?;
        anyhow::ensure!(token.status.success(), "sign-in: {token:?}");
        let mut command = Command::new(cwsm);
        env(&mut command);
        command
            .args(args)
            .args(["--lang", lang])
            .env("CWSM_TOKEN", String::from_utf8_lossy(&token.stdout).trim());
        let out = command.output()?;
        anyhow::ensure!(out.status.success(), "{args:?} in {lang}: {out:?}");
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let cases: [(&str, &[&str], &[&str]); 3] = [
        (
            "office@demo.cwsm.cn",
            &["report", "--plan", "xinbei-2020"],
            &["逾期完成", "截至"],
        ),
        (
            "user@demo.cwsm.cn",
            &["requests", "rank", request],
            &["评分说明", "覆盖所需"],
        ),
        (
            "company@demo.cwsm.cn",
            &["projects", "settlements", project],
            &["节水效益分享型", "企业分成", "1,789.87 元"],
        ),
    ];
    for (login, args, said) in cases {
        let zh = run("zh", login, args)?;
        for words in said.iter() {
            assert!(
                zh.contains(words),
                "{args:?} in Chinese lacks {words}:\n{zh}"
            );
        }
        let words = without_codes(&zh);
        let leaked = cwsm_platform::lang::english_words(&words, ALLOWED);
        assert!(
            leaked.is_empty(),
            "{args:?} in Chinese says {leaked:?}:\n{zh}"
        );
        let en = run("en", login, args)?;
        assert!(
            !cwsm_platform::lang::english_words(&en, &[]).is_empty() && en != zh,
            "{args:?} in English:\n{en}"
        );
    }
    Ok(())
}

/// What a Chinese table may hold in Latin letters: standards' abbreviations (IPMVP, DMA:
/// district metered area, as Chinese documents write it) and certification grades (AAA级).
const ALLOWED: &[&str] = &[
    "IPMVP", "SHA", "CV", "RMSE", "NMBE", "DMA", "AA", "AAA", "AAAA", "AAAAA",
];

/// `text` without what is data, not words: ids (UUIDs), hex digests, indicator codes
/// (A8-CONTRACT-PROJECTS) and command-line flags (--page-token).
fn without_codes(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || "│┆，、：（）()".contains(c))
        .filter(|token| {
            let hexlike =
                token.len() >= 8 && token.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
            let code = token.contains('-')
                && token
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-');
            !(hexlike || code || token.starts_with("--"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}
