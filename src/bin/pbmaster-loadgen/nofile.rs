//! Raises the open-file soft limit to the hard limit, so 10,000 connections fit.
//!
//! There is no safe std API for setrlimit and this crate forbids `unsafe`, so the
//! process re-executes itself once through `sh -c 'ulimit -n HARD; exec ...'`.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Set in the re-executed process so it does not try again.
const MARK: &str = "PBMASTER_LOADGEN_NOFILE";

/// (soft, hard) from /proc/self/limits; `None` for "unlimited" or if unreadable.
fn limits() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut nums = line["Max open files".len()..].split_whitespace();
    let soft = nums.next()?.parse().ok()?;
    let hard = nums.next()?.parse().ok()?;
    Some((soft, hard))
}

/// Re-executes with the raised limit when the soft limit is below `wanted` and the hard
/// one is higher. Returns (only) when nothing needs doing or re-execution failed.
pub fn raise(wanted: u64) {
    if std::env::var_os(MARK).is_some() {
        return;
    }
    let Some((soft, hard)) = limits() else { return };
    if soft >= wanted || soft >= hard {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("ulimit -n {hard} && exec \"$0\" \"$@\""))
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(MARK, "1")
        .exec();
    eprintln!("pbmaster-loadgen: could not raise the open-file limit ({err}); soft limit {soft}");
}
