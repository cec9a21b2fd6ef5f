//! Sending changes the way real tools do: `buildbot sendchange` from the buildbot
//! master venv, and HTTP posts that may fail (the master's helpers expect success).

use super::workers::require_peer;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};

/// Runs `buildbot sendchange --master ADDR --auth AUTH ARGS...` and returns its output.
/// `buildbot sendchange` exits 0 even when the change was not sent, so callers check
/// its stdout for "change sent successfully".
pub fn sendchange(master: SocketAddr, auth: &str, args: &[&str]) -> Output {
    let venv = require_peer("buildbot-master");
    Command::new(venv.join("bin/buildbot"))
        .arg("sendchange")
        .arg("--master")
        .arg(master.to_string())
        .arg("--auth")
        .arg(auth)
        .args(args)
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .env("VIRTUAL_ENV", &venv)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("buildbot sendchange runs")
}

/// True when sendchange reported success.
pub fn sent(output: &Output) -> bool {
    String::from_utf8_lossy(&output.stdout).contains("change sent successfully")
}

/// POSTs raw bytes with extra headers (and the test masters' token, unless they
/// include an `authorization` header); returns the status and the JSON body (or
/// `Null` if it is not JSON), whatever the status. Panics if there is no answer.
pub fn post_raw(
    api: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, serde_json::Value) {
    try_post_raw(api, path, headers, body).unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// [`post_raw`], returning a transport error (e.g. the server closing the connection
/// on an oversized body before reading all of it) instead of panicking.
pub fn try_post_raw(
    api: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, serde_json::Value), ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent
        .post(&format!("{api}{path}"))
        .header("content-type", "application/json");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    {
        req = req.header("authorization", super::master::bearer());
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.send(body)?;
    let status = resp.status().as_u16();
    let value = resp
        .body_mut()
        .read_json()
        .unwrap_or(serde_json::Value::Null);
    Ok((status, value))
}

/// The `X-Hub-Signature-256` GitHub sends: `sha256=` and the hex HMAC-SHA256 of the
/// body under the secret.
pub fn github_signature(secret: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
