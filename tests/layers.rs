//! The crate's imports run one way (ARCHITECTURE.md): no file-level import
//! circle may span more than three files. `scripts/import_graph.py` finds
//! the circles (strongly connected components of the file import graph).

use std::process::Command;

#[test]
fn no_import_circle_spans_more_than_three_files() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .arg(format!("{root}/scripts/import_graph.py"))
        .arg(format!("{root}/src"))
        .output()
        .expect("python3 runs scripts/import_graph.py");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "an import circle spans more than three files:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The script must have looked at the crate, not at an empty directory.
    let files: usize = report
        .lines()
        .last()
        .and_then(|l| l.split('(').nth(1))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(files > 50, "import graph covered {files} files:\n{report}");
}

#[test]
fn the_checker_sees_a_circle_when_there_is_one() {
    // Four files that import each other in a ring.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::write(
        src.join("lib.rs"),
        "pub mod a;\npub mod b;\npub mod c;\npub mod d;\n",
    )
    .unwrap();
    for (file, next) in [("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")] {
        std::fs::write(
            src.join(format!("{file}.rs")),
            format!("use crate::{next}::Thing;\npub struct Thing;\n"),
        )
        .unwrap();
    }
    let out = Command::new("python3")
        .arg(format!(
            "{}/scripts/import_graph.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(src)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a 4-file ring passed:\n{report}");
    assert!(report.contains("4 files: a, b, c, d"), "{report}");
}
