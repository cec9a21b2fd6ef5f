//! Mail about a build, sent over SMTP: STARTTLS by default (or TLS from the start,
//! or none for a loopback relay), AUTH PLAIN or LOGIN when a user is configured.
//! Blocking: called off the async threads.

use super::deliver::Failure;
use super::request::target_url;
use crate::config::{EmailSettings, ReporterConfig, SmtpSecurity};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use serde_json::Value;
use std::time::Duration;

/// The whole SMTP exchange must end within this.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// "[pbmaster] b #4: failure", and a plain-text body saying what, where and why.
pub fn compose(r: &ReporterConfig, payload: &Value) -> (String, String) {
    let b = &payload["build"];
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    };
    let result = b["result"].as_str().unwrap_or("started");
    let subject = format!(
        "[pbmaster] {} #{}: {result}",
        text(&b["builder"]),
        b["number"]
    );
    let mut body = format!(
        "Builder: {}\nBuild: #{}\nResult: {result}\nWorker: {}\n",
        text(&b["builder"]),
        b["number"],
        text(&b["worker"])
    );
    if let Some(why) = b["reason"].as_str() {
        body.push_str(&format!("Reason: {why}\n"));
    }
    for (label, key) in [
        ("Repository", "repository"),
        ("Branch", "branch"),
        ("Revision", "revision"),
        ("Project", "project"),
    ] {
        if let Some(v) = payload[key].as_str() {
            body.push_str(&format!("{label}: {v}\n"));
        }
    }
    if let Some(url) = target_url(r, payload) {
        body.push_str(&format!("\n{url}\n"));
    }
    // Header values are one line: a property with a newline must not add headers.
    let subject = subject.replace(['\r', '\n'], " ");
    (subject, body)
}

/// Sends the mail for `payload`; `password` already read from the secrets.
pub fn send(
    r: &ReporterConfig,
    e: &EmailSettings,
    payload: &Value,
    password: Option<&str>,
) -> Result<(), Failure> {
    let (subject, body) = compose(r, payload);
    let permanent = |m: String| Failure::permanent(m);
    let mut message = Message::builder()
        .from(
            e.from
                .parse::<Mailbox>()
                .map_err(|x| permanent(format!("from: {x}")))?,
        )
        .subject(subject);
    for to in &e.to {
        message = message.to(to
            .parse::<Mailbox>()
            .map_err(|x| permanent(format!("to: {x}")))?);
    }
    let message = message
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|x| permanent(format!("the mail: {x}")))?;
    let mut builder = SmtpTransport::builder_dangerous(e.host.clone())
        .port(e.port)
        .timeout(Some(SMTP_TIMEOUT));
    builder = match e.security {
        SmtpSecurity::None => builder.tls(Tls::None),
        SmtpSecurity::StartTls => builder.tls(Tls::Required(tls(e)?)),
        SmtpSecurity::Tls => builder.tls(Tls::Wrapper(tls(e)?)),
    };
    if let (Some(user), Some(pw)) = (&e.user, password) {
        builder = builder
            .credentials(Credentials::new(user.clone(), pw.to_owned()))
            .authentication(vec![Mechanism::Plain, Mechanism::Login]);
    }
    match builder.build().send(&message) {
        Ok(_) => Ok(()),
        // 5xx: the server will not take it, now or later.
        Err(x) if x.is_permanent() => Err(permanent(format!("SMTP: {x}"))),
        Err(x) => Err(Failure::transient(format!("SMTP: {x}"), None)),
    }
}

/// The TLS parameters: the usual roots, plus `smtp_ca_file`'s if set.
fn tls(e: &EmailSettings) -> Result<TlsParameters, Failure> {
    let mut params = TlsParameters::builder(e.host.clone());
    if let Some(path) = &e.ca_file {
        let pem = std::fs::read(path)
            .map_err(|x| Failure::transient(format!("{}: {x}", path.display()), None))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|x| Failure::permanent(format!("{}: {x}", path.display())))?;
        params = params.add_root_certificate(cert);
    }
    params
        .build_rustls()
        .map_err(|x| Failure::permanent(format!("TLS: {x}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subject_is_one_line_whatever_the_builder_name() {
        let r = crate::config::parse(
            "[master]\ndata_dir = \"d\"\n[[worker]]\nname = \"w\"\npassword = \"p\"\n\
             [[builder]]\nname = \"b\"\nworkers = [\"w\"]\n[[builder.step]]\ncommand = \"true\"\n\
             [[reporter]]\nname = \"m\"\nkind = \"email\"\nsmtp = \"h:25\"\nfrom = \"a@example.org\"\n\
             to = [\"b@example.org\"]\nweb_url = \"https://ci.example.org\"\n",
        )
        .unwrap()
        .reporters
        .remove(0);
        let p = json!({"build": {"id": 2, "builder": "b\r\nBcc: x@y", "number": 1, "worker": "w",
                       "result": "failure", "reason": "step 2 failed"},
                       "branch": "main", "revision": "abc1234"});
        let (subject, body) = compose(&r, &p);
        assert_eq!(subject, "[pbmaster] b  Bcc: x@y #1: failure");
        assert!(body.contains("Reason: step 2 failed\n"), "{body}");
        assert!(body.contains("Revision: abc1234\n"), "{body}");
        assert!(
            body.ends_with("https://ci.example.org/builds/2\n"),
            "{body}"
        );
    }
}
