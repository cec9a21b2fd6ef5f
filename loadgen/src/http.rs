//! A minimal HTTP/1.1 POST over tokio, enough to force builds through a master's API
//! (pbmaster's `/api/builders/{name}/force`, or the small endpoint the benchmark adds
//! to a buildbot master) without another dependency.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes of response kept: the status line and a short body are all that is needed.
const MAX_RESPONSE: usize = 64 * 1024;

/// POSTs `body` (JSON) to an `http://host:port/path` URL; returns the status code and
/// the response body. Only plain HTTP on an explicit host:port is supported.
pub async fn post(url: &str, body: &str, timeout: Duration) -> Result<(u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http:// URL: {url}"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    // pbmaster's API needs a token for writes; the load generator takes it from the
    // same variable as pbmaster's CLI.
    let auth = std::env::var("PBMASTER_TOKEN")
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         {auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut s = TcpStream::connect(host).await.map_err(|e| e.to_string())?;
        s.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 || response.len() >= MAX_RESPONSE {
                break;
            }
            response.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, String>(response)
    };
    let response = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| "timed out".to_owned())??;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad HTTP response: {:.80}", text))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
