//! Builds targets of another workspace package from a test. Cargo sets
//! `CARGO_BIN_EXE_*` only for the binaries of the test's own package, so these are
//! built with `cargo build` (a no-op when up to date) into the target directory and
//! profile this test was built with: `cargo test` and `cargo test --workspace` alike
//! then run the current source.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `cargo build --quiet ARGS` for this test's target directory and profile;
/// returns the profile directory (where binaries land; examples in `examples/`).
pub fn build(args: &[&str]) -> PathBuf {
    // This test runs as TARGET_DIR[/TRIPLE]/PROFILE_DIR/deps/NAME-HASH.
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test's profile directory");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("no profile in {}", exe.display()),
    };
    let above = profile_dir.parent().expect("the target directory");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "--quiet"])
        .args(args)
        .args(["--profile", profile])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    // Cargo tags the root of a target directory; a cross build adds a TRIPLE level.
    if above.join("CACHEDIR.TAG").exists() {
        cargo.arg("--target-dir").arg(above);
    } else {
        let root = above.parent().expect("the target directory");
        let triple = above.file_name().expect("a target triple");
        cargo
            .arg("--target-dir")
            .arg(root)
            .arg("--target")
            .arg(triple);
    }
    let out = cargo.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo build {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    profile_dir.to_path_buf()
}
