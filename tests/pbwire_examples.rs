//! pbwire's runnable examples against real Twisted PB (the `twisted-py3` peer), over
//! loopback TCP: `protocol/examples/client.rs` logs in to a Twisted `PBServerFactory`
//! and calls its avatar, and a Twisted `PBClientFactory` logs in to
//! `protocol/examples/server.rs` and calls it. The Twisted end is
//! `tests/support/twisted_pb.py` (its `server` and `example-client` modes). Every wait
//! is bounded, and every process is killed when its handle is dropped.

mod support;

use bytes::Bytes;
use pbwire::jelly::{self, Value};
use pbwire::{notation, Integer};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};
use support::workers::{python_env, require_peer};

/// The longest any single step may take: a process start-up or a few loopback round
/// trips, well under a second each.
const WAIT: Duration = Duration::from_secs(15);

// ----- the example binaries -----

/// The directory holding pbwire's example binaries, built once per test process
/// (`cargo test --test pbwire_examples` alone does not build another package's
/// examples).
fn examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(build_examples)
}

fn build_examples() -> PathBuf {
    support::cargo_build::build(&["-p", "pbwire", "--example", "client", "--example", "server"])
        .join("examples")
}

fn example(name: &str) -> Command {
    let mut cmd = Command::new(examples_dir().join(name));
    cmd.env("RUST_BACKTRACE", "1");
    cmd
}

fn twisted(args: &[&str]) -> Command {
    let venv = require_peer("twisted-py3");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/twisted_pb.py");
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.arg(script).args(args);
    python_env(&mut cmd, &venv);
    cmd
}

// ----- a process whose output lines are read with timeouts -----

/// A running process: its stdout as lines, its stderr kept for failure messages.
/// Dropping it kills and reaps the process.
struct Process {
    name: String,
    child: Child,
    /// Held open: Twisted's server mode exits when it closes.
    _stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Reads stderr until the process closes it; joined once it has exited, so that
    /// everything it wrote is in `stderr`.
    stderr_reader: Option<thread::JoinHandle<()>>,
}

impl Process {
    fn start(name: &str, mut cmd: Command) -> Process {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&stderr);
        let stderr_reader = thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut chunk) {
                let text = String::from_utf8_lossy(&chunk[..n]);
                sink.lock().expect("stderr buffer").push_str(&text);
            }
        });
        Process {
            name: name.to_owned(),
            _stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// What the process wrote to stderr so far.
    fn log(&self) -> String {
        self.stderr.lock().expect("stderr buffer").clone()
    }

    /// The next line the process prints.
    fn line(&self) -> String {
        match self.lines.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(e) => panic!("no line from {} ({e}); stderr:\n{}", self.name, self.log()),
        }
    }

    /// Lines up to and including the first one `last` accepts.
    fn lines_until(&self, last: impl Fn(&str) -> bool) -> Vec<String> {
        let mut lines = vec![];
        loop {
            let line = self.line();
            let done = last(&line);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// The rest of the output and the exit status, once the process has exited.
    fn finish(&mut self) -> (Vec<String>, ExitStatus) {
        let deadline = Instant::now() + WAIT;
        let mut lines = vec![];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{} did not exit; stderr:\n{}", self.name, self.log())
                }
            }
        }
        // Its stdout is closed: it is exiting.
        let status = self.child.wait().expect("wait for the process");
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        (lines, status)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- values -----

fn text(s: &str) -> Value {
    Value::text(s)
}

fn int(i: i64) -> Value {
    Value::int(i)
}

/// A value the examples printed in wire notation, read back.
fn parse_value(shown: &str) -> Value {
    let elements = notation::parse(shown).unwrap_or_else(|e| panic!("{shown:?}: {e}"));
    let [element] = elements.as_slice() else {
        panic!("not one expression: {shown:?}")
    };
    jelly::decode(element).unwrap_or_else(|e| panic!("{shown:?}: {e}"))
}

/// What the client example sends to `echo` when it is given no method.
fn client_sample_arguments() -> Vec<Value> {
    let two_to_the_64: Integer = "18446744073709551616".parse().expect("an integer");
    vec![
        int(42),
        int(-7),
        Value::Int(two_to_the_64),
        Value::Float(1.5),
        Value::Bytes(Bytes::from_static(b"raw\x00bytes")),
        text("h\u{e9}llo \u{2603}"),
        Value::Bool(true),
        Value::None,
        Value::List(vec![int(1), text("two")]),
        Value::Tuple(vec![int(3), Value::Float(4.5)]),
        Value::Dict(vec![(text("key"), Value::List(vec![int(1), int(2)]))]),
        Value::Set(vec![int(1), int(2), int(3)]),
    ]
}

// ----- the tests -----

/// Runs the client example to its end; its output lines and exit status.
fn run_client(port: u16, password: &str, method: &[&str]) -> (Vec<String>, ExitStatus, String) {
    let mut cmd = example("client");
    cmd.arg(format!("127.0.0.1:{port}"))
        .args(["alice", password])
        .args(method);
    let mut client = Process::start("examples/client", cmd);
    let (lines, status) = client.finish();
    (lines, status, client.log())
}

#[test]
fn client_example_calls_a_twisted_server() {
    let server = Process::start("twisted_pb.py server", twisted(&["server"]));
    let line = server.line();
    let port: u16 = line
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("expected the port, got {line:?}; log:\n{}", server.log()));

    // No method: `echo` with arguments of several jelly types and a keyword, each of
    // which comes back from Python as sent.
    let (lines, status, log) = run_client(port, "secret", &[]);
    assert!(status.success(), "{status}: {lines:#?}\n{log}");
    let [logged_in, answer] = lines.as_slice() else {
        panic!("{lines:#?}\n{log}")
    };
    assert_eq!(logged_in, "logged in");
    let echoed = parse_value(answer.strip_prefix("answer: ").expect("an answer"));
    let expected = Value::Tuple(vec![
        Value::Tuple(client_sample_arguments()),
        Value::Dict(vec![(text("unit"), text("ms"))]),
    ]);
    assert_eq!(echoed, expected, "{answer}");

    // Command-line arguments: integers and text.
    let (lines, status, log) = run_client(port, "secret", &["echo", "7", "-12", "word"]);
    assert!(status.success(), "{status}: {lines:#?}\n{log}");
    let echoed = parse_value(lines[1].strip_prefix("answer: ").expect("an answer"));
    let args = vec![int(7), int(-12), text("word")];
    let expected = Value::Tuple(vec![Value::Tuple(args), Value::Dict(vec![])]);
    assert_eq!(echoed, expected, "{lines:#?}");

    // A Python exception arrives as a failure with its type and message.
    let (lines, status, log) = run_client(port, "secret", &["fail"]);
    assert!(status.success(), "{status}: {lines:#?}\n{log}");
    assert_eq!(
        lines,
        ["logged in", "failed: builtins.ValueError: no good"],
        "{log}"
    );

    // Twisted calls the client's mind while answering.
    let (lines, status, log) = run_client(port, "secret", &["callMind"]);
    assert!(status.success(), "{status}: {lines:#?}\n{log}");
    assert_eq!(
        lines,
        [
            "logged in",
            r#"mind called: hello (b'unicode' "from twisted")"#,
            r#"answer: (b'unicode' "hello from pbwire, answering from twisted")"#,
        ],
        "{log}"
    );

    // A wrong password: refused by Twisted's cred checker, exit status 1.
    let (lines, status, log) = run_client(port, "not the password", &["whoami"]);
    assert_eq!(status.code(), Some(1), "{lines:#?}\n{log}");
    assert_eq!(
        lines,
        ["login refused: twisted.cred.error.UnauthorizedLogin"],
        "{log}"
    );
    assert!(log.contains("the login was refused"), "{log}");
}

#[test]
fn server_example_serves_a_twisted_client() {
    let server = Process::start("examples/server", {
        let mut cmd = example("server");
        cmd.arg("127.0.0.1:0");
        cmd
    });
    let line = server.line();
    let port = line
        .strip_prefix("listening on 127.0.0.1:")
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("expected the address, got {line:?}; {}", server.log()));

    let mut client = Process::start(
        "twisted_pb.py example-client",
        twisted(&["example-client", &port.to_string()]),
    );
    let (lines, status) = client.finish();
    let log = client.log();
    assert!(status.success(), "{status}: {lines:#?}\n{log}");
    let (hellos, rest): (Vec<_>, Vec<_>) = lines.iter().partition(|l| l.starts_with("hello "));
    assert_eq!(hellos, ["hello 'from pbwire'"], "{lines:#?}");
    assert_eq!(
        rest,
        [
            "bad-login failed twisted.cred.error.UnauthorizedLogin 'wrong name or password' \
             is-UnauthorizedLogin=True",
            "login RemoteReference",
            "add 5",
            "divide 3.5",
            // The CopyableFailure the server sent: a remote error whose type, message
            // and class hierarchy are Python's ZeroDivisionError.
            "divide-by-zero failed builtins.ZeroDivisionError 'division by zero' \
             is-ZeroDivisionError=True",
            "echo ((1, 'two', b'three', [4.5]), {'four': None})",
        ],
        "{log}"
    );

    // The server's account of the same connection, up to its close.
    let seen = server.lines_until(|l| l.starts_with("[1] closed: "));
    let (minds, rest): (Vec<_>, Vec<_>) = seen.iter().partition(|l| l.starts_with("[1] mind "));
    assert_eq!(
        minds,
        [r#"[1] mind answered: (b'unicode' "hello from twisted, answering from pbwire")"#],
        "{seen:#?}"
    );
    assert!(
        rest[0].starts_with("[1] connection from 127.0.0.1:"),
        "{seen:#?}"
    );
    assert_eq!(
        rest[1..],
        [
            "[1] login refused: alice",
            "[1] login accepted: alice",
            "[1] call add 2 3: answer 5",
            "[1] call divide 7 2: answer 3.5",
            "[1] call divide 1 0: failed builtins.ZeroDivisionError: division by zero",
            r#"[1] call echo 1 (b'unicode' "two") b'three' (list 4.5): answer (tuple (tuple 1 (b'unicode' "two") b'three' (list 4.5)) (dictionary ((b'unicode' "four") (None))))"#,
            "[1] closed: peer closed the connection",
        ],
        "{}",
        server.log()
    );
}
