//! PB over TLS with a real buildbot-worker 4.3.0. Each test makes a throwaway CA and
//! a server certificate for 127.0.0.1 with the `openssl` command, configures the
//! master with `[master] pb_tls`, and points the worker at it with a Twisted `tls:`
//! connection string that trusts only that CA. A plain-TCP worker on the TLS port
//! never logs in and disturbs nothing; a handshake that never completes is closed at
//! the login deadline and gives its admission slot back.

mod support;

use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::master::{tail, test_dir, MasterProcess};
use support::wait;
use support::workers::{require_peer, Generation, RunningWorker, WorkerOptions, TLS_PEER};

const LONG: Duration = Duration::from_secs(60);

const BODY: &str = r#"
[[worker]]
name = "secure"
password = "pw-secure"

[[worker]]
name = "plain"
password = "pw-plain"

[[builder]]
name = "hello"
workers = ["secure"]

[[builder.step]]
name = "greet"
command = "echo hello over tls"
"#;

/// `[master]` lines for a TLS port with the files `make_pki` wrote into `tls/`
/// (relative to the config file).
fn tls_master(login_timeout: u32, max_connections: u32) -> String {
    format!(
        "login_timeout = {login_timeout}\nmax_connections = {max_connections}\n\
         pb_tls = {{ cert_file = \"tls/server.pem\", key_file = \"tls/server.key\" }}\n"
    )
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes a CA and a certificate it signs for 127.0.0.1 into `dir`: `ca/ca.pem` (the
/// folder is what a worker's `trustRoots` names), `server.pem` and `server.key`.
fn make_pki(dir: &Path) {
    std::fs::create_dir_all(dir.join("ca")).expect("pki dir");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca/ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=pbmaster test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n\
         authorityKeyIdentifier=keyid\n",
    )
    .expect("extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca/ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

/// A master in `dir/master` whose PB port speaks only TLS.
fn tls_master_process(dir: &Path, login_timeout: u32, max_connections: u32) -> MasterProcess {
    make_pki(&dir.join("master/tls"));
    MasterProcess::start(
        &dir.join("master"),
        &tls_master(login_timeout, max_connections),
        BODY,
    )
}

/// The string a worker connects with: TLS to the master, trusting only the test CA.
fn connection_string(master: &MasterProcess) -> String {
    format!(
        "tls:host=127.0.0.1:port={}:trustRoots={}",
        master.pb.port(),
        master.dir.join("tls/ca").display()
    )
}

/// A buildbot-worker 4.3.0 (with Twisted's TLS extra) connecting over TLS.
fn tls_worker(dir: &Path, master: &MasterProcess) -> RunningWorker {
    let mut opts = WorkerOptions::new("secure", "pw-secure", master.pb);
    opts.connection_string = Some(connection_string(master));
    opts.venv = Some(require_peer(TLS_PEER));
    RunningWorker::start(Generation::Worker4, &dir.join("secure"), &opts).expect("worker starts")
}

fn hello_succeeds(master: &MasterProcess) {
    let r = master.wait_request(master.force("hello"), LONG);
    assert_eq!(r["result"], "success", "{r}");
    let build = r["builds"]
        .as_array()
        .and_then(|b| b.last())
        .and_then(|b| b["id"].as_i64())
        .expect("a build");
    assert_eq!(master.output(build, 1, "stdout").trim(), "hello over tls");
}

fn attached(master: &MasterProcess, name: &str) -> bool {
    master
        .get("/api/workers")
        .as_array()
        .into_iter()
        .flatten()
        .any(|w: &Value| w["name"] == name && w["state"] == "attached")
}

/// Reads until the master closes the connection (EOF or reset; a TLS alert may come
/// first); returns how long after `start` that was. Panics if it stays open until
/// `within` after `start`.
fn closed_by_master(mut s: TcpStream, start: Instant, within: Duration) -> Duration {
    let left = within
        .saturating_sub(start.elapsed())
        .max(Duration::from_millis(1));
    s.set_read_timeout(Some(left)).expect("read timeout");
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) => panic!("still open after {:?}: {e}", start.elapsed()),
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).expect("connect")
}

#[test]
fn a_worker_builds_over_tls_and_a_plain_worker_cannot_log_in() {
    let dir = test_dir("pb-tls-worker");
    let master = tls_master_process(&dir, 3, 100);
    let secure = tls_worker(&dir, &master);
    master.wait_attached("secure", LONG);
    hello_succeeds(&master);
    assert!(
        master.log().contains("pb_tls=true"),
        "{}",
        tail(&master.log(), 40)
    );

    // The same generation without TLS: it waits for PB's opening bytes, the master
    // for a ClientHello, until the login deadline closes the connection. It retries,
    // never logs in, and the TLS worker goes on building.
    let plain_opts = WorkerOptions::new("plain", "pw-plain", master.pb);
    let mut plain = RunningWorker::start(Generation::Worker4, &dir.join("plain"), &plain_opts)
        .expect("plain worker starts");
    let deadline = Instant::now() + LONG;
    while master
        .log()
        .matches("TLS handshake not done by the login deadline")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the plain worker's connections were not closed:\n{}",
            tail(&master.log(), 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(plain.is_running(), "{}", plain.log());
    assert!(!plain.log().contains("worker is ready"), "{}", plain.log());
    assert!(!attached(&master, "plain"));
    assert!(attached(&master, "secure"), "{}", tail(&master.log(), 40));
    hello_succeeds(&master);
    plain.terminate();
    drop(secure);
    assert!(!master.log().contains("panicked"), "{}", master.log());
}

#[test]
fn stalled_and_garbage_handshakes_are_bounded_and_free_their_slots() {
    let dir = test_dir("pb-tls-stall");
    // Two slots: a slot that was not given back would keep the second round (or the
    // worker) from ever being accepted.
    let master = tls_master_process(&dir, 2, 2);

    // Not TLS at all: refused at once, well before the deadline.
    let start = Instant::now();
    let mut garbage = connect(master.pb);
    garbage.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
    let took = closed_by_master(garbage, start, Duration::from_secs(10));
    assert!(took < Duration::from_millis(1500), "took {took:?}");

    for round in 0..2 {
        let start = Instant::now();
        let silent = connect(master.pb);
        // A TLS record header announcing a 256-byte ClientHello, and only part of it.
        let mut partial = connect(master.pb);
        partial
            .write_all(&[
                0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0xfc, 0x03, 0x03,
            ])
            .expect("write");
        for s in [silent, partial] {
            let took = closed_by_master(s, start, Duration::from_secs(15));
            // Accepted at once, closed at the 2 s login deadline.
            assert!(
                took > Duration::from_millis(1500) && took < Duration::from_secs(10),
                "round {round}: closed after {took:?}\n{}",
                tail(&master.log(), 20)
            );
        }
    }
    // Each is logged just after its socket is closed.
    wait::until("four deadline lines in the log", LONG, || {
        master
            .log()
            .matches("TLS handshake not done by the login deadline")
            .count()
            >= 4
    });
    let log = master.log();
    assert_eq!(
        log.matches("TLS handshake not done by the login deadline")
            .count(),
        4,
        "{}",
        tail(&log, 40)
    );
    assert_eq!(log.matches("TLS handshake failed").count(), 1, "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("TLS handshake failed") && l.contains("peer=127.0.0.1:")),
        "{log}"
    );

    let _secure = tls_worker(&dir, &master);
    master.wait_attached("secure", LONG);
    hello_succeeds(&master);
}

#[test]
fn bad_tls_files_are_reported_by_check_and_stop_the_start() {
    let dir = test_dir("pb-tls-files");
    make_pki(&dir.join("tls"));
    make_pki(&dir.join("other"));
    let config = |key: &str| -> PathBuf {
        let path = dir.join("master.toml");
        std::fs::write(
            &path,
            format!(
                "[master]\npb_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
                 data_dir = \"d\"\n\
                 pb_tls = {{ cert_file = \"tls/server.pem\", key_file = \"{key}\" }}\n"
            ),
        )
        .expect("write config");
        path
    };
    let pbmaster = |args: &[&str], path: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_pbmaster"))
            .args(args)
            .arg(path)
            .output()
            .expect("pbmaster runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // Files may be elsewhere where the master runs: `check` warns, with the line.
    let path = config("tls/missing.key");
    let (code, err) = pbmaster(&["check", "--config"], &path);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("warning: pb_tls (line 5): ") && err.contains("tls/missing.key"),
        "{err}"
    );
    let (code, err) = pbmaster(&["start", "--config"], &path);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("pb_tls (line 5): ") && err.contains("missing.key"),
        "{err}"
    );

    // A key of another certificate.
    let path = config("other/server.key");
    let (code, err) = pbmaster(&["start", "--config"], &path);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("pb_tls (line 5): ") && err.contains("tls/server.pem with"),
        "{err}"
    );

    // The setting itself: `check` fails with its line.
    std::fs::write(
        &path,
        "[master]\ndata_dir = \"d\"\npb_tls = { cert_file = \"tls/server.pem\" }\n",
    )
    .expect("write config");
    let (code, err) = pbmaster(&["check", "--config"], &path);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("line 3") && err.contains("key_file"), "{err}");
}
