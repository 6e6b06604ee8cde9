//! Build step: the commit and build date for `swarmlog --version`.
//!
//! The commit comes from `SWARMLOG_GIT_COMMIT` when set (a build without
//! `.git`, such as the Dockerfile's, may pass it in), else from `git
//! rev-parse`, else "unknown": a clean source tarball still builds. The date
//! comes from `SOURCE_DATE_EPOCH` (reproducible builds), else the commit's
//! date, else "unknown".

use std::process::Command;

/// A git command in this package's own repository (a source tree unpacked
/// inside some other repository must not take that one's commit).
fn git(args: &[&str]) -> Option<String> {
    let here = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let top = run_git(&["rev-parse", "--show-toplevel"])?;
    let same = std::fs::canonicalize(&top).ok()? == std::fs::canonicalize(&here).ok()?;
    if !same {
        return None;
    }
    run_git(args)
}

fn run_git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// `YYYY-MM-DD` of a Unix time (UTC), from the days since 1970-01-01
/// (the proleptic Gregorian calendar).
fn date_of(epoch: i64) -> String {
    let z = epoch.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn main() {
    println!("cargo:rerun-if-env-changed=SWARMLOG_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=build.rs");
    // A new commit moves HEAD (or the branch it points to): build again.
    // Only files that exist (Cargo reruns every time for a missing one).
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for path in watched {
        if let Some(p) = git(&["rev-parse", "--git-path", &path]) {
            if std::path::Path::new(&p).exists() {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    }

    let commit = std::env::var("SWARMLOG_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    let date = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .map(date_of)
        .or_else(|| git(&["log", "-1", "--format=%cd", "--date=format:%Y-%m-%d"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SWARMLOG_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=SWARMLOG_BUILD_DATE={date}");
}
