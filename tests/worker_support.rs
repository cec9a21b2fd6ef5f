//! Checks the worker harness in `support::workers` against every worker generation:
//! the real worker connects to a plain TCP listener, starts the PB handshake, comes back
//! quickly after a dropped connection, and leaves no process behind when killed or
//! terminated. A missing peer venv fails the test with the command that installs it.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};
use support::workers::{require_peer, Generation, RunningWorker, WorkerOptions};

/// What a PB server sends first: its dialects, `(b'pb' b'none')` as plain strings.
const DIALECTS: &[u8] = b"\x02\x80\x02\x82pb\x04\x82none";
/// A client's dialect choice: the bare string `b'pb'`.
const PB_CHOSEN: &[u8] = b"\x02\x82pb";

fn basedir(generation: Generation, test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("worker_support")
        .join(format!("{}-{test}", generation.peer_name()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Accepts one connection within `timeout`, or panics showing the worker's log.
fn accept_within(listener: &TcpListener, timeout: Duration, worker: &RunningWorker) -> TcpStream {
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking stream");
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    panic!(
                        "{} did not connect within {timeout:?}; log:\n{}",
                        worker.generation(),
                        worker.log()
                    );
                }
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Reads until `want` appears in what was received, or panics after `timeout`.
fn read_until(
    stream: &mut TcpStream,
    want: &[u8],
    timeout: Duration,
    worker: &RunningWorker,
) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(want.len()).any(|w| w == want) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{}: no {want:02x?} within {timeout:?}, got {got:02x?}; log:\n{}",
            worker.generation(),
            worker.log()
        );
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => panic!(
                "{}: connection closed after {got:02x?}; log:\n{}",
                worker.generation(),
                worker.log()
            ),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    got
}

fn loopback_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

/// Connect, PB dialect + login start, reconnect after a drop, then kill and restart
/// in the same basedir, then terminate.
fn lifecycle(generation: Generation) {
    let (listener, addr) = loopback_listener();
    let dir = basedir(generation, "lifecycle");
    let name = format!("w-{}", generation.peer_name());
    let opts = WorkerOptions::new(&name, "pass", addr);
    let mut worker = RunningWorker::start(generation, &dir, &opts).expect("start worker");

    let mut conn = accept_within(&listener, Duration::from_secs(20), &worker);
    conn.write_all(DIALECTS).expect("send dialects");
    let got = read_until(&mut conn, name.as_bytes(), Duration::from_secs(10), &worker);
    assert!(
        got.starts_with(PB_CHOSEN),
        "{generation}: expected the pb dialect choice first, got {got:02x?}"
    );

    // Fast reconnect: the tac edit should bring the worker back within about 1 s.
    drop(conn);
    let dropped = Instant::now();
    let conn = accept_within(&listener, Duration::from_secs(5), &worker);
    eprintln!(
        "{generation}: reconnected {:?} after the drop",
        dropped.elapsed()
    );
    drop(conn);

    let pid = worker.pid();
    worker.kill();
    assert!(
        worker.try_wait().is_some(),
        "{generation}: twistd not reaped"
    );
    assert!(
        !worker.group_alive(),
        "{generation}: process group {pid} still has members"
    );

    // Same basedir again (e.g. a worker restarted after a crash), then a clean stop.
    let mut worker = RunningWorker::start(generation, &dir, &opts).expect("restart worker");
    let conn = accept_within(&listener, Duration::from_secs(20), &worker);
    let status = worker.terminate().expect("terminated worker has a status");
    drop(conn);
    assert!(
        !worker.group_alive(),
        "{generation}: process group still has members after terminate"
    );
    eprintln!("{generation}: terminate -> {status}");
}

#[test]
fn worker4_lifecycle() {
    lifecycle(Generation::Worker4);
}

#[test]
fn worker2_lifecycle() {
    lifecycle(Generation::Worker2);
}

#[test]
fn worker09_lifecycle() {
    lifecycle(Generation::Worker09);
}

#[test]
fn slave08_lifecycle() {
    lifecycle(Generation::Slave08);
}

/// `max_retries` reaches the worker: with nothing listening it gives up and exits.
#[test]
fn max_retries_stops_the_worker() {
    let (listener, addr) = loopback_listener();
    drop(listener); // connections to addr are now refused
    for generation in Generation::all() {
        let mut opts = WorkerOptions::new("w", "pass", addr);
        opts.max_retries = Some(2);
        let dir = basedir(generation, "maxretries");
        if !generation.supports_max_retries() {
            let err = RunningWorker::start(generation, &dir, &opts).expect_err("unsupported");
            assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
            continue;
        }
        let mut worker = RunningWorker::start(generation, &dir, &opts).expect("start worker");
        let status = worker.wait_timeout(Duration::from_secs(20));
        assert!(
            status.is_some(),
            "{generation}: still running after 2 refused retries; log:\n{}",
            worker.log()
        );
        assert!(
            !worker.group_alive(),
            "{generation}: process group still has members"
        );
    }
}

#[test]
fn only_loopback_masters() {
    let opts = WorkerOptions::new("w", "pass", "192.0.2.1:9989".parse().expect("addr"));
    let err = RunningWorker::start(
        Generation::Worker4,
        &basedir(Generation::Worker4, "nonlocal"),
        &opts,
    )
    .expect_err("non-loopback master");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
#[should_panic(expected = "scripts/install-peers.sh no-such-peer")]
fn missing_peer_names_the_install_command() {
    require_peer("no-such-peer");
}
