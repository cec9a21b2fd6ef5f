//! A PB client: pbwire's broker as the connector, over a blocking `std::net` socket.
//!
//! ```text
//! cargo run -p pbwire --example client -- HOST:PORT NAME PASSWORD [METHOD [ARG...]]
//! ```
//!
//! Connects, logs in as NAME with PASSWORD, calls METHOD on the avatar the server hands
//! back and prints the answer. Without METHOD it calls `echo` with arguments of several
//! jelly types and one keyword argument; each ARG is sent as an integer if it reads as
//! one, as text otherwise. The login passes a "mind", an object of the client's that
//! the server may call: it answers `hello(greeting)`. Works against `examples/server.rs`
//! and against a Twisted `PBServerFactory` behind a cred portal.
//!
//! Prints `logged in`, `mind called: METHOD ARGS` for each call on the mind, then
//! `answer: VALUE` or `failed: TYPE: MESSAGE`, values in pbwire's wire notation.
//! Exits 0 once the call is answered or failed; 1 if the login is refused, the
//! connection fails or closes, or nothing happens for 10 seconds.

use pbwire::banana::Dialect;
use pbwire::broker::{Broker, BrokerConfig, Event, Side};
use pbwire::jelly::{self, Failure, Value};
use pbwire::pb::failures::{no_such_method, pb_error};
use pbwire::pb::{Call, ObjectId};
use pbwire::{notation, Integer};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The longest any one step (connecting, the login, the call) may take.
const STEP: Duration = Duration::from_secs(10);

type Error = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: client HOST:PORT NAME PASSWORD [METHOD [ARG...]]");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), Error> {
    let (address, name, password) = (&args[0], &args[1], &args[2]);
    let (method, call_args, kwargs) = match args.get(3) {
        Some(method) => (
            method.clone(),
            args[4..].iter().map(|a| argument(a)).collect(),
            vec![],
        ),
        None => (
            "echo".to_owned(),
            sample_arguments(),
            vec![(Value::text("unit"), Value::text("ms"))],
        ),
    };

    let mut conn = Connection::open(address)?;
    // The mind: exported before the login so that the login can pass it along.
    let mind = conn.broker.export()?;
    let name = name.clone().into_bytes();
    conn.broker.login(name, password.as_bytes(), Some(mind))?;
    let avatar = loop {
        match conn.next_event()? {
            Event::LoggedIn { avatar } => break avatar,
            Event::LoginRefused(failure) => {
                println!("login refused: {}", describe(&failure));
                return Err("the login was refused".into());
            }
            other => conn.background(other, mind)?,
        }
    };
    println!("logged in");

    let request = conn
        .broker
        .call(ObjectId::Id(avatar), method, call_args, kwargs)?;
    loop {
        match conn.next_event()? {
            Event::Answer { request_id, result } if request_id == request => {
                match result {
                    Ok(value) => println!("answer: {}", show(&value)),
                    Err(failure) => println!("failed: {}", describe(&failure)),
                }
                break;
            }
            other => conn.background(other, mind)?,
        }
    }
    conn.broker.close("done");
    conn.flush()
}

/// A command-line argument as a value: an integer if it reads as one, else text.
fn argument(arg: &str) -> Value {
    match arg.parse::<Integer>() {
        Ok(i) => Value::Int(i),
        Err(_) => Value::text(arg),
    }
}

/// Arguments of several jelly types, each of which Twisted gives back unchanged.
fn sample_arguments() -> Vec<Value> {
    let two_to_the_64 = "18446744073709551616".parse().expect("an integer");
    vec![
        Value::int(42),
        Value::int(-7),
        Value::Int(two_to_the_64),
        Value::Float(1.5),
        Value::bytes(&b"raw\x00bytes"[..]),
        Value::text("h\u{e9}llo \u{2603}"),
        Value::Bool(true),
        Value::None,
        Value::List(vec![Value::int(1), Value::text("two")]),
        Value::Tuple(vec![Value::int(3), Value::Float(4.5)]),
        Value::Dict(vec![(
            Value::text("key"),
            Value::List(vec![Value::int(1), Value::int(2)]),
        )]),
        Value::Set(vec![Value::int(1), Value::int(2), Value::int(3)]),
    ]
}

/// A value in wire notation, as jelly writes it in the `pb` dialect.
fn show(value: &Value) -> String {
    match jelly::encode(value, Dialect::Pb) {
        Ok(element) => notation::to_string(&element),
        Err(e) => format!("<{e}>"),
    }
}

/// `TYPE: MESSAGE`, or `TYPE` for an exception without a message.
fn describe(failure: &Failure) -> String {
    match failure.value.as_str() {
        "" => failure.type_name.clone(),
        message => format!("{}: {message}", failure.type_name),
    }
}

/// One connection: the socket and the broker that speaks PB on it.
struct Connection {
    stream: TcpStream,
    broker: Broker,
}

impl Connection {
    fn open(address: &str) -> Result<Connection, Error> {
        let mut last = None;
        for addr in address.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, STEP) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_write_timeout(Some(STEP))?;
                    let config = BrokerConfig::new(Side::Connector);
                    // A connector never makes login challenges: it needs no entropy.
                    let broker = Broker::new(config, Instant::now(), |_: &mut [u8]| false);
                    return Ok(Connection { stream, broker });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => format!("connect to {address}: {e}").into(),
            None => format!("{address} resolves to no address").into(),
        })
    }

    /// Writes everything the broker has queued.
    fn flush(&mut self) -> Result<(), Error> {
        while let Some(bytes) = self.broker.poll_transmit() {
            self.stream.write_all(&bytes)?;
        }
        Ok(())
    }

    /// The broker's next event, reading from the server until there is one: the
    /// calling order of `pbwire::broker` (input, then events, then transmit, then wait
    /// for input or the broker's next deadline).
    fn next_event(&mut self) -> Result<Event, Error> {
        let give_up = Instant::now() + STEP;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let event = self.broker.poll_event();
            self.flush()?;
            if let Some(event) = event {
                return Ok(event);
            }
            let now = Instant::now();
            if now >= give_up {
                return Err(format!("nothing from the server in {STEP:?}").into());
            }
            let wake = self
                .broker
                .poll_timeout()
                .map_or(give_up, |t| t.min(give_up));
            let wait = wake.saturating_duration_since(now);
            self.stream
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => self.broker.handle_eof(),
                Ok(n) => self.broker.handle_input(&chunk[..n], Instant::now()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    self.broker.handle_timeout(Instant::now())
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Handles an event that is not the one awaited: serves calls on the mind.
    fn background(&mut self, event: Event, mind: i64) -> Result<(), Error> {
        match event {
            Event::Call(call) if call.object == ObjectId::Id(mind) => self.serve_mind(call),
            Event::Call(call) => {
                let method = String::from_utf8_lossy(&call.method).into_owned();
                self.reply(&call, Err(no_such_method(&method)))
            }
            Event::Closed(reason) => Err(format!("connection closed: {reason}").into()),
            // Answers to nothing awaited, released objects.
            _ => Ok(()),
        }
    }

    fn serve_mind(&mut self, call: Call) -> Result<(), Error> {
        let method = String::from_utf8_lossy(&call.method).into_owned();
        let shown: Vec<String> = call.args.iter().map(show).collect();
        println!("mind called: {method} {}", shown.join(" "));
        let result = match (method.as_str(), call.args.as_slice()) {
            ("hello", [greeting]) => match greeting.as_str_lossy() {
                Some(g) => Ok(Value::text(format!("hello from pbwire, answering {g}"))),
                None => Err(pb_error("hello takes a string")),
            },
            ("hello", _) => Err(pb_error("hello takes one argument")),
            _ => Err(no_such_method(&method)),
        };
        self.reply(&call, result)
    }

    fn reply(&mut self, call: &Call, result: Result<Value, Failure>) -> Result<(), Error> {
        if call.answer_required {
            self.broker.answer(call.request_id, result)?;
        }
        Ok(())
    }
}
