//! Every subcommand, flag and positional of the `portcullis` command line
//! says what it is for: walks the command tree through the binary's own
//! help (`Commands:` sections) and fails on any entry without a
//! description. Also: exit codes are documented, usage errors exit 2.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn help(path: &[String]) -> String {
    let out = Command::new(BIN)
        .args(path)
        .arg("-h")
        .output()
        .expect("run portcullis");
    assert!(
        out.status.success(),
        "portcullis {path:?} -h: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 help")
}

/// One entry of a help section: its name (flag spec, positional or
/// subcommand) and whether it has a description.
struct Entry {
    section: String,
    name: String,
    described: bool,
}

fn entries(text: &str) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut section = String::new();
    for line in text.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line.trim_end_matches(':').to_string();
            continue;
        }
        // Flags stand under "Options" or a heading of their own
        // ("Connection options").
        if !(matches!(section.as_str(), "Commands" | "Arguments") || section.ends_with("ptions")) {
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        // Entries stand at 2 (or 6: a long flag without a short one);
        // a description clap puts on the next line at 10.
        let body = line.trim_start();
        let is_entry = indent <= 6 && (section == "Commands" || body.starts_with(['-', '<', '[']));
        if is_entry {
            let body = line.trim_start();
            // The spec ends at the first run of two spaces.
            let (name, desc) = match body.find("  ") {
                Some(i) => (&body[..i], body[i..].trim()),
                None => (body, ""),
            };
            out.push(Entry {
                section: section.clone(),
                name: name.trim().to_string(),
                described: is_description(desc),
            });
        } else if let Some(last) = out.last_mut() {
            // A description on the next line(s).
            last.described |= is_description(body);
        }
    }
    out
}

/// Text that says something: not empty, and not only clap's own
/// annotations (`[default: certs]`, `[possible values: ...]`).
fn is_description(text: &str) -> bool {
    let t = text.trim();
    !t.is_empty() && !t.starts_with('[')
}

#[test]
fn every_command_flag_and_positional_has_a_description() {
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    let mut missing = Vec::new();
    let mut visited = 0;
    while let Some(path) = todo.pop() {
        visited += 1;
        let text = help(&path);
        for e in entries(&text) {
            if !e.described {
                missing.push(format!(
                    "portcullis {} : {} `{}`",
                    path.join(" "),
                    e.section,
                    e.name
                ));
            }
            if e.section == "Commands" {
                let name = e.name.split([' ', ',']).next().unwrap_or("").to_string();
                if name != "help" && !name.is_empty() {
                    let mut p = path.clone();
                    p.push(name);
                    todo.push(p);
                }
            }
        }
    }
    assert!(visited > 20, "walked only {visited} commands");
    assert!(
        missing.is_empty(),
        "entries without a description:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_top_level_help_documents_the_exit_codes() {
    let text = help(&[]);
    for needle in [
        "Exit codes:",
        "0  success",
        "1  error",
        "2  usage error",
        "3  refused",
    ] {
        assert!(text.contains(needle), "no `{needle}` in:\n{text}");
    }
    for cmd in ["topic", "cluster", "quota", "completions", "group"] {
        assert!(
            entries(&text).iter().any(|e| e.name == cmd),
            "no `{cmd}` command in:\n{text}"
        );
    }
}

#[test]
fn a_usage_error_exits_2_and_says_what_is_wrong() {
    let out = Command::new(BIN)
        .args(["topic", "create", "t1", "--partitions", "zero"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--partitions") && err.contains("zero"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["topic", "frobnicate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn completions_print_a_bash_script() {
    let out = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(
        script.contains("_portcullis") && script.contains("complete"),
        "{script}"
    );
    for shell in ["zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(
            out.status.success() && !out.stdout.is_empty(),
            "{shell}: {out:?}"
        );
    }
}
