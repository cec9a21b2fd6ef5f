//! Links the `pbmaster` binary with packed relative relocations (DT_RELR) where the
//! toolchain supports them: a position-independent binary otherwise carries ~600 KB
//! of relocation records that the loader reads, and keeps resident, at every start.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let linux_gnu = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    let native = env::var("TARGET").ok() == env::var("HOST").ok();
    if linux_gnu && native && linker_accepts(FLAG) {
        println!("cargo:rustc-link-arg-bin=pbmaster={FLAG}");
    }
}

/// Whether the C compiler links, and the result runs, with `flag` (an older linker
/// rejects it; a C library older than glibc 2.36 cannot load the result).
fn linker_accepts(flag: &str) -> bool {
    let Some(out) = env::var_os("OUT_DIR").map(PathBuf::from) else {
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
