//! HTTP/1.1 requests written byte by byte, so a test controls every header (`Host`,
//! `Origin`, `Content-Type`, `Authorization`) as a browser or an attacker would send
//! them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// An answer: status, headers (names lowercase) and the body as JSON (`Null` if not).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
    /// The body as text (lossily decoded), for answers that are not JSON.
    pub text: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `method path` to `api` (`http://host:port`) with exactly `headers` plus
/// `Host` (the API's own unless given), `Content-Length` and `Connection: close`.
pub fn request(
    api: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let addr = api.trim_start_matches("http://");
    let mut text = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        text.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut stream = TcpStream::connect(addr).expect("connect to the API");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream.write_all(text.as_bytes()).expect("send");
    stream.write_all(body).expect("send body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("answer");
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {response}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {head}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        text: body.to_owned(),
    }
}

/// One server-sent event: its `event`, `id` and `data` fields (data lines joined by
/// `\n`).
#[derive(Debug, Clone, Default)]
pub struct SseMessage {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

/// A server-sent event stream read as a browser's `EventSource` would, from a
/// chunked HTTP/1.1 answer.
pub struct EventStream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: std::io::BufReader<TcpStream>,
    /// Body bytes received and not yet parsed into events.
    pending: Vec<u8>,
    ended: bool,
}

impl EventStream {
    /// `GET path` with `headers` (and the API's own `Host`); reads the head only.
    pub fn open(api: &str, path: &str, headers: &[(&str, &str)]) -> EventStream {
        use std::io::BufRead;
        let addr = api.trim_start_matches("http://");
        let mut text =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str("\r\n");
        let mut stream = TcpStream::connect(addr).expect("connect to the API");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        stream.write_all(text.as_bytes()).expect("send");
        let mut reader = std::io::BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status: {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        EventStream {
            status,
            headers,
            reader,
            pending: Vec::new(),
            ended: false,
        }
    }

    /// The next event, skipping comments (keep-alives); `None` once the server ended
    /// the stream.
    pub fn next_event(&mut self) -> Option<SseMessage> {
        loop {
            if let Some(end) = find(&self.pending, b"\n\n") {
                let block: Vec<u8> = self.pending.drain(..end + 2).collect();
                let text = String::from_utf8(block).expect("events are UTF-8");
                let mut msg = SseMessage::default();
                let mut data = Vec::new();
                for line in text.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "event" => msg.event = value.to_owned(),
                        "id" => msg.id = Some(value.to_owned()),
                        "data" => data.push(value.to_owned()),
                        _ => {}
                    }
                }
                if data.is_empty() && msg.event.is_empty() {
                    continue;
                }
                msg.data = data.join("\n");
                if msg.event.is_empty() {
                    msg.event = "message".into();
                }
                return Some(msg);
            }
            if self.ended || !self.read_chunk() {
                return None;
            }
        }
    }

    /// Events until one `pick` accepts (returned); panics if the stream ends first.
    pub fn until(&mut self, what: &str, mut pick: impl FnMut(&SseMessage) -> bool) -> SseMessage {
        loop {
            let msg = self
                .next_event()
                .unwrap_or_else(|| panic!("the stream ended before {what}"));
            if pick(&msg) {
                return msg;
            }
        }
    }

    /// One chunk of the chunked body; false at its end.
    fn read_chunk(&mut self) -> bool {
        use std::io::BufRead;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => {
                self.ended = true;
                return false;
            }
            Ok(_) => {}
        }
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .unwrap_or_else(|_| panic!("not a chunk size: {line:?}"));
        if size == 0 {
            self.ended = true;
            return false;
        }
        let mut chunk = vec![0; size + 2];
        self.reader.read_exact(&mut chunk).expect("chunk");
        chunk.truncate(size);
        self.pending.extend_from_slice(&chunk);
        true
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
