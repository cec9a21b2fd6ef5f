//! `[[reporter]]`: services told about builds — GitHub and GitLab commit statuses,
//! mail over SMTP, a JSON push. Credentials are only ever `%(secret:NAME)s`
//! references, so the config (and its `Debug` form in logs) never holds them.

use super::error::Problems;
use super::file::ReporterTable;
use super::secrets::valid_name;
use crate::model::BuildResult;
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A day: a report not delivered by then is given up.
const DEFAULT_MAX_AGE: u64 = 86_400;

/// What a reporter talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReporterKind {
    GitHub,
    GitLab,
    Email(EmailSettings),
    Http,
}

/// How mail is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub user: Option<String>,
    /// The secret holding the password.
    pub password: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub from: String,
    pub to: Vec<String>,
}

/// The SMTP connection's protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain, then upgraded with STARTTLS (refused if the server does not offer it).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: for a relay on loopback only.
    None,
}

/// A build event a reporter may be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReportEvent {
    Started,
    Finished,
}

impl ReportEvent {
    pub fn name(self) -> &'static str {
        match self {
            ReportEvent::Started => "started",
            ReportEvent::Finished => "finished",
        }
    }
}

/// One `[[reporter]]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReporterConfig {
    pub name: String,
    pub kind: ReporterKind,
    /// Empty: every builder.
    pub builders: BTreeSet<String>,
    /// Empty: every result.
    pub results: BTreeSet<String>,
    pub events: BTreeSet<ReportEvent>,
    /// The API base or push URL, without a trailing `/`.
    pub url: String,
    /// The secret holding the token.
    pub token: Option<String>,
    pub context: String,
    pub web_url: Option<String>,
    pub max_age: u64,
}

impl ReporterConfig {
    /// Whether a build of `builder` ending with `result` (`None`: starting) is reported.
    pub fn wants(&self, event: ReportEvent, builder: &str, result: Option<BuildResult>) -> bool {
        self.events.contains(&event)
            && (self.builders.is_empty() || self.builders.contains(builder))
            && match result {
                Some(r) => self.results.is_empty() || self.results.contains(r.name()),
                None => true,
            }
    }

    /// Commit-status reporters need a revision; others report any build.
    pub fn needs_revision(&self) -> bool {
        matches!(self.kind, ReporterKind::GitHub | ReporterKind::GitLab)
    }

    /// The names of the secrets it uses.
    pub fn secrets(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.token.iter().map(String::as_str).collect();
        if let ReporterKind::Email(e) = &self.kind {
            out.extend(e.password.as_deref());
        }
        out
    }

    pub(super) fn resolve_paths(&mut self, base: &Path) {
        if let ReporterKind::Email(EmailSettings {
            ca_file: Some(p), ..
        }) = &mut self.kind
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

/// Every `[[reporter]]`; names unique.
pub(super) fn reporters(
    tables: &[ReporterTable],
    builders: &HashSet<&str>,
    problems: &mut Problems,
) -> Vec<ReporterConfig> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for t in tables {
        if !names.insert(t.name.get_ref().as_str()) {
            problems.at(
                t.name.span(),
                format!("reporter {:?} is defined twice", t.name.get_ref()),
            );
        }
        if let Some(r) = reporter(t, builders, problems) {
            out.push(r);
        }
    }
    out
}

fn reporter(
    t: &ReporterTable,
    builders: &HashSet<&str>,
    problems: &mut Problems,
) -> Option<ReporterConfig> {
    let name = t.name.get_ref().clone();
    let at = |s: &Spanned<String>| s.span();
    let kind_name = t.kind.get_ref().as_str();
    let default_url = match kind_name {
        "github" => Some("https://api.github.com"),
        "gitlab" => Some("https://gitlab.com"),
        "email" | "http" => None,
        other => {
            problems.at(
                at(&t.kind),
                format!("reporter {name:?}: kind {other:?}: github, gitlab, email or http"),
            );
            return None;
        }
    };
    let url = match (&t.url, default_url) {
        (Some(u), _) => {
            let text = u.get_ref().trim_end_matches('/').to_owned();
            if !(text.starts_with("https://") || text.starts_with("http://"))
                || text.contains(['?', '#', ' '])
            {
                problems.at(
                    at(u),
                    format!("reporter {name:?}: url {text:?} is not an http(s) base URL"),
                );
            }
            text
        }
        (None, Some(d)) => d.to_owned(),
        (None, None) if kind_name == "http" => {
            problems.at(
                at(&t.name),
                format!("reporter {name:?}: an http reporter needs url"),
            );
            String::new()
        }
        (None, None) => String::new(),
    };
    let token = t
        .token
        .as_ref()
        .and_then(|s| secret_ref(s, &name, "token", problems));
    if matches!(kind_name, "github" | "gitlab") && t.token.is_none() {
        problems.at(
            at(&t.name),
            format!("reporter {name:?}: token = \"%(secret:NAME)s\" is required"),
        );
    }
    let kind = match kind_name {
        "github" => ReporterKind::GitHub,
        "gitlab" => ReporterKind::GitLab,
        "http" => ReporterKind::Http,
        _ => ReporterKind::Email(email(t, &name, problems)?),
    };
    let mut filter = BTreeSet::new();
    for b in t.builders.iter().flatten() {
        if !builders.contains(b.get_ref().as_str()) {
            problems.at(
                b.span(),
                format!("reporter {name:?}: no builder {:?}", b.get_ref()),
            );
        }
        filter.insert(b.get_ref().clone());
    }
    let mut results = BTreeSet::new();
    for r in t.results.iter().flatten() {
        match r.get_ref().parse::<BuildResult>() {
            Ok(result) => {
                results.insert(result.name().to_owned());
            }
            Err(e) => problems.at(r.span(), format!("reporter {name:?}: {e}")),
        }
    }
    let events = match &t.events {
        None if matches!(kind, ReporterKind::Email(_)) => [ReportEvent::Finished].into(),
        None => [ReportEvent::Started, ReportEvent::Finished].into(),
        Some(list) => {
            let mut set = BTreeSet::new();
            for e in list {
                match e.get_ref().as_str() {
                    "started" => set.insert(ReportEvent::Started),
                    "finished" => set.insert(ReportEvent::Finished),
                    other => {
                        problems.at(
                            e.span(),
                            format!("reporter {name:?}: event {other:?}: started or finished"),
                        );
                        false
                    }
                };
            }
            set
        }
    };
    let web_url = t.web_url.as_ref().map(|u| {
        let text = u.get_ref().trim_end_matches('/').to_owned();
        if !(text.starts_with("https://") || text.starts_with("http://")) {
            problems.at(
                at(u),
                format!("reporter {name:?}: web_url is not an http(s) URL"),
            );
        }
        text
    });
    let max_age = t.max_age.as_ref().map_or(DEFAULT_MAX_AGE, |a| *a.get_ref());
    Some(ReporterConfig {
        context: t.context.as_ref().map_or_else(
            || "buildbot/%(prop:buildername)s".to_owned(),
            |c| c.get_ref().clone(),
        ),
        name,
        kind,
        builders: filter,
        results,
        events,
        url,
        token,
        web_url,
        max_age,
    })
}

/// The secret named by `%(secret:NAME)s`; anything else (a literal credential) is
/// refused, so credentials stay out of the config.
fn secret_ref(
    value: &Spanned<String>,
    reporter: &str,
    key: &str,
    problems: &mut Problems,
) -> Option<String> {
    let name = value
        .get_ref()
        .strip_prefix("%(secret:")
        .and_then(|r| r.strip_suffix(")s"))
        .filter(|n| valid_name(n));
    if name.is_none() {
        problems.at(
            value.span(),
            format!("reporter {reporter:?}: {key} must be \"%(secret:NAME)s\" (see [secrets])"),
        );
    }
    name.map(str::to_owned)
}

fn email(t: &ReporterTable, name: &str, problems: &mut Problems) -> Option<EmailSettings> {
    let Some(smtp) = &t.smtp else {
        problems.at(
            t.name.span(),
            format!("reporter {name:?}: email needs smtp = \"host:port\""),
        );
        return None;
    };
    let (host, port) = match smtp.get_ref().rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => match p.parse::<u16>() {
            Ok(port) if port > 0 => (h.trim_matches(['[', ']']).to_owned(), port),
            _ => {
                problems.at(smtp.span(), format!("reporter {name:?}: bad smtp port"));
                return None;
            }
        },
        _ => {
            problems.at(smtp.span(), format!("reporter {name:?}: smtp is host:port"));
            return None;
        }
    };
    let security = match t.smtp_security.as_ref().map(|s| s.get_ref().as_str()) {
        None | Some("starttls") => SmtpSecurity::StartTls,
        Some("tls") => SmtpSecurity::Tls,
        Some("none") => SmtpSecurity::None,
        Some(other) => {
            problems.at(
                t.smtp_security.as_ref().map_or(0..0, |s| s.span()),
                format!("reporter {name:?}: smtp_security {other:?}: starttls, tls or none"),
            );
            SmtpSecurity::StartTls
        }
    };
    let password = t
        .smtp_password
        .as_ref()
        .and_then(|s| secret_ref(s, name, "smtp_password", problems));
    if t.smtp_user.is_some() != t.smtp_password.is_some() {
        problems.at(
            t.name.span(),
            format!("reporter {name:?}: smtp_user and smtp_password go together"),
        );
    }
    let address = |s: &Spanned<String>, problems: &mut Problems| {
        let text = s.get_ref().clone();
        if text.parse::<lettre::Address>().is_err()
            && text.parse::<lettre::message::Mailbox>().is_err()
        {
            problems.at(
                s.span(),
                format!("reporter {name:?}: {text:?} is not a mail address"),
            );
        }
        text
    };
    let Some(from) = &t.from else {
        problems.at(
            t.name.span(),
            format!("reporter {name:?}: email needs from"),
        );
        return None;
    };
    let from = address(from, problems);
    let to: Vec<String> =
        t.to.iter()
            .flatten()
            .map(|s| address(s, problems))
            .collect();
    if to.is_empty() {
        problems.at(
            t.name.span(),
            format!("reporter {name:?}: email needs to = [...]"),
        );
    }
    Some(EmailSettings {
        host,
        port,
        security,
        user: t.smtp_user.as_ref().map(|u| u.get_ref().clone()),
        password,
        ca_file: t.smtp_ca_file.clone(),
        from,
        to,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    const BASE: &str = "[master]\ndata_dir = \"d\"\n[[worker]]\nname = \"w\"\npassword = \"p\"\n\
        [[builder]]\nname = \"b\"\nworkers = [\"w\"]\n[[builder.step]]\ncommand = \"true\"\n";

    fn errors(extra: &str) -> String {
        match parse(&format!("{BASE}{extra}")) {
            Ok(_) => String::new(),
            Err(e) => e
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    #[test]
    fn accepts_each_kind_with_defaults() {
        let c = parse(&format!(
            "{BASE}[[reporter]]\nname = \"gh\"\nkind = \"github\"\ntoken = \"%(secret:gh)s\"\n\
             [[reporter]]\nname = \"mail\"\nkind = \"email\"\nsmtp = \"mail.example.org:587\"\n\
             from = \"ci@example.org\"\nto = [\"dev@example.org\"]\n\
             [[reporter]]\nname = \"push\"\nkind = \"http\"\nurl = \"https://hooks.example.org/in/\"\n\
             builders = [\"b\"]\nresults = [\"failure\"]\nevents = [\"finished\"]\n"
        ))
        .unwrap();
        let [gh, mail, push] = &c.reporters[..] else {
            panic!("{:?}", c.reporters)
        };
        assert_eq!(gh.url, "https://api.github.com");
        assert_eq!(gh.token.as_deref(), Some("gh"));
        assert_eq!(gh.events.len(), 2);
        assert_eq!(
            mail.events.len(),
            1,
            "mail: finished builds only by default"
        );
        assert_eq!(push.url, "https://hooks.example.org/in");
        use crate::config::ReportEvent::*;
        use crate::model::BuildResult::*;
        assert!(push.wants(Finished, "b", Some(Failure)));
        assert!(!push.wants(Finished, "b", Some(Success)));
        assert!(!push.wants(Started, "b", None));
        assert!(gh.wants(Started, "other", None));
    }

    #[test]
    fn rejects_literal_tokens_unknown_kinds_and_builders() {
        let e = errors("[[reporter]]\nname = \"gh\"\nkind = \"github\"\ntoken = \"ghp_literal\"\n");
        assert!(e.contains("token must be \"%(secret:NAME)s\""), "{e}");
        let e = errors("[[reporter]]\nname = \"x\"\nkind = \"slack\"\n");
        assert!(e.contains("kind \"slack\""), "{e}");
        let e = errors(
            "[[reporter]]\nname = \"gh\"\nkind = \"github\"\ntoken = \"%(secret:t)s\"\nbuilders = [\"nope\"]\nresults = [\"bad\"]\n",
        );
        assert!(
            e.contains("no builder \"nope\"") && e.contains("unknown result"),
            "{e}"
        );
        let e = errors("[[reporter]]\nname = \"m\"\nkind = \"email\"\nsmtp = \"h:0\"\nfrom = \"a@b\"\nto = []\n");
        assert!(e.contains("bad smtp port"), "{e}");
        let e = errors("[[reporter]]\nname = \"h\"\nkind = \"http\"\nurl = \"ftp://x\"\n");
        assert!(e.contains("not an http(s) base URL"), "{e}");
    }
}
