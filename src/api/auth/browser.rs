//! What keeps a web page in an operator's browser from using the API: the `Host` a
//! request names must be the API's own (an IP address, `localhost` or a configured
//! name), so a DNS-rebound name reaches nothing; a write from another origin is
//! refused; and a write must say it is JSON, which no cross-origin form or `no-cors`
//! fetch can send without a preflight the API never grants.

use crate::config::ApiConfig;
use axum::http::{header, HeaderMap};
use std::net::IpAddr;

/// The host part of a `Host` header, lowercase, without port or trailing dot.
fn host_name(host: &str) -> Option<String> {
    let host = host.trim().to_ascii_lowercase();
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            let (addr, _port) = v6.split_once(']')?;
            addr.parse::<std::net::Ipv6Addr>().ok()?;
            return Some(addr.to_owned());
        }
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return None,
            None => host.as_str(),
        },
    };
    Some(name.strip_suffix('.').unwrap_or(name).to_owned())
}

/// Whether the request names the API itself. An IP address cannot be rebound; a
/// name must be `localhost` or one of `[api] hosts`.
pub fn host_ok(headers: &HeaderMap, api: &ApiConfig) -> bool {
    let Some(name) = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(host_name)
    else {
        return false;
    };
    name.parse::<IpAddr>().is_ok() || name == "localhost" || api.hosts.contains(&name)
}

/// Whether a write may come from where the browser says it comes from: no `Origin`
/// (not a browser, or a same-origin navigation), the API's own origin, or one of
/// `[api] origins`. `Sec-Fetch-Site`, where sent, must say the same.
pub fn origin_ok(headers: &HeaderMap, api: &ApiConfig) -> bool {
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("\0"));
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    let Some(origin) = text(header::ORIGIN) else {
        return true;
    };
    let origin = origin.trim().to_ascii_lowercase();
    let own = text(header::HOST).map(|h| h.trim().to_ascii_lowercase());
    let addressed = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    (addressed.is_some() && addressed == own.as_deref()) || api.origins.contains(&origin)
}

/// Whether the body is declared JSON (`application/json`, parameters allowed).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn api(extra: &str) -> ApiConfig {
        crate::config::parse(&format!("[master]\ndata_dir = \"d\"\n{extra}"))
            .unwrap()
            .api
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn accepts_addresses_localhost_and_configured_names_as_host() {
        let api = api("[api]\nhosts = [\"CI.example.org\"]\n");
        for ok in [
            "127.0.0.1:8010",
            "127.0.0.1",
            "[::1]:8010",
            "10.1.2.3:80",
            "localhost:8010",
            "LocalHost",
            "ci.example.org:8010",
            "ci.example.org.",
        ] {
            assert!(host_ok(&headers(&[("host", ok)]), &api), "{ok}");
        }
        for bad in [
            "attacker.example:8010",
            "localhost.attacker.example",
            "ci.example.org.attacker.example",
            "127.0.0.1:80:80",
            "[::1",
            "",
        ] {
            assert!(!host_ok(&headers(&[("host", bad)]), &api), "{bad}");
        }
        assert!(!host_ok(&HeaderMap::new(), &api), "no Host");
    }

    #[test]
    fn accepts_only_the_api_s_own_or_configured_origins() {
        let api = api("[api]\norigins = [\"https://ci.example.org/\"]\n");
        let host = ("host", "127.0.0.1:8010");
        for ok in [
            headers(&[host]),
            headers(&[host, ("origin", "http://127.0.0.1:8010")]),
            headers(&[host, ("origin", "https://ci.example.org")]),
            headers(&[host, ("sec-fetch-site", "same-origin")]),
            headers(&[host, ("sec-fetch-site", "none")]),
        ] {
            assert!(origin_ok(&ok, &api), "{ok:?}");
        }
        for bad in [
            headers(&[host, ("origin", "http://attacker.example")]),
            headers(&[host, ("origin", "http://127.0.0.1:3000")]),
            headers(&[host, ("origin", "null")]),
            headers(&[host, ("origin", "127.0.0.1:8010")]),
            headers(&[host, ("sec-fetch-site", "cross-site")]),
            headers(&[host, ("sec-fetch-site", "same-site")]),
            headers(&[
                host,
                ("origin", "http://127.0.0.1:8010"),
                ("sec-fetch-site", "cross-site"),
            ]),
        ] {
            assert!(!origin_ok(&bad, &api), "{bad:?}");
        }
    }

    #[test]
    fn recognises_json_bodies() {
        assert!(is_json(&headers(&[("content-type", "application/json")])));
        assert!(is_json(&headers(&[(
            "content-type",
            "Application/JSON; charset=utf-8"
        )])));
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
        ] {
            assert!(!is_json(&headers(&[("content-type", bad)])), "{bad}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }
}
