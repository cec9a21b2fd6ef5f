//! Links the `pbmaster` binary so that less of it stays resident, where the toolchain
//! allows:
//! - packed relative relocations (DT_RELR): a position-independent binary otherwise
//!   carries ~600 KB of relocation records that the loader reads, and keeps resident,
//!   at every start;
//! - in a release build, the functions listed in `link/pbmaster.order` (the ones a
//!   master runs at start, while idle and in a build; `scripts/link-order.py` writes
//!   it) placed together: the kernel maps code 64 KB around each page touched, so
//!   functions spread over the whole binary make most of it resident.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const RELR: &str = "-Wl,-z,pack-relative-relocs";
const ORDER: &str = "link/pbmaster.order";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={ORDER}");
    let linux_gnu = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    let native = env::var("TARGET").ok() == env::var("HOST").ok();
    if !(linux_gnu && native) {
        return;
    }
    if c_linker_accepts(RELR) {
        println!("cargo:rustc-link-arg-bin=pbmaster={RELR}");
    }
    let order = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join(ORDER);
    if env::var("PROFILE").as_deref() == Ok("release") && order.is_file() {
        // Names the file no longer matches (after a compiler or dependency update) only
        // lose their place: no warning for each.
        let args = [
            format!("-Wl,--symbol-ordering-file={}", order.display()),
            "-Wl,--no-warn-symbol-ordering".to_string(),
        ];
        if rustc_linker_accepts(&args) {
            for arg in args {
                println!("cargo:rustc-link-arg-bin=pbmaster={arg}");
            }
        }
    }
}

/// Whether the C compiler links, and the result runs, with `flag` (an older linker
/// rejects it; a C library older than glibc 2.36 cannot load the result).
fn c_linker_accepts(flag: &str) -> bool {
    let Some(out) = out_dir() else {
        return false;
    };
    let source = out.join("relr-probe.c");
    let binary = out.join("relr-probe");
    let program = "static int x; int *p = &x; int main(void) { return *p; }\n";
    if std::fs::write(&source, program).is_err() {
        return false;
    }
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let linked = Command::new(cc)
        .arg(flag)
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .output()
        .is_ok_and(|o| o.status.success());
    linked && Command::new(&binary).status().is_ok_and(|s| s.success())
}

/// Whether the linker rustc uses for this build takes `args` (LLD does; the GNU linker
/// has no symbol ordering file), tried on a one-line program with the build's flags.
fn rustc_linker_accepts(args: &[String]) -> bool {
    let Some(out) = out_dir() else {
        return false;
    };
    let source = out.join("order-probe.rs");
    if std::fs::write(&source, "fn main() {}\n").is_err() {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let mut probe = Command::new(rustc);
    probe
        .args(flags.split('\x1f').filter(|f| !f.is_empty()))
        .arg(&source)
        .arg("-o")
        .arg(out.join("order-probe"));
    for arg in args {
        probe.arg("-C").arg(format!("link-arg={arg}"));
    }
    probe.output().is_ok_and(|o| o.status.success())
}

fn out_dir() -> Option<PathBuf> {
    env::var_os("OUT_DIR").map(PathBuf::from)
}
