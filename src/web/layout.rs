//! The frame every page shares (navigation, login state, style and script) and small
//! pieces of markup. maud escapes every value interpolated into a page.

use crate::config::{Role, Roles};
use crate::model::BuildResult;
use maud::{html, Markup, PreEscaped, DOCTYPE};

/// What a page shows depends on: the roles of who asks (none: a public read).
#[derive(Debug, Clone, Copy)]
pub struct Viewer(pub Option<Roles>);

impl Viewer {
    pub fn may(self, role: Role) -> bool {
        self.0.is_some_and(|r| r.allows(role))
    }
}

/// A whole page. `live`: the page follows the master's event stream, and reads its
/// sections marked `data-refresh` again when an event of a kind their `data-watch`
/// names arrives (every few seconds instead if the stream cannot be opened).
pub fn page(title: &str, viewer: Viewer, live: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · pbmaster" }
                // No favicon request (it would be sent to log in).
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/static/style.css";
                script src="/static/app.js" defer {}
            }
            body data-live=[live.then_some("true")] data-signed-in=[viewer.0.map(|_| "true")] {
                nav {
                    a.brand href="/" { "pbmaster" }
                    a href="/" { "Builders" }
                    a href="/builds" { "Builds" }
                    a href="/buildrequests" { "Requests" }
                    a href="/workers" { "Workers" }
                    a href="/latent" { "Latent" }
                    a href="/changes" { "Changes" }
                    span.session {
                        span #who {}
                        a #login href="/login" { "Log in" }
                        button #logout hidden { "Log out" }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A result in buildbot's colours; running or waiting when there is none yet.
pub fn result(r: Option<BuildResult>, finished: bool) -> Markup {
    match (r, finished) {
        (Some(r), _) => html! { span class=(format!("result {}", r.name())) { (r.name()) } },
        (None, false) => html! { span.result.running { "running" } },
        (None, true) => html! { span.result { "-" } },
    }
}

/// A time, shown relative to now by the script (absolute, in UTC, without it).
pub fn time(t: Option<f64>) -> Markup {
    match t {
        None => html! { "-" },
        Some(t) => html! { time data-t=(t) { (utc(t)) } },
    }
}

/// `YYYY-MM-DD HH:MM:SS` UTC.
pub fn utc(t: f64) -> String {
    let secs = t.max(0.0) as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to a date (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A duration between two times, or since `from` while running.
pub fn duration(from: f64, to: Option<f64>) -> Markup {
    match to {
        Some(to) => html! { (format_secs(to - from)) },
        None => html! { span data-since=(from) { "…" } },
    }
}

pub fn format_secs(s: f64) -> String {
    let s = s.max(0.0);
    match s {
        s if s < 60.0 => format!("{s:.1} s"),
        s if s < 3600.0 => format!("{} min {} s", (s / 60.0) as u64, (s % 60.0) as u64),
        s => format!(
            "{} h {} min",
            (s / 3600.0) as u64,
            (s % 3600.0 / 60.0) as u64
        ),
    }
}

/// JSON shown as text (escaped like any other value).
pub fn json(v: &serde_json::Value) -> Markup {
    html! { code { (v.to_string()) } }
}

/// Inline data for the script, escaped for a `<script type="application/json">`
/// element: `<` is written as `\u003c`, so no value can end the element.
pub fn data(id: &str, v: &serde_json::Value) -> Markup {
    let text = v.to_string().replace('<', "\\u003c");
    html! { script type="application/json" id=(id) { (PreEscaped(text)) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_escaping() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_709_251_199.0), "2024-02-29 23:59:59");
        assert_eq!(format_secs(75.0), "1 min 15 s");
        let s = json(&serde_json::json!({"x": "<script>"})).into_string();
        assert!(!s.contains("<script>"), "{s}");
        let d = data("d", &serde_json::json!("</script><b>")).into_string();
        assert!(!d.contains("</script><b>"), "{d}");
    }
}
