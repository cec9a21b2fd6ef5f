//! `pbwire::broker::Broker` against real Twisted PB (the `twisted-py3` peer), in both
//! roles, over loopback TCP: as a connector logging in to a Twisted `PBServerFactory`
//! behind a cred portal, and as a listener serving a Twisted `PBClientFactory` login.
//! The Twisted end is `tests/support/twisted_pb.py`; the Rust end drives the broker with
//! blocking sockets, every read bounded by a timeout.

mod support;

use bytes::Bytes;
use pbwire::broker::{Broker, BrokerConfig, CloseReason, Event, Side};
use pbwire::jelly::{Failure, FailureStyle, Value};
use pbwire::pb::failures::{pb_error, unauthorized};
use pbwire::pb::{Call, ObjectId};
use pbwire::Integer;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use support::workers::{python_env, require_peer};

/// The longest any single step may take: each is a loopback round trip or a Python
/// start-up, well under a second.
const WAIT: Duration = Duration::from_secs(15);

// ----- the Twisted process -----

/// `tests/support/twisted_pb.py` running in the `twisted-py3` venv. Dropping it kills
/// and reaps the process.
struct Twisted {
    child: Child,
    /// Held open: the server mode exits when it closes.
    _stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Twisted {
    fn start(args: &[&str]) -> Twisted {
        let venv = require_peer("twisted-py3");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/twisted_pb.py");
        let mut cmd = Command::new(venv.join("bin/python"));
        cmd.arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        python_env(&mut cmd, &venv);
        let mut child = cmd.spawn().expect("start twisted_pb.py");
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
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut chunk) {
                let text = String::from_utf8_lossy(&chunk[..n]);
                sink.lock().expect("stderr buffer").push_str(&text);
            }
        });
        Twisted {
            _stdin: child.stdin.take(),
            child,
            lines,
            stderr,
        }
    }

    /// What Twisted logged so far, for failure messages.
    fn log(&self) -> String {
        self.stderr.lock().expect("stderr buffer").clone()
    }

    /// The next line the script prints.
    fn line(&self) -> String {
        match self.lines.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(e) => panic!("no line from twisted_pb.py ({e}); its log:\n{}", self.log()),
        }
    }

    /// The rest of the script's output and its exit status, once it has exited.
    fn finish(&mut self) -> (Vec<String>, ExitStatus) {
        let deadline = Instant::now() + WAIT;
        let mut lines = vec![];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("twisted_pb.py did not exit; its log:\n{}", self.log())
                }
            }
        }
        // Its stdout is closed: it is exiting.
        let status = self.child.wait().expect("wait for twisted_pb.py");
        (lines, status)
    }
}

impl Drop for Twisted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- driving a broker over a blocking socket -----

struct Conn {
    stream: TcpStream,
    broker: Broker,
}

impl Conn {
    fn new(stream: TcpStream, side: Side) -> Conn {
        stream.set_nodelay(true).expect("nodelay");
        let entropy = |buf: &mut [u8]| getrandom::fill(buf).is_ok();
        let broker = Broker::new(BrokerConfig::new(side), Instant::now(), entropy);
        Conn { stream, broker }
    }

    /// Writes whatever the broker has queued.
    fn flush(&mut self) {
        while let Some(bytes) = self.broker.poll_transmit() {
            self.stream.write_all(&bytes).expect("write to the peer");
        }
    }

    /// The broker's next event, reading from the peer until there is one.
    fn event(&mut self) -> Event {
        let deadline = Instant::now() + WAIT;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            self.flush();
            if let Some(event) = self.broker.poll_event() {
                self.flush();
                return event;
            }
            let now = Instant::now();
            assert!(now < deadline, "no event from the peer in {WAIT:?}");
            let wake = self
                .broker
                .poll_timeout()
                .map_or(deadline, |t| t.min(deadline));
            let wait = wake.saturating_duration_since(now);
            self.stream
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
                .expect("read timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) => self.broker.handle_eof(),
                Ok(n) => self.broker.handle_input(&chunk[..n], Instant::now()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    self.broker.handle_timeout(Instant::now())
                }
                Err(e) if e.kind() == ErrorKind::ConnectionReset => self.broker.handle_eof(),
                Err(e) => panic!("read from the peer: {e}"),
            }
        }
    }
}

/// A connector's side of the conversation: its mind answers `hello`.
struct Client {
    conn: Conn,
    mind: i64,
    /// Every call the peer made on the mind.
    mind_calls: Vec<Call>,
    /// Objects of ours the peer released.
    released: Vec<i64>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect to Twisted");
        let mut conn = Conn::new(stream, Side::Connector);
        let mind = conn.broker.export().expect("export the mind");
        Client {
            conn,
            mind,
            mind_calls: vec![],
            released: vec![],
        }
    }

    /// Logs in; the avatar's id, or the failure.
    fn login(&mut self, name: &str, password: &[u8]) -> Result<i64, Failure> {
        let name = Bytes::copy_from_slice(name.as_bytes());
        self.conn
            .broker
            .login(name, password, Some(self.mind))
            .expect("start the login");
        loop {
            match self.conn.event() {
                Event::LoggedIn { avatar } => return Ok(avatar),
                Event::LoginRefused(f) => return Err(f),
                Event::Released(id) => self.released.push(id),
                other => panic!("unexpected event during the login: {other:?}"),
            }
        }
    }

    /// Calls `method` on `object` and waits for its answer, serving the mind meanwhile.
    fn call(
        &mut self,
        object: i64,
        method: &'static str,
        args: Vec<Value>,
        kwargs: Vec<(Value, Value)>,
    ) -> Result<Value, Failure> {
        let id = self
            .conn
            .broker
            .call(ObjectId::Id(object), method, args, kwargs)
            .expect("send the call");
        loop {
            match self.conn.event() {
                Event::Answer { request_id, result } if request_id == id => return result,
                Event::Call(call) if call.object == ObjectId::Id(self.mind) => {
                    let answer = match (call.method.as_ref(), call.args.as_slice()) {
                        (b"hello", [Value::Text(from)]) => Ok(Value::text(format!(
                            "hello from rust, answering {}",
                            &**from
                        ))),
                        _ => Err(pb_error("unexpected call on the mind")),
                    };
                    self.conn
                        .broker
                        .answer(call.request_id, answer)
                        .expect("answer the mind call");
                    self.mind_calls.push(call);
                }
                Event::Released(id) => self.released.push(id),
                other => panic!("unexpected event waiting for {method}: {other:?}"),
            }
        }
    }
}

/// A Twisted PB server and its address.
fn twisted_server() -> (Twisted, SocketAddr) {
    let server = Twisted::start(&["server"]);
    let line = server.line();
    let port = line
        .strip_prefix("port ")
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("expected the port, got {line:?}; log:\n{}", server.log()));
    (server, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn big(digits: &str) -> Value {
    Value::Int(digits.parse::<Integer>().expect("an integer"))
}

fn text(s: &str) -> Value {
    Value::text(s)
}

fn int(i: i64) -> Value {
    Value::int(i)
}

/// A value of every kind Twisted's default jelly security lets a peer send
/// (`globalSecurity`: the basic types, sets, dates and times, decimals, shared and
/// circular references), with the Python type Twisted makes of it. Each is chosen to
/// come back exactly as sent: no two equal immutable singletons (such as two empty
/// tuples) that Python would merge into one shared object, set members whose iteration
/// order is fixed, canonical date strings.
fn every_kind() -> Vec<(Value, &'static str)> {
    let date = |s: &'static str| Bytes::from_static(s.as_bytes());
    vec![
        (Value::None, "NoneType"),
        (Value::Bool(true), "bool"),
        (Value::Bool(false), "bool"),
        (int(0), "int"),
        (int(42), "int"),
        (int(-7), "int"),
        (int(i64::from(i32::MAX) + 1), "int"),
        (int(i64::MAX), "int"),
        (int(i64::MIN), "int"),
        (big("18446744073709551616"), "int"),
        (
            big("-1234567890123456789012345678901234567890123456789"),
            "int",
        ),
        (Value::Float(1.5), "float"),
        (Value::Float(-0.25), "float"),
        (Value::Float(1e300), "float"),
        (Value::bytes(&b"\x00\xff raw"[..]), "bytes"),
        (Value::bytes(&b""[..]), "bytes"),
        (text("h\u{e9}llo \u{2603}"), "str"),
        (text(""), "str"),
        (
            Value::List(vec![int(1), text("two"), Value::bytes(&b"three"[..])]),
            "list",
        ),
        (Value::List(vec![]), "list"),
        (
            Value::Tuple(vec![int(1), Value::Tuple(vec![Value::None])]),
            "tuple",
        ),
        (Value::Tuple(vec![]), "tuple"),
        (
            Value::Dict(vec![
                (text("a"), int(1)),
                (int(2), Value::bytes(&b"b"[..])),
                (Value::Tuple(vec![int(3), int(4)]), Value::List(vec![])),
            ]),
            "dict",
        ),
        (Value::Dict(vec![]), "dict"),
        (Value::Set(vec![int(1), int(2), int(3)]), "set"),
        (Value::FrozenSet(vec![int(5), int(6)]), "frozenset"),
        (Value::DateTime(date("2024 2 29 13 5 7 123456")), "datetime"),
        (Value::Date(date("1999 12 31")), "date"),
        (Value::Time(date("23 59 58 1")), "time"),
        (Value::TimeDelta(date("-1 86399 999999")), "timedelta"),
        (
            Value::Decimal {
                digits: Integer::from(-12345),
                exponent: Integer::from(-3),
            },
            "Decimal",
        ),
        (
            Value::Decimal {
                digits: Integer::from(5),
                exponent: Integer::from(2),
            },
            "Decimal",
        ),
        (
            Value::Dict(vec![(
                text("outer"),
                Value::List(vec![Value::Dict(vec![(
                    text("inner"),
                    Value::Tuple(vec![
                        Value::Set(vec![int(1)]),
                        Value::FrozenSet(vec![int(2)]),
                        big("-340282366920938463463374607431768211457"),
                        Value::List(vec![Value::Bool(false), Value::Float(0.5)]),
                    ]),
                )])]),
            )]),
            "dict",
        ),
        // One list twice (Twisted numbers references from 1 in the order it meets
        // their second occurrences), then a list that contains itself.
        (
            Value::Reference(1, Box::new(Value::List(vec![text("shared")]))),
            "list",
        ),
        (Value::Dereference(1), "list"),
        (
            Value::Reference(
                2,
                Box::new(Value::List(vec![int(1), Value::Dereference(2)])),
            ),
            "list",
        ),
    ]
}

fn every_kind_of_keyword() -> Vec<(Value, Value)> {
    vec![
        (text("flag"), Value::Bool(true)),
        (text("n"), big("-98765432109876543210")),
        (
            text("nested"),
            Value::Dict(vec![(
                text("k"),
                Value::List(vec![Value::Tuple(vec![int(1)])]),
            )]),
        ),
    ]
}

#[test]
fn connector_logs_in_to_twisted_and_calls_both_ways() {
    let (server, addr) = twisted_server();
    let mut client = Client::connect(addr);
    let avatar = client
        .login("alice", b"secret")
        .unwrap_or_else(|f| panic!("refused: {f:?}; log:\n{}", server.log()));

    assert_eq!(
        client.call(avatar, "whoami", vec![], vec![]),
        Ok(Value::bytes(&b"alice"[..]))
    );

    // Each kind is unjellied as the Python type it stands for...
    let (args, types): (Vec<Value>, Vec<&str>) = every_kind().into_iter().unzip();
    let got = client.call(avatar, "types", args.clone(), vec![]);
    let expected = Value::List(types.into_iter().map(text).collect());
    assert_eq!(got, Ok(expected), "log:\n{}", server.log());

    // ...and comes back as sent: args as a tuple (Python's *args), keywords as a dict
    // with text keys, both inside the tuple `perspective_echo` returns.
    let kwargs = every_kind_of_keyword();
    let echoed = client.call(avatar, "echo", args.clone(), kwargs.clone());
    let expected = Value::Tuple(vec![Value::Tuple(args), Value::Dict(kwargs)]);
    assert_eq!(echoed, Ok(expected), "log:\n{}", server.log());

    // One of our objects goes out as `remote`, becomes a RemoteReference and comes
    // back as `local`.
    let mind = client.mind;
    let got = client.call(avatar, "types", vec![Value::Remote(mind)], vec![]);
    assert_eq!(got, Ok(Value::List(vec![text("RemoteReference")])));
    let echoed = client.call(avatar, "echo", vec![Value::Remote(mind)], vec![]);
    let expected = Value::Tuple(vec![
        Value::Tuple(vec![Value::Local(mind)]),
        Value::Dict(vec![]),
    ]);
    assert_eq!(echoed, Ok(expected));

    // An unpersistable and a failure are accepted too, but Twisted sends neither back:
    // it does not trust the classes it made of them.
    let accepted_only = vec![
        Value::Unpersistable(Bytes::from_static(b"a socket")),
        pb_error("sent as an argument").to_value(FailureStyle::Python3),
    ];
    let got = client.call(avatar, "types", accepted_only.clone(), vec![]);
    let expected = Value::List(vec![text("Unpersistable"), text("CopiedFailure")]);
    assert_eq!(got, Ok(expected));
    let echoed = client.call(avatar, "echo", accepted_only, vec![]);
    let insecure = |class: &str| {
        Value::Unpersistable(Bytes::from(format!(
            "instance of class {class} deemed insecure"
        )))
    };
    let expected = Value::Tuple(vec![
        Value::Tuple(vec![
            insecure("twisted.spread.jelly.Unpersistable"),
            insecure("twisted.spread.pb.CopiedFailure"),
        ]),
        Value::Dict(vec![]),
    ]);
    assert_eq!(echoed, Ok(expected));

    // A Python exception arrives as a CopyableFailure.
    let failure = client
        .call(avatar, "fail", vec![], vec![])
        .expect_err("fail fails");
    assert_eq!(
        (failure.type_name.as_str(), failure.value.as_str()),
        ("builtins.ValueError", "no good")
    );
    assert!(failure.check("builtins.Exception"), "{failure:?}");

    // Twisted calls the mind while answering: the call is served during the wait.
    let answer = client.call(avatar, "callMind", vec![], vec![]);
    assert_eq!(
        answer,
        Ok(text("hello from rust, answering from twisted")),
        "log:\n{}",
        server.log()
    );
    assert_eq!(client.mind_calls.len(), 1);

    // Twisted still holds the mind it was given at login after releasing the copy
    // the echo made: a second call on it still reaches it.
    let answer = client.call(avatar, "callMind", vec![], vec![]);
    assert_eq!(answer, Ok(text("hello from rust, answering from twisted")));
    assert_eq!(client.mind_calls.len(), 2);
    assert!(client.released.is_empty(), "{:?}", client.released);
    assert_eq!(client.conn.broker.pending_calls(), 0);
}

#[test]
fn connector_with_a_wrong_password_is_refused_by_twisted() {
    let (server, addr) = twisted_server();
    let mut client = Client::connect(addr);
    let failure = client
        .login("alice", b"not the password")
        .expect_err("a wrong password is refused");
    assert_eq!(
        failure.type_name,
        "twisted.cred.error.UnauthorizedLogin",
        "{failure:?}; log:\n{}",
        server.log()
    );
    assert!(
        failure.check("twisted.cred.error.LoginFailed"),
        "{failure:?}"
    );
    // A refused login may be retried on the same connection, with the same mind
    // (Twisted released it when it refused the first login; sent anew, it is served
    // again).
    let avatar = client.login("alice", b"secret").expect("the retry logs in");
    let answer = client.call(avatar, "callMind", vec![], vec![]);
    assert_eq!(answer, Ok(text("hello from rust, answering from twisted")));
}

/// What the listener saw of the Twisted client.
#[derive(Debug, Default)]
struct Served {
    refused: Vec<String>,
    accepted: Option<String>,
    ping: Option<Result<Value, Failure>>,
    calls: Vec<(String, Vec<Value>)>,
    closed: Option<CloseReason>,
}

/// Serves one Twisted client: bob/pw logs in, his avatar adds, refuses and looks up,
/// his mind is pinged, and `done` is answered once the ping's answer is in.
fn serve(conn: &mut Conn) -> Served {
    let mut served = Served::default();
    let mut avatar = None;
    let mut ping_id = None;
    let mut done_id = None;
    loop {
        match conn.event() {
            Event::Login(attempt) => {
                let name = attempt.name_lossy();
                if name == "bob" && attempt.verify(b"pw") {
                    let id = conn
                        .broker
                        .accept_login(attempt.id, Instant::now())
                        .expect("accept");
                    avatar = Some(id);
                    let mind = attempt.mind.expect("a login with a mind");
                    let ping = conn
                        .broker
                        .call(ObjectId::Id(mind), "ping", vec![text("from rust")], vec![])
                        .expect("ping the mind");
                    ping_id = Some(ping);
                    served.accepted = Some(name);
                } else {
                    conn.broker
                        .refuse_login(attempt.id, unauthorized("wrong password"))
                        .expect("refuse");
                    served.refused.push(name);
                }
            }
            Event::Call(call) => {
                assert_eq!(Some(call.object), avatar.map(ObjectId::Id), "{call:?}");
                let method = String::from_utf8_lossy(&call.method).into_owned();
                let answer = match method.as_str() {
                    "add" => Ok(int(call.args.iter().filter_map(Value::as_i64).sum())),
                    "refuse" => Err(pb_error("refused")),
                    "lookup" => Err(Failure {
                        type_name: "builtins.KeyError".into(),
                        value: "no such key".into(),
                        parents: [
                            "builtins.KeyError",
                            "builtins.LookupError",
                            "builtins.Exception",
                            "builtins.BaseException",
                            "builtins.object",
                        ]
                        .map(String::from)
                        .to_vec(),
                        traceback: None,
                    }),
                    "done" if served.ping.is_some() => Ok(text("bye")),
                    "done" => {
                        done_id = Some(call.request_id);
                        served.calls.push((method, call.args));
                        continue;
                    }
                    _ => Err(pb_error("unexpected method")),
                };
                conn.broker.answer(call.request_id, answer).expect("answer");
                served.calls.push((method, call.args));
            }
            Event::Answer { request_id, result } => {
                assert_eq!(Some(request_id), ping_id);
                served.ping = Some(result);
                if let Some(done) = done_id.take() {
                    conn.broker.answer(done, Ok(text("bye"))).expect("answer");
                }
            }
            Event::Released(_) => {}
            Event::Closed(reason) => {
                served.closed = Some(reason);
                return served;
            }
            other => panic!("unexpected event: {other:?}"),
        }
    }
}

#[test]
fn listener_serves_a_twisted_client() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("address").port();
    let (tx, accepted) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(listener.accept());
    });
    let mut client = Twisted::start(&["client", &port.to_string()]);
    let stream = match accepted.recv_timeout(WAIT) {
        Ok(Ok((stream, _))) => stream,
        other => panic!("Twisted did not connect: {other:?}; log:\n{}", client.log()),
    };
    let mut conn = Conn::new(stream, Side::Listener);
    let served = serve(&mut conn);
    let (lines, status) = client.finish();
    let log = client.log();

    assert_eq!(served.refused, ["bob"], "{served:?}\n{log}");
    assert_eq!(served.accepted.as_deref(), Some("bob"), "{served:?}\n{log}");
    assert_eq!(
        served.ping,
        Some(Ok(Value::Tuple(vec![text("pong"), text("from rust")])))
    );
    assert_eq!(
        served.calls,
        [
            ("add".to_owned(), vec![int(2), int(3)]),
            ("refuse".to_owned(), vec![]),
            ("lookup".to_owned(), vec![text("nothing")]),
            ("done".to_owned(), vec![]),
        ]
    );
    assert_eq!(served.closed, Some(CloseReason::PeerClosed));

    assert!(
        status.success(),
        "exit {status}; output {lines:#?}; log:\n{log}"
    );
    let (pings, rest): (Vec<_>, Vec<_>) = lines.iter().partition(|l| l.starts_with("ping "));
    assert_eq!(pings, ["ping 'from rust'"], "{lines:#?}");
    assert_eq!(
        rest,
        [
            "bad-login failed twisted.cred.error.UnauthorizedLogin 'wrong password' \
             is-UnauthorizedLogin=True",
            "login RemoteReference",
            "add 5",
            "refuse failed twisted.spread.pb.Error 'refused' is-Error=True",
            "lookup failed builtins.KeyError 'no such key' is-KeyError=True",
            "done 'bye'",
        ],
        "log:\n{log}"
    );
}
