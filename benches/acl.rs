//! ACL fast path: authorize() latency with 100k rules, and the time to
//! reload (parse + validate + index) a 100k-rule ACL file.
//! Run: `cargo bench --bench acl`. Prints figures; asserts nothing.

// The same figures `portcullis-bench --only acl` prints, from the same
// file: the bench crate depends on this one, so it cannot be a dependency.
#[path = "../bench/src/acl.rs"]
mod acl_figures;

fn main() {
    let dir = std::env::temp_dir().join(format!("portcullis-acl-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = acl_figures::run(&dir, 100_000, 1_000_000).unwrap();
    println!(
        "acl bench: {} rules from a {} KiB file",
        f.rules, f.file_kib
    );
    println!(
        "reload (parse + validate + index): p50 {:.1} ms  max {:.1} ms",
        f.reload_ms_p50, f.reload_ms_max
    );
    println!(
        "authorize(): p50 {} ns  p99 {} ns  p99.9 {} ns",
        f.authorize_ns.value_at_quantile(0.5),
        f.authorize_ns.value_at_quantile(0.99),
        f.authorize_ns.value_at_quantile(0.999)
    );
    let _ = std::fs::remove_dir_all(dir);
}
