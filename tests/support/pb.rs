//! A raw PB client for tests that play a peer by hand: hostile input, impostor logins.

use bytes::{Bytes, BytesMut};
use pbwire::banana::{self, negotiation, Decoder, Dialect, Element};
use pbwire::jelly::{Failure, Security, Value};
use pbwire::pb::{self, Call, Message, ObjectId};
use pbwire::Limits;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A raw client that has done the dialect negotiation.
pub struct Raw {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut raw = Raw {
            stream,
            decoder: Decoder::new(Limits::default()),
            buf: BytesMut::new(),
        };
        let offer = raw.next().expect("the master offers dialects");
        assert_eq!(negotiation::choose(&offer), Ok(Dialect::Pb));
        raw.send_element(&negotiation::choice(Dialect::Pb));
        raw.decoder.set_dialect(Dialect::Pb);
        assert_eq!(raw.message(), Some(Message::Version(6)));
        raw.send(&Message::Version(6));
        raw
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        // The master may already have closed; that is what some cases expect.
        let _ = self.stream.write_all(bytes);
    }

    pub fn send_element(&mut self, e: &Element) {
        self.send_bytes(&banana::encode_to_vec(e).expect("encodes"));
    }

    pub fn send(&mut self, m: &Message) {
        self.send_element(&pb::encode(m, Dialect::Pb).expect("encodes"));
    }

    /// The next element, or None at EOF.
    pub fn next(&mut self) -> Option<Element> {
        loop {
            if let Some(e) = self
                .decoder
                .decode(&mut self.buf)
                .expect("the master sends valid banana")
            {
                return Some(e);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub fn message(&mut self) -> Option<Message> {
        self.next()
            .map(|e| pb::decode(&e, &Security::default()).expect("the master sends valid PB"))
    }

    /// True when the master closes the connection (anything it sends first is skipped).
    pub fn closed(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
        false
    }
}

pub fn call(request_id: i64, object: ObjectId, method: &'static str, args: Vec<Value>) -> Message {
    Message::Call(Call {
        request_id,
        object,
        method: Bytes::from_static(method.as_bytes()),
        answer_required: true,
        args,
        kwargs: vec![],
    })
}

pub fn expect_error(raw: &mut Raw, request: i64, type_name: &str) {
    match raw.message() {
        Some(Message::Error {
            request_id,
            failure,
        }) => {
            assert_eq!(request_id, request);
            let f = Failure::from_value(&failure).expect("a CopyableFailure");
            assert_eq!(f.type_name, type_name, "{f:?}");
        }
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// Logs in as `name` with `password` on a fresh connection; the failure, if refused.
pub fn try_login(addr: SocketAddr, name: &str, password: &str) -> Result<(), Failure> {
    let mut raw = Raw::connect(addr);
    raw.send(&call(
        1,
        ObjectId::Root,
        "login",
        vec![Value::bytes(name.as_bytes().to_vec())],
    ));
    let Some(Message::Answer { value, .. }) = raw.message() else {
        panic!("no challenge")
    };
    let (challenge, challenger) = match value.as_seq() {
        Some([c, Value::Remote(id)]) => (c.as_bytes().unwrap_or_default().to_vec(), *id),
        other => panic!("bad challenge answer {other:?}"),
    };
    let response = pbwire::login::response(password.as_bytes(), &challenge);
    raw.send(&call(
        2,
        ObjectId::Id(challenger),
        "respond",
        vec![Value::bytes(response.to_vec()), Value::None],
    ));
    match raw.message() {
        Some(Message::Error { failure, .. }) => {
            Err(Failure::from_value(&failure).expect("a CopyableFailure"))
        }
        // Accepted (the master then closes: no bot object to attach) or an answer.
        _ => Ok(()),
    }
}
