use super::*;
use axum::http::HeaderValue;

const CI: &str = "ci-token-0123456789";
const READER: &str = "reader-token-0123456789";
const OPS: &str = "ops-token-0123456789";

fn guard(api: &str) -> Guard {
    let text = format!(
        "[master]\ndata_dir = \"d\"\n{api}\n\
         [[api_token]]\nname = \"ci\"\nroles = [\"force\", \"read\"]\ntoken = \"{CI}\"\n\
         [[api_token]]\nname = \"reader\"\nroles = [\"read\"]\ntoken = \"{READER}\"\n\
         [[api_token]]\nname = \"ops\"\nroles = [\"admin\"]\ntoken = \"{OPS}\"\n"
    );
    Guard::from_config(&crate::config::parse(&text).unwrap().api).unwrap()
}

fn headers(token: Option<&str>, extra: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("127.0.0.1:8010"));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Some(t) = token {
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
    }
    for (k, v) in extra {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

const LOOPBACK: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
const REMOTE: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)));
const FORCE: Need = Need::Write(Role::Force);

fn status(g: &Guard, h: &HeaderMap, need: Need, ip: Option<IpAddr>) -> u16 {
    match admit_as(g, h, need, ip, Instant::now()) {
        Ok(_) => 200,
        Err((s, _)) => s.as_u16(),
    }
}

#[test]
fn classifies_every_route() {
    let post = Method::POST;
    assert_eq!(need(&post, "/api/builders/{name}/force"), Some(FORCE));
    assert_eq!(
        need(&post, "/api/builds/{id}/stop"),
        Some(Need::Write(Role::Stop))
    );
    assert_eq!(
        need(&post, "/api/changes"),
        Some(Need::Write(Role::Changes))
    );
    assert_eq!(need(&post, "/api/hooks/github"), None);
    assert_eq!(need(&Method::GET, "/api/changes"), Some(Need::Read));
    assert_eq!(need(&Method::HEAD, "/api/builds"), Some(Need::Read));
    for (m, route) in [
        (Method::POST, "/api/builds"),
        (Method::DELETE, "/api/builds/{id}"),
        (Method::PUT, "/api/changes"),
        (Method::OPTIONS, "/api/builders/{name}/force"),
    ] {
        assert_eq!(
            need(&m, route),
            Some(Need::Write(Role::Admin)),
            "{m} {route}"
        );
    }
}

#[test]
fn writes_need_a_token_with_the_role() {
    let g = guard("");
    assert_eq!(status(&g, &headers(None, &[]), FORCE, LOOPBACK), 401);
    assert_eq!(
        status(
            &g,
            &headers(Some("nope-0123456789abc"), &[]),
            FORCE,
            LOOPBACK
        ),
        401
    );
    assert_eq!(
        status(&g, &headers(Some(READER), &[]), FORCE, LOOPBACK),
        403
    );
    assert_eq!(status(&g, &headers(Some(CI), &[]), FORCE, LOOPBACK), 200);
    assert_eq!(
        status(&g, &headers(Some(CI), &[]), Need::Write(Role::Stop), REMOTE),
        403
    );
    for role in Role::ALL {
        assert_eq!(
            status(&g, &headers(Some(OPS), &[]), Need::Write(role), REMOTE),
            200
        );
    }
    let basic = headers(None, &[("authorization", "Basic Y2k6eA==")]);
    assert_eq!(status(&g, &basic, FORCE, LOOPBACK), 401);
    let ok = admit_as(&g, &headers(Some(CI), &[]), FORCE, LOOPBACK, Instant::now());
    assert_eq!(ok.map(|(name, _)| name), Ok(Some("ci".to_owned())));
}

#[test]
fn writes_must_be_json_from_the_api_s_own_origin_and_host() {
    let g = guard("");
    let form = headers(
        Some(CI),
        &[("content-type", "application/x-www-form-urlencoded")],
    );
    assert_eq!(status(&g, &form, FORCE, LOOPBACK), 415);
    let mut none = headers(Some(CI), &[]);
    none.remove("content-type");
    assert_eq!(status(&g, &none, FORCE, LOOPBACK), 415);
    let foreign = headers(Some(CI), &[("origin", "http://attacker.example")]);
    assert_eq!(status(&g, &foreign, FORCE, LOOPBACK), 403);
    let rebound = headers(Some(CI), &[("host", "attacker.example:8010")]);
    assert_eq!(status(&g, &rebound, FORCE, LOOPBACK), 403);
    assert_eq!(status(&g, &rebound, Need::Read, LOOPBACK), 403, "reads too");
    let own = headers(Some(CI), &[("origin", "http://127.0.0.1:8010")]);
    assert_eq!(status(&g, &own, FORCE, LOOPBACK), 200);
}

#[test]
fn reads_follow_public_read() {
    let loopback = guard("");
    assert_eq!(
        status(&loopback, &headers(None, &[]), Need::Read, LOOPBACK),
        200
    );
    let mapped = Some("::ffff:127.0.0.1".parse().unwrap());
    assert_eq!(
        status(&loopback, &headers(None, &[]), Need::Read, mapped),
        200
    );
    assert_eq!(
        status(&loopback, &headers(None, &[]), Need::Read, REMOTE),
        401
    );
    assert_eq!(
        status(&loopback, &headers(None, &[]), Need::Read, None),
        401
    );
    assert_eq!(
        status(&loopback, &headers(Some(READER), &[]), Need::Read, REMOTE),
        200
    );
    let wrong = headers(Some("wrong-0123456789abc"), &[]);
    assert_eq!(
        status(&loopback, &wrong, Need::Read, LOOPBACK),
        401,
        "a wrong token is wrong anywhere"
    );

    let all = guard("[api]\npublic_read = \"all\"");
    assert_eq!(status(&all, &headers(None, &[]), Need::Read, REMOTE), 200);
    assert_eq!(status(&all, &headers(None, &[]), FORCE, REMOTE), 401);

    let closed = guard("[api]\npublic_read = \"none\"");
    assert_eq!(
        status(&closed, &headers(None, &[]), Need::Read, LOOPBACK),
        401
    );
    let ops = guard("[api]\npublic_read = \"none\"");
    assert_eq!(
        status(&ops, &headers(Some(OPS), &[]), Need::Read, LOOPBACK),
        200
    );
    let force_only =
        "[[api_token]]\nname = \"f\"\nroles = [\"force\"]\ntoken = \"force-only-0123456789\"";
    let g = guard(&format!("[api]\npublic_read = \"none\"\n{force_only}"));
    let h = headers(Some("force-only-0123456789"), &[]);
    assert_eq!(status(&g, &h, Need::Read, LOOPBACK), 403);
}

#[test]
fn throttles_wrong_tokens_even_the_right_one_after() {
    let g = guard("");
    let wrong = headers(Some("wrong-0123456789abc"), &[]);
    let now = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(status(&g, &wrong, FORCE, REMOTE));
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
    let right = admit_as(&g, &headers(Some(CI), &[]), FORCE, REMOTE, now);
    assert_eq!(right.map_err(|e| e.0.as_u16()), Err(429));
    let loopback = admit_as(&g, &headers(Some(CI), &[]), FORCE, LOOPBACK, now);
    assert!(loopback.is_ok(), "other addresses are not held");
    let other = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 8)));
    for _ in 0..20 {
        let missing = admit_as(&g, &headers(None, &[]), FORCE, other, now);
        assert_eq!(missing.map_err(|e| e.0.as_u16()), Err(401));
    }
    assert!(
        admit_as(&g, &headers(Some(CI), &[]), FORCE, other, now).is_ok(),
        "no token is no guess"
    );
}

/// [`admit`] with the method a route of that need is called with.
fn admit_as(
    guard: &Guard,
    headers: &HeaderMap,
    need: Need,
    ip: Option<IpAddr>,
    now: Instant,
) -> Result<(Option<String>, Option<Roles>), Refusal> {
    let method = match need {
        Need::Read => Method::GET,
        _ => Method::POST,
    };
    admit(guard, headers, need, &method, ip, now)
}
