//! What the CLI says about itself: `--version` with the commit and build
//! date, shell completions that bash and fish complete with (zsh parses
//! them), and man pages that groff renders without a warning, listing every
//! subcommand. All of it comes from the clap definitions.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn swarmlog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swarmlog"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run swarmlog: {e}"))
}

fn stdout_of(args: &[&str]) -> String {
    let out = swarmlog(args);
    assert!(
        out.status.success(),
        "swarmlog {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn subcommands() -> Vec<String> {
    let cmd = <swarmlog::cli::Cli as clap::CommandFactory>::command();
    let names: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_string()).collect();
    assert!(names.len() >= 10, "{names:?}");
    names
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).current_dir(repo()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs `program` with `args` (a missing program fails the test).
fn run(program: &str, args: &[&str], cwd: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): scripts/prereqs installs it"))
}

fn out_dir(name: &str) -> PathBuf {
    let dir = repo().join("target").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

#[test]
fn version_names_the_commit_and_the_build_date() {
    let text = stdout_of(&["--version"]);
    let line = text.trim();
    let rest = line
        .strip_prefix(&format!("swarmlog {} (commit ", env!("CARGO_PKG_VERSION")))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version: {line:?}"));
    let (commit, date) = rest
        .split_once(", built ")
        .unwrap_or_else(|| panic!("unexpected --version: {line:?}"));
    assert!(
        commit == "unknown" || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "commit {commit:?}"
    );
    let d: Vec<&str> = date.split('-').collect();
    assert!(
        date == "unknown"
            || (d.len() == 3
                && d[0].len() == 4
                && d[1].len() == 2
                && d[2].len() == 2
                && d.iter().all(|p| p.chars().all(|c| c.is_ascii_digit()))),
        "date {date:?}"
    );
    // Built from this checkout (nothing overriding it): the commit is HEAD's.
    if std::env::var_os("SWARMLOG_GIT_COMMIT").is_none() {
        if let Some(head) = git(&["rev-parse", "--short=12", "HEAD"]) {
            assert_eq!(commit, head, "--version names another commit than HEAD");
        }
    }
    if std::env::var_os("SOURCE_DATE_EPOCH").is_none() {
        if let Some(day) = git(&["log", "-1", "--format=%cd", "--date=format:%Y-%m-%d"]) {
            assert_eq!(date, day, "--version's date is not the commit's");
        }
    }
    assert_eq!(stdout_of(&["-V"]), text);
}

#[test]
fn bash_completes_subcommands_and_flags() {
    let dir = out_dir("completions");
    let file = dir.join("swarmlog.bash");
    std::fs::write(&file, stdout_of(&["completions", "bash"])).unwrap_or_else(|e| panic!("{e}"));
    let complete = |words: &[&str]| -> Vec<String> {
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let cur = words.last().copied().unwrap_or_default();
        let prev = words.get(words.len().saturating_sub(2)).copied().unwrap_or_default();
        let script = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; _swarmlog swarmlog '{cur}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display(),
            quoted.join(" "),
            words.len() - 1
        );
        let out = run("bash", &["-c", &script], &dir);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    };
    let all = complete(&["swarmlog", ""]);
    for sub in subcommands() {
        assert!(all.contains(&sub), "bash does not offer {sub}: {all:?}");
    }
    assert_eq!(complete(&["swarmlog", "ru"]), ["run"]);
    assert_eq!(complete(&["swarmlog", "run", "--resy"]), ["--resync"]);
    let shells = complete(&["swarmlog", "completions", ""]);
    for s in ["bash", "zsh", "fish"] {
        assert!(shells.contains(&s.to_string()), "{shells:?}");
    }
}

#[test]
fn fish_completes_subcommands() {
    let dir = out_dir("completions-fish");
    let file = dir.join("swarmlog.fish");
    std::fs::write(&file, stdout_of(&["completions", "fish"])).unwrap_or_else(|e| panic!("{e}"));
    let script = format!(
        "source {}; complete -C 'swarmlog ' ; complete -C 'swarmlog run --resy'",
        file.display()
    );
    let out = run("fish", &["--no-config", "-c", &script], &dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let offered: Vec<&str> = text.lines().filter_map(|l| l.split('\t').next()).collect();
    for sub in subcommands() {
        assert!(
            offered.contains(&sub.as_str()),
            "fish does not offer {sub}: {offered:?}"
        );
    }
    assert!(offered.contains(&"--resync"), "{offered:?}");
}

#[test]
fn zsh_parses_its_completion() {
    let dir = out_dir("completions-zsh");
    let file = dir.join("_swarmlog");
    let text = stdout_of(&["completions", "zsh"]);
    assert!(text.starts_with("#compdef swarmlog"), "{}", &text[..text.len().min(80)]);
    for sub in subcommands() {
        assert!(text.contains(&format!("'{sub}:")), "the zsh completion lacks {sub}");
    }
    std::fs::write(&file, &text).unwrap_or_else(|e| panic!("{e}"));
    let out = run("zsh", &["-n", &file.display().to_string()], &dir);
    assert!(out.status.success(), "zsh -n: {}", String::from_utf8_lossy(&out.stderr));
}

/// Renders a man page with groff as plain text; warnings fail.
fn render(page: &Path) -> String {
    let out = run(
        "groff",
        &[
            "-man",
            "-Tutf8",
            "-ww",
            "-P-c",
            "-P-b",
            "-P-u",
            &page.display().to_string(),
        ],
        &repo(),
    );
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && warnings.trim().is_empty(),
        "groff on {}: {warnings}",
        page.display()
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn man_pages_render_and_list_every_subcommand() {
    let dir = out_dir("man");
    let page = dir.join("swarmlog.1");
    std::fs::write(&page, stdout_of(&["manpage"])).unwrap_or_else(|e| panic!("{e}"));
    let text = render(&page);
    for heading in ["NAME", "SYNOPSIS", "OPTIONS", "SUBCOMMANDS", "VERSION"] {
        assert!(text.contains(heading), "swarmlog.1 has no {heading}:\n{text}");
    }
    for sub in subcommands() {
        assert!(
            text.contains(&format!("swarmlog-{sub}(1)")),
            "swarmlog.1 does not list {sub}"
        );
    }
    // One page per subcommand, each rendering cleanly with its own flags.
    let out = swarmlog(&["manpage", "--dir", &dir.display().to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(&page).unwrap_or_default(),
        stdout_of(&["manpage"]),
        "--dir writes another swarmlog.1 than stdout"
    );
    for sub in subcommands() {
        let text = render(&dir.join(format!("swarmlog-{sub}.1")));
        assert!(text.contains(&format!("swarmlog-{sub}")), "swarmlog-{sub}.1:\n{text}");
    }
    assert!(render(&dir.join("swarmlog-run.1")).contains("--resync"));
    let help = stdout_of(&["--help"]);
    for sub in ["completions", "manpage"] {
        assert!(help.contains(sub), "--help does not list {sub}");
    }
}
