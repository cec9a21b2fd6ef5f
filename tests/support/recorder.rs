//! A local HTTP server standing in for GitHub, GitLab or a push endpoint: it records
//! every request as it came (method, path, headers, body) and answers each with the
//! next status of its script (then with the last one for ever).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// Largest request body accepted (reports are small).
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Names lowercase.
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
    /// What it was answered.
    pub status: u16,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
pub struct Recorder {
    pub url: String,
    seen: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Mutex<Vec<u16>>>,
}

impl Recorder {
    /// Listens on loopback, answering `script` in order (the last one repeats).
    pub fn start(script: &[u16]) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let r = Recorder {
            url,
            seen: Arc::default(),
            script: Arc::new(Mutex::new(script.to_vec())),
        };
        let me = r.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                me.serve(stream);
            }
        });
        r
    }

    /// From now on, answer with `status`.
    pub fn answer(&self, status: u16) {
        *self.script.lock().expect("script") = vec![status];
    }

    pub fn seen(&self) -> Vec<Recorded> {
        self.seen.lock().expect("seen").clone()
    }

    fn next_status(&self) -> u16 {
        let mut s = self.script.lock().expect("script");
        if s.len() > 1 {
            s.remove(0)
        } else {
            s.first().copied().unwrap_or(201)
        }
    }

    fn serve(&self, stream: std::net::TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let len = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0)
            .min(MAX_BODY);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let status = self.next_status();
        self.seen.lock().expect("seen").push(Recorded {
            method,
            path,
            headers,
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            status,
        });
        let extra = if status == 429 {
            "Retry-After: 1\r\n"
        } else {
            ""
        };
        let answer = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        let mut stream = stream;
        let _ = stream.write_all(answer.as_bytes());
    }
}
