//! Hostile peers: malformed banana, forbidden jelly, wrong-phase and unknown calls,
//! floods. Each gets a clear refusal or a closed connection, and a real worker building
//! on another connection is not disturbed.

mod support;

use bytes::Bytes;
use pbwire::banana::{Dialect, Element};
use pbwire::jelly::Value;
use pbwire::pb::{Message, ObjectId};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::master::{test_dir, MasterProcess};
use support::pb::{call, expect_error, Raw};
use support::workers::{Generation, RunningWorker, WorkerOptions};

const BODY: &str = r#"
[[worker]]
name = "w1"
password = "pass"

[[builder]]
name = "chatty"
workers = ["w1"]

[[builder.step]]
name = "count"
command = "for i in $(seq 1 40); do echo line $i; sleep 0.1; done"
"#;

#[test]
fn hostile_peers_are_refused_without_disturbing_a_building_worker() {
    let dir = test_dir("hostile");
    let master = MasterProcess::start(&dir.join("master"), "", BODY);
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let mut worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", Duration::from_secs(60));
    let request = master.force("chatty");
    master.wait_running_build(request, Duration::from_secs(60));

    // Malformed banana: an unknown type byte.
    let mut raw = Raw::connect(master.pb);
    raw.send_bytes(&[0x01, 0xff]);
    assert!(raw.closed(), "unknown type byte");

    // A string header over 640 KiB, with no body: refused from the header alone.
    let mut raw = Raw::connect(master.pb);
    raw.send_bytes(&[0x01, 0x00, 0x28, 0x82]);
    assert!(raw.closed(), "oversized string");

    // Lists nested far past the depth limit.
    let mut raw = Raw::connect(master.pb);
    raw.send_bytes(&[0x01, 0x80].repeat(10_000));
    assert!(raw.closed(), "deep nesting");

    // A message larger than the per-message limit, as a list of maximal strings.
    let mut raw = Raw::connect(master.pb);
    let mut big = vec![0x10, 0x80];
    for _ in 0..16 {
        big.extend_from_slice(&[0x00, 0x00, 0x28, 0x82]);
        big.extend(std::iter::repeat_n(b'x', 640 * 1024));
    }
    raw.send_bytes(&big);
    assert!(raw.closed(), "oversized message");

    // Forbidden jelly inside a call.
    let mut raw = Raw::connect(master.pb);
    let class = Element::List(vec![
        Element::string(&b"class"[..], Dialect::Pb),
        Element::Bytes(Bytes::from_static(b"os.system")),
    ]);
    let evil = Element::List(vec![
        Element::string(&b"message"[..], Dialect::Pb),
        Element::int(1),
        Element::Bytes(Bytes::from_static(b"root")),
        Element::string(&b"login"[..], Dialect::Pb),
        Element::int(1),
        Element::List(vec![Element::string(&b"tuple"[..], Dialect::Pb), class]),
        Element::List(vec![Element::string(&b"dictionary"[..], Dialect::Pb)]),
    ]);
    raw.send_element(&evil);
    assert!(raw.closed(), "forbidden class");

    // Vocabulary before the dialect is chosen.
    let mut stream = TcpStream::connect(master.pb).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(&[0x01, 0x87]).expect("write");
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);

    // Unknown objects and methods are refused with errors; the connection stays.
    let mut raw = Raw::connect(master.pb);
    raw.send(&call(1, ObjectId::Id(77), "frobnicate", vec![]));
    expect_error(&mut raw, 1, "twisted.spread.pb.Error");
    raw.send(&call(2, ObjectId::Root, "frobnicate", vec![]));
    expect_error(&mut raw, 2, "twisted.spread.flavors.NoSuchMethod");
    // Answers and decrefs nobody asked for are ignored.
    raw.send(&Message::Answer {
        request_id: 99,
        value: Value::None,
    });
    raw.send(&Message::Decref(12345));
    // A wrong password is refused the retryable way.
    raw.send(&call(
        3,
        ObjectId::Root,
        "login",
        vec![Value::bytes(&b"w1"[..])],
    ));
    let Some(Message::Answer { value, .. }) = raw.message() else {
        panic!("no challenge")
    };
    let challenger = match value.as_seq() {
        Some([_, Value::Remote(id)]) => *id,
        other => panic!("bad challenge answer {other:?}"),
    };
    raw.send(&call(
        4,
        ObjectId::Id(challenger),
        "respond",
        vec![Value::bytes(vec![0u8; 16]), Value::None],
    ));
    expect_error(&mut raw, 4, "twisted.cred.error.UnauthorizedLogin");

    // A flood of logins: each holds an object; past the limit, the connection closes.
    let mut raw = Raw::connect(master.pb);
    for i in 0..3000 {
        raw.send(&call(
            10 + i,
            ObjectId::Root,
            "login",
            vec![Value::bytes(&b"w1"[..])],
        ));
    }
    assert!(raw.closed(), "login flood");

    // The real worker's build went on undisturbed, and the worker still builds.
    let r = master.wait_request(request, Duration::from_secs(60));
    assert_eq!(r["result"], "success", "{r}");
    let build = r["builds"][0]["id"].as_i64().expect("build");
    let out = master.output(build, 1, "stdout");
    assert_eq!(out.lines().count(), 40, "{out}");
    let again = master.wait_request(master.force("chatty"), Duration::from_secs(60));
    assert_eq!(again["result"], "success");
    assert!(worker.is_running());
}

#[test]
fn guessing_passwords_slows_down_and_the_right_password_still_gets_in() {
    let dir = test_dir("guessing");
    let master = MasterProcess::start(&dir.join("master"), "", BODY);
    for _ in 0..6 {
        let refused = support::pb::try_login(master.pb, "w1", "guess").expect_err("refused");
        assert_eq!(refused.type_name, "twisted.cred.error.UnauthorizedLogin");
    }
    let log = master.log();
    assert!(
        log.contains("refusals=4") && !log.contains("refusals=8"),
        "refusals are counted per address: {log}"
    );
    // From the same address, after all those refusals: the worker with the right
    // password attaches.
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let _worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", Duration::from_secs(60));
    assert!(
        !master.log().contains("refusals=8"),
        "the worker was not refused"
    );
}
