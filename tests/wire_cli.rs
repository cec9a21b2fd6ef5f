//! The wire inspector as a user runs it: `pbmaster wire decode | pbmaster wire encode`
//! reproduces real Twisted streams, and malformed input fails with one line naming
//! the offset.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn pbmaster(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pbmaster"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pbmaster runs");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("pbmaster finishes");
    writer.join().expect("stdin writer");
    out
}

fn sessions() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sessions");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)
        .expect("fixtures/sessions exists")
        .flatten()
    {
        for direction in ["m2w.bin", "w2m.bin"] {
            let p = entry.path().join(direction);
            if p.exists() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn decode_then_encode_reproduces_recorded_sessions() {
    let streams = sessions();
    assert!(streams.len() >= 2, "recorded sessions are present");
    for path in streams {
        let bytes = std::fs::read(&path).expect("stream");
        let decoded = pbmaster(&["wire", "decode", path.to_str().expect("utf-8 path")], b"");
        assert!(
            decoded.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&decoded.stderr)
        );
        let text = String::from_utf8(decoded.stdout).expect("notation is UTF-8");
        assert!(
            text.lines().count() > 10,
            "{}: one expression per line",
            path.display()
        );
        let encoded = pbmaster(&["wire", "encode"], text.as_bytes());
        assert!(
            encoded.status.success(),
            "{}",
            String::from_utf8_lossy(&encoded.stderr)
        );
        assert!(
            encoded.stdout == bytes,
            "{}: bytes differ after decode | encode",
            path.display()
        );
    }
}

#[test]
fn decode_follows_the_negotiation() {
    let out = pbmaster(&["wire", "decode"], b"\x02\x82pb\x02\x80\x13\x87\x06\x81");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "b'pb'\n(version 6)\n");
    // Fixed to `none`, the same VOCAB token is an error.
    let out = pbmaster(
        &["wire", "decode", "--dialect", "none"],
        b"\x02\x82pb\x02\x80\x13\x87\x06\x81",
    );
    assert!(!out.status.success());
}

fn rejects(args: &[&str], input: &[u8], offset: &str, reason: &str) {
    let out = pbmaster(args, input);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit status for {input:02x?}: {err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(offset) && err.contains(reason), "{err}");
}

#[test]
fn decode_rejects_malformed_streams_with_offset_and_reason() {
    rejects(
        &["wire", "decode"],
        b"\x02\x82pb\xff",
        "offset 4",
        "unknown type byte 0xff",
    );
    rejects(&["wire", "decode"], &[0x01; 70], "offset 0", "prefix");
    rejects(
        &["wire", "decode"],
        b"\x02\x80\x01\x81",
        "offset 0",
        "input ends inside an element",
    );
    rejects(
        &["wire", "decode"],
        b"\x01\x00\x28\x82",
        "offset 0",
        "string longer than the limit",
    );
    rejects(
        &["wire", "decode"],
        b"\x02\x82xx",
        "offset 0",
        "chosen dialect was not offered",
    );
    rejects(
        &["wire", "decode", "--dialect", "pb"],
        b"\x40\x87",
        "offset 0",
        "unknown vocabulary index",
    );
}

#[test]
fn encode_rejects_bad_notation_with_position() {
    let out = pbmaster(&["wire", "encode"], b"(message 1\n  frobnicate)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("line 2, column 3"), "{err}");
}
