//! A PB server: pbwire's broker as the listener, one thread per connection over
//! blocking `std::net` sockets.
//!
//! ```text
//! cargo run -p pbwire --example server -- [ADDRESS]
//! ```
//!
//! Listens on ADDRESS (default `127.0.0.1:8789`; port 0 picks a free one) and accepts
//! logins for `alice` with the password `secret`. Her avatar serves:
//!
//! - `add(a, b)`: the sum of two integers;
//! - `divide(a, b)`: `a / b` as a float; dividing by zero fails with Python's
//!   `ZeroDivisionError`, sent as a `CopyableFailure`: a Twisted client's Deferred
//!   fails with a remote error of that type;
//! - `echo(*args, **kwargs)`: `(args, kwargs)`, as received.
//!
//! Once a login is accepted, the server calls `hello("from pbwire")` on the client's
//! mind, if the client passed one. Works with `examples/client.rs` and with a Twisted
//! `PBClientFactory`.
//!
//! Prints `listening on ADDRESS`, then one line per event, prefixed with the
//! connection's number: `[1] login accepted: alice`, `[1] call add 2 3: answer 5`,
//! `[1] mind answered: VALUE`, `[1] closed: REASON` (values in pbwire's wire notation).

use pbwire::banana::Dialect;
use pbwire::broker::{Broker, BrokerConfig, Event, LoginAttempt, Phase, Side};
use pbwire::jelly::{self, Failure, Value};
use pbwire::notation;
use pbwire::pb::failures::{no_such_method, pb_error, unauthorized};
use pbwire::pb::{Call, ObjectId};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

const USER: &str = "alice";
const PASSWORD: &str = "secret";

/// A client that stops reading its socket cannot hold a thread for longer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

type Error = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8789".to_owned());
    let listener = match TcpListener::bind(&address) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("server: listen on {address}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(bound) => println!("listening on {bound}"),
        Err(e) => eprintln!("server: {e}"),
    }
    for (number, accepted) in (1u64..).zip(listener.incoming()) {
        match accepted {
            Ok(stream) => {
                thread::spawn(move || {
                    if let Err(e) = serve(number, stream) {
                        println!("[{number}] error: {e}");
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors, say: give connections time to finish.
                eprintln!("server: accept: {e}");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
    ExitCode::SUCCESS
}

/// Runs one connection until it closes: the calling order of `pbwire::broker` (input,
/// then events, then transmit, then wait for input or the broker's next deadline).
fn serve(number: u64, mut stream: TcpStream) -> Result<(), Error> {
    println!("[{number}] connection from {}", stream.peer_addr()?);
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    // Login challenges must be unpredictable: they come from the operating system.
    let entropy = |buf: &mut [u8]| getrandom::fill(buf).is_ok();
    // The default config closes a connection that has not logged in within a minute;
    // `keepalive` would also probe logged-in clients through their minds.
    let config = BrokerConfig::new(Side::Listener);
    let mut broker = Broker::new(config, Instant::now(), entropy);
    let mut session = Session {
        number,
        avatar: None,
        mind_call: None,
    };
    let mut chunk = [0u8; 16 * 1024];
    loop {
        while let Some(event) = broker.poll_event() {
            session.handle(&mut broker, event);
        }
        while let Some(bytes) = broker.poll_transmit() {
            stream.write_all(&bytes)?;
        }
        if broker.phase() == Phase::Closing {
            return Ok(());
        }
        // No deadline (logged in, no keepalive): wait for the client as long as it takes.
        let now = Instant::now();
        let wait = broker.poll_timeout().map(|t| {
            t.saturating_duration_since(now)
                .max(Duration::from_millis(1))
        });
        stream.set_read_timeout(wait)?;
        match stream.read(&mut chunk) {
            Ok(0) => broker.handle_eof(),
            Ok(n) => broker.handle_input(&chunk[..n], Instant::now()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                broker.handle_timeout(Instant::now())
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => broker.close(format!("read: {e}")),
        }
    }
}

/// What one connection's application state is: who logged in, what it waits for.
struct Session {
    number: u64,
    /// The avatar handed out at login.
    avatar: Option<i64>,
    /// The call on the client's mind, until it is answered.
    mind_call: Option<i64>,
}

impl Session {
    fn say(&self, line: &str) {
        println!("[{}] {line}", self.number);
    }

    fn handle(&mut self, broker: &mut Broker, event: Event) {
        match event {
            Event::Login(attempt) => self.login(broker, &attempt),
            Event::Call(call) => {
                let result = match self.avatar {
                    Some(avatar) if call.object == ObjectId::Id(avatar) => avatar_method(&call),
                    _ => Err(no_such_method(&String::from_utf8_lossy(&call.method))),
                };
                let method = String::from_utf8_lossy(&call.method).into_owned();
                let shown: Vec<String> = std::iter::once(method)
                    .chain(call.args.iter().map(show))
                    .collect();
                self.say(&format!("call {}: {}", shown.join(" "), outcome(&result)));
                if call.answer_required {
                    self.answer(broker, &call, result);
                }
            }
            Event::Answer { request_id, result } if Some(request_id) == self.mind_call => {
                self.mind_call = None;
                match result {
                    Ok(value) => self.say(&format!("mind answered: {}", show(&value))),
                    Err(f) => self.say(&format!("mind failed: {}: {}", f.type_name, f.value)),
                }
            }
            Event::Closed(reason) => self.say(&format!("closed: {reason}")),
            // Released objects; answers to nothing awaited.
            _ => {}
        }
    }

    fn login(&mut self, broker: &mut Broker, attempt: &LoginAttempt) {
        let name = attempt.name_lossy();
        if name != USER || !attempt.verify(PASSWORD.as_bytes()) {
            self.say(&format!("login refused: {name}"));
            // UnauthorizedLogin: a Twisted client may try again on this connection.
            let refusal = unauthorized("wrong name or password");
            if let Err(e) = broker.refuse_login(attempt.id, refusal) {
                self.say(&format!("refusing the login: {e}"));
            }
            return;
        }
        match broker.accept_login(attempt.id, Instant::now()) {
            Ok(avatar) => self.avatar = Some(avatar),
            Err(e) => return self.say(&format!("accepting the login: {e}")),
        }
        self.say(&format!("login accepted: {name}"));
        if let Some(mind) = attempt.mind {
            let greeting = vec![Value::text("from pbwire")];
            match broker.call(ObjectId::Id(mind), "hello", greeting, vec![]) {
                Ok(request) => self.mind_call = Some(request),
                Err(e) => self.say(&format!("calling the mind: {e}")),
            }
        }
    }

    fn answer(&self, broker: &mut Broker, call: &Call, result: Result<Value, Failure>) {
        // A value that cannot be sent (say, a reference the client handed us) is
        // answered with a failure instead; nothing was queued for it.
        if let Err(e) = broker.answer(call.request_id, result) {
            if let Err(e) = broker.answer(call.request_id, Err(pb_error(&e.to_string()))) {
                self.say(&format!("answering: {e}"));
            }
        }
    }
}

/// The avatar's methods.
fn avatar_method(call: &Call) -> Result<Value, Failure> {
    let method = String::from_utf8_lossy(&call.method);
    match method.as_ref() {
        "add" => {
            let (a, b) = two_integers(&method, &call.args)?;
            a.checked_add(b).map(Value::int).ok_or_else(|| {
                python_exception(
                    &["builtins.OverflowError", "builtins.ArithmeticError"],
                    "the sum does not fit 64 bits",
                )
            })
        }
        "divide" => match two_integers(&method, &call.args)? {
            (_, 0) => Err(python_exception(
                &["builtins.ZeroDivisionError", "builtins.ArithmeticError"],
                "division by zero",
            )),
            (a, b) => Ok(Value::Float(a as f64 / b as f64)),
        },
        "echo" => Ok(Value::Tuple(vec![
            Value::Tuple(call.args.clone()),
            Value::Dict(call.kwargs.clone()),
        ])),
        other => Err(no_such_method(other)),
    }
}

fn two_integers(method: &str, args: &[Value]) -> Result<(i64, i64), Failure> {
    match args {
        [a, b] => match (a.as_i64(), b.as_i64()) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(python_exception(
                &["builtins.TypeError"],
                &format!("{method} takes two 64-bit integers"),
            )),
        },
        _ => Err(python_exception(
            &["builtins.TypeError"],
            &format!("{method} takes 2 arguments, not {}", args.len()),
        )),
    }
}

/// A Python exception as Twisted copies it: `classes` are the exception's qualified
/// class and its bases below `Exception`. A Twisted receiver matches on these.
fn python_exception(classes: &[&str], message: &str) -> Failure {
    let builtins = [
        "builtins.Exception",
        "builtins.BaseException",
        "builtins.object",
    ];
    Failure {
        type_name: classes
            .first()
            .copied()
            .unwrap_or("builtins.Exception")
            .into(),
        value: message.into(),
        parents: classes
            .iter()
            .chain(&builtins)
            .map(|c| c.to_string())
            .collect(),
        traceback: None,
    }
}

/// `answer VALUE` or `failed TYPE: MESSAGE`.
fn outcome(result: &Result<Value, Failure>) -> String {
    match result {
        Ok(value) => format!("answer {}", show(value)),
        Err(f) => format!("failed {}: {}", f.type_name, f.value),
    }
}

/// A value in wire notation, as jelly writes it in the `pb` dialect.
fn show(value: &Value) -> String {
    match jelly::encode(value, Dialect::Pb) {
        Ok(element) => notation::to_string(&element),
        Err(e) => format!("<{e}>"),
    }
}
