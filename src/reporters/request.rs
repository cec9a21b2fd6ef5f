//! The exact HTTP request each service expects for a queued report (pure, so tests
//! check it without a network):
//!
//! - GitHub: `POST {api}/repos/{owner}/{repo}/statuses/{sha}` with `Authorization:
//!   Bearer`, `Accept: application/vnd.github+json`, and `{state, target_url,
//!   description, context}`; state `pending` while running, then `success`
//!   (success, warnings, skipped), `failure`, `error` (exception, cancelled), or
//!   `pending` again for a retry.
//! - GitLab: `POST {api}/api/v4/projects/{path, URL-encoded}/statuses/{sha}` with
//!   `PRIVATE-TOKEN` and `{state, name, target_url, description, ref}`; state
//!   `running`, then `success`, `failed`, `canceled`, or `pending` for a retry.
//! - The JSON push: `POST {url}` with the payload as queued (`Authorization: Bearer`
//!   if a token is set).

use super::repo;
use crate::config::{ReporterConfig, ReporterKind};
use crate::runner::Properties;
use serde_json::{json, Value};

/// GitHub refuses longer descriptions.
pub const MAX_DESCRIPTION: usize = 140;

/// A request to send.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    pub url: String,
    /// Header values may hold the token: never logged.
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
}

pub const USER_AGENT: &str = concat!("pbmaster/", env!("CARGO_PKG_VERSION"));

/// The request for `payload`, with `token` (already read from the secrets).
pub fn build(
    r: &ReporterConfig,
    payload: &Value,
    token: Option<&str>,
) -> Result<HttpRequest, String> {
    let mut headers = vec![
        ("User-Agent", USER_AGENT.to_owned()),
        ("Content-Type", "application/json".to_owned()),
    ];
    match &r.kind {
        ReporterKind::GitHub => {
            let (repository, sha) = super::select::commit_of(r, payload)?;
            let (owner, name) = repo::github(repository)?;
            headers.push(("Accept", "application/vnd.github+json".to_owned()));
            headers.push(("X-GitHub-Api-Version", "2022-11-28".to_owned()));
            if let Some(t) = token {
                headers.push(("Authorization", format!("Bearer {t}")));
            }
            let mut body = json!({
                "state": github_state(payload),
                "description": description(payload),
                "context": context(r, payload),
            });
            if let Some(u) = target_url(r, payload) {
                body["target_url"] = Value::String(u);
            }
            Ok(HttpRequest {
                url: format!("{}/repos/{owner}/{name}/statuses/{sha}", r.url),
                headers,
                body,
            })
        }
        ReporterKind::GitLab => {
            let (repository, sha) = super::select::commit_of(r, payload)?;
            let project = repo::gitlab(repository)?;
            if let Some(t) = token {
                headers.push(("PRIVATE-TOKEN", t.to_owned()));
            }
            let mut body = json!({
                "state": gitlab_state(payload),
                "name": context(r, payload),
                "description": description(payload),
            });
            if let Some(b) = payload["branch"].as_str() {
                body["ref"] = Value::String(b.to_owned());
            }
            if let Some(u) = target_url(r, payload) {
                body["target_url"] = Value::String(u);
            }
            Ok(HttpRequest {
                url: format!("{}/api/v4/projects/{project}/statuses/{sha}", r.url),
                headers,
                body,
            })
        }
        ReporterKind::Http => {
            if let Some(t) = token {
                headers.push(("Authorization", format!("Bearer {t}")));
            }
            let mut body = payload.clone();
            if let Some(u) = target_url(r, payload) {
                body["url"] = Value::String(u);
            }
            Ok(HttpRequest {
                url: r.url.clone(),
                headers,
                body,
            })
        }
        ReporterKind::Email(_) => Err("an email reporter sends no HTTP request".into()),
    }
}

fn result(payload: &Value) -> Option<&str> {
    payload["build"]["result"].as_str()
}

fn github_state(payload: &Value) -> &'static str {
    match result(payload) {
        None | Some("retry") => "pending",
        Some("success" | "warnings" | "skipped") => "success",
        Some("failure") => "failure",
        Some(_) => "error",
    }
}

fn gitlab_state(payload: &Value) -> &'static str {
    match result(payload) {
        None => "running",
        Some("retry") => "pending",
        Some("success" | "warnings" | "skipped") => "success",
        Some("cancelled") => "canceled",
        Some(_) => "failed",
    }
}

/// "Build #3 started" or "Build #3: failure (why)", cut to [`MAX_DESCRIPTION`].
pub fn description(payload: &Value) -> String {
    let number = &payload["build"]["number"];
    let text = match result(payload) {
        None => format!("Build #{number} started"),
        Some(res) => match payload["build"]["reason"].as_str() {
            Some(why) => format!("Build #{number}: {res} ({why})"),
            None => format!("Build #{number}: {res}"),
        },
    };
    truncate(&text, MAX_DESCRIPTION)
}

/// At most `max` characters, ending in `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The context template with the build's properties (and builder name, number).
fn context(r: &ReporterConfig, payload: &Value) -> String {
    let mut props = Properties::default();
    if let Value::Object(m) = &payload["properties"] {
        for (k, v) in m {
            props.set(k, v.clone(), "request");
        }
    }
    props.set("buildername", payload["build"]["builder"].clone(), "build");
    props.set("buildnumber", payload["build"]["number"].clone(), "build");
    props.set("workername", payload["build"]["worker"].clone(), "build");
    props.render(&r.context).unwrap_or_else(|_| {
        format!(
            "buildbot/{}",
            payload["build"]["builder"].as_str().unwrap_or("")
        )
    })
}

/// The build's page, when the reporter knows where the web pages are.
pub fn target_url(r: &ReporterConfig, payload: &Value) -> Option<String> {
    let base = r.web_url.as_ref()?;
    Some(format!("{base}/builds/{}", payload["build"]["id"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reporter(kind: &str, extra: &str) -> ReporterConfig {
        crate::config::parse(&format!(
            "[master]\ndata_dir = \"d\"\n[[worker]]\nname = \"w\"\npassword = \"p\"\n\
             [[builder]]\nname = \"b\"\nworkers = [\"w\"]\n[[builder.step]]\ncommand = \"true\"\n\
             [[reporter]]\nname = \"r\"\nkind = \"{kind}\"\ntoken = \"%(secret:t)s\"\n{extra}"
        ))
        .unwrap()
        .reporters
        .remove(0)
    }

    fn payload(result: Option<&str>) -> Value {
        json!({
            "event": if result.is_some() { "finished" } else { "started" },
            "build": {"id": 9, "builder": "b", "number": 4, "worker": "w", "result": result, "reason": null},
            "revision": "0123456789abcdef0123456789abcdef01234567",
            "repository": "git@github.com:octo/hello.git",
            "branch": "main",
            "properties": {"revision": "0123456789abcdef0123456789abcdef01234567",
                           "repository": "git@github.com:octo/hello.git", "branch": "main"},
        })
    }

    #[test]
    fn github_status_as_the_api_expects() {
        let r = reporter(
            "github",
            "url = \"https://ghe.example.org/api/v3/\"\nweb_url = \"https://ci.example.org\"\n",
        );
        let req = build(&r, &payload(Some("warnings")), Some("tok")).unwrap();
        assert_eq!(
            req.url,
            "https://ghe.example.org/api/v3/repos/octo/hello/statuses/0123456789abcdef0123456789abcdef01234567"
        );
        assert!(req
            .headers
            .contains(&("Authorization", "Bearer tok".into())));
        assert!(req
            .headers
            .contains(&("Accept", "application/vnd.github+json".into())));
        assert_eq!(
            req.body,
            json!({"state": "success", "description": "Build #4: warnings",
                   "context": "buildbot/b", "target_url": "https://ci.example.org/builds/9"})
        );
        let states: Vec<&str> = [
            None,
            Some("failure"),
            Some("exception"),
            Some("cancelled"),
            Some("retry"),
        ]
        .into_iter()
        .map(|r| github_state(&payload(r)))
        .collect();
        assert_eq!(states, ["pending", "failure", "error", "error", "pending"]);
    }

    #[test]
    fn gitlab_status_as_the_api_expects() {
        let mut p = payload(None);
        p["repository"] = json!("https://gitlab.example.org/group/sub/proj.git");
        let r = reporter(
            "gitlab",
            "url = \"https://gitlab.example.org\"\ncontext = \"ci/%(prop:branch)s\"\n",
        );
        let req = build(&r, &p, Some("tok")).unwrap();
        assert_eq!(
            req.url,
            "https://gitlab.example.org/api/v4/projects/group%2Fsub%2Fproj/statuses/0123456789abcdef0123456789abcdef01234567"
        );
        assert!(req.headers.contains(&("PRIVATE-TOKEN", "tok".into())));
        assert_eq!(
            req.body,
            json!({"state": "running", "name": "ci/main", "description": "Build #4 started", "ref": "main"})
        );
        let states: Vec<&str> = [
            Some("success"),
            Some("failure"),
            Some("exception"),
            Some("cancelled"),
            Some("retry"),
        ]
        .into_iter()
        .map(|r| gitlab_state(&payload(r)))
        .collect();
        assert_eq!(
            states,
            ["success", "failed", "failed", "canceled", "pending"]
        );
    }

    #[test]
    fn long_descriptions_are_cut() {
        let mut p = payload(Some("failure"));
        p["build"]["reason"] = json!("x".repeat(500));
        let d = description(&p);
        assert_eq!(d.chars().count(), MAX_DESCRIPTION);
        assert!(d.ends_with('…'));
    }
}
