//! The broker driven without sockets: a listener and a connector wired to each other
//! in memory, and raw bytes for what a well-behaved peer never sends.

use super::*;
use crate::pb::failures::unauthorized;
use std::time::Duration;

const PASSWORD: &[u8] = b"sekrit";

/// Deterministic "randomness": tests assert on behaviour, not on the bytes.
fn counter() -> impl Entropy {
    let mut n = 0u8;
    move |buf: &mut [u8]| {
        for b in buf.iter_mut() {
            n = n.wrapping_add(1);
            *b = n;
        }
        true
    }
}

fn listener_config() -> BrokerConfig {
    BrokerConfig {
        keepalive: Some(Keepalive {
            interval: Duration::from_secs(300),
            timeout: Duration::from_secs(60),
            method: Bytes::from_static(b"print"),
            kwargs: vec![(Value::text("message"), Value::text("keepalive"))],
        }),
        ..BrokerConfig::new(Side::Listener)
    }
}

struct Pair {
    listener: Broker,
    connector: Broker,
    now: Instant,
}

impl Pair {
    fn new() -> Pair {
        Pair::with(listener_config())
    }

    fn with(config: BrokerConfig) -> Pair {
        let now = Instant::now();
        let listener = Broker::new(config, now, counter());
        let connector = Broker::new(BrokerConfig::new(Side::Connector), now, counter());
        let mut pair = Pair {
            listener,
            connector,
            now,
        };
        pair.pump();
        pair
    }

    /// Moves bytes both ways until neither side has anything to send.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            if let Some(b) = self.listener.poll_transmit() {
                self.connector.handle_input(&b, self.now);
                moved = true;
            }
            if let Some(b) = self.connector.poll_transmit() {
                self.listener.handle_input(&b, self.now);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.listener.handle_timeout(self.now);
        self.connector.handle_timeout(self.now);
        self.pump();
    }

    /// Logs the connector in with `password` and returns the listener's attempt.
    fn attempt(&mut self, password: &[u8], mind: Option<i64>) -> LoginAttempt {
        self.connector.login("w1", password, mind).unwrap();
        self.pump();
        match events(&mut self.listener).as_slice() {
            [Event::Login(attempt)] => attempt.clone(),
            other => panic!("expected one login attempt, got {other:?}"),
        }
    }

    /// A completed login: (listener's avatar id, connector's mind id).
    fn logged_in(&mut self) -> (i64, i64) {
        let mind = self.connector.export().unwrap();
        let attempt = self.attempt(PASSWORD, Some(mind));
        assert!(attempt.verify(PASSWORD));
        let avatar = self.listener.accept_login(attempt.id, self.now).unwrap();
        self.pump();
        assert_eq!(
            events(&mut self.connector),
            vec![Event::LoggedIn { avatar }]
        );
        (avatar, mind)
    }
}

/// The only item of `items`.
fn one<T: std::fmt::Debug>(items: Vec<T>) -> T {
    assert_eq!(items.len(), 1, "expected exactly one: {items:?}");
    items.into_iter().next().unwrap()
}

fn events(b: &mut Broker) -> Vec<Event> {
    std::iter::from_fn(|| b.poll_event()).collect()
}

fn closed(b: &mut Broker) -> CloseReason {
    assert_eq!(b.phase(), Phase::Closing);
    match events(b).pop() {
        Some(Event::Closed(reason)) => reason,
        other => panic!("expected a close, got {other:?}"),
    }
}

/// A listener that has agreed on the `pb` dialect with a raw peer.
fn negotiated_listener(config: BrokerConfig) -> (Broker, Instant) {
    let now = Instant::now();
    let mut b = Broker::new(config, now, counter());
    b.poll_transmit();
    b.handle_input(b"\x02\x82pb", now);
    b.poll_transmit();
    (b, now)
}

fn wire(message: &Message) -> Vec<u8> {
    let element = pb::encode(message, Dialect::Pb).unwrap();
    banana::encode_to_vec(&element).unwrap()
}

fn call_bytes(request_id: i64, object: ObjectId, method: &'static str) -> Vec<u8> {
    wire(&Message::Call(Call {
        request_id,
        object,
        method: Bytes::from_static(method.as_bytes()),
        answer_required: true,
        args: vec![],
        kwargs: vec![],
    }))
}

/// The answer or error a listener sent, decoded.
fn sent_messages(b: &mut Broker) -> Vec<Message> {
    let mut decoder = Decoder::new(crate::Limits::default());
    decoder.set_dialect(Dialect::Pb);
    let mut buf = BytesMut::from(&b.poll_transmit().unwrap_or_default()[..]);
    let mut out = vec![];
    while let Some(e) = decoder.decode(&mut buf).unwrap() {
        out.push(pb::decode(&e, &Security::default()).unwrap());
    }
    out
}

#[test]
fn listener_offers_twisteds_dialects_at_once() {
    let mut b = Broker::new(listener_config(), Instant::now(), counter());
    assert_eq!(
        b.poll_transmit().as_deref(),
        Some(&b"\x02\x80\x02\x82pb\x04\x82none"[..])
    );
    assert_eq!(b.phase(), Phase::Dialect);
    assert_eq!(b.poll_transmit(), None);
}

#[test]
fn negotiates_then_exchanges_versions() {
    let mut p = Pair::new();
    assert_eq!(p.listener.phase(), Phase::LoginPending);
    assert_eq!(p.connector.phase(), Phase::LoginPending);
    assert!(events(&mut p.listener).is_empty());
    assert!(events(&mut p.connector).is_empty());
}

#[test]
fn accepts_a_login_and_answers_the_avatar() {
    let mut p = Pair::new();
    let (avatar, _) = p.logged_in();
    assert!(avatar > 0);
    assert_eq!(p.listener.phase(), Phase::LoggedIn);
    assert_eq!(p.connector.phase(), Phase::LoggedIn);
}

#[test]
fn wrong_password_is_refused_retryably_and_bounded() {
    let mut p = Pair::new();
    for n in 1..=3 {
        let attempt = p.attempt(b"wrong", None);
        assert!(!attempt.verify(PASSWORD));
        assert_eq!(attempt.name.as_ref(), b"w1");
        p.listener
            .refuse_login(attempt.id, unauthorized(""))
            .unwrap();
        p.pump();
        let refused = events(&mut p.connector);
        let Some(Event::LoginRefused(f)) = refused.first() else {
            panic!("expected a refusal, got {refused:?}");
        };
        assert!(f.check("twisted.cred.error.UnauthorizedLogin"));
        if n < 3 {
            assert_eq!(p.listener.phase(), Phase::LoginPending);
        }
    }
    assert_eq!(
        closed(&mut p.listener),
        CloseReason::Limit(Limit::LoginFailures(3))
    );
}

#[test]
fn a_login_is_decided_once() {
    let mut p = Pair::new();
    let attempt = p.attempt(PASSWORD, None);
    p.listener.accept_login(attempt.id, p.now).unwrap();
    assert_eq!(
        p.listener.accept_login(attempt.id, p.now),
        Err(BrokerError::UnknownLogin)
    );
    assert_eq!(
        p.listener.refuse_login(attempt.id, unauthorized("")),
        Err(BrokerError::UnknownLogin)
    );
}

#[test]
fn calls_go_both_ways_with_their_answers() {
    let mut p = Pair::new();
    let (avatar, mind) = p.logged_in();

    let id = p
        .connector
        .call(ObjectId::Id(avatar), "echo", vec![Value::int(7)], vec![])
        .unwrap();
    p.pump();
    let Event::Call(call) = one(events(&mut p.listener)) else {
        panic!("expected a call");
    };
    assert_eq!(
        (call.object, call.method.as_ref()),
        (ObjectId::Id(avatar), &b"echo"[..])
    );
    p.listener
        .answer(call.request_id, Ok(call.args[0].clone()))
        .unwrap();
    p.pump();
    assert_eq!(
        events(&mut p.connector),
        vec![Event::Answer {
            request_id: id,
            result: Ok(Value::int(7))
        }]
    );

    let id = p
        .listener
        .call(ObjectId::Id(mind), "getWorkerInfo", vec![], vec![])
        .unwrap();
    p.pump();
    let Event::Call(call) = one(events(&mut p.connector)) else {
        panic!("expected a call");
    };
    let failure = no_such_method("getWorkerInfo");
    p.connector
        .answer(call.request_id, Err(failure.clone()))
        .unwrap();
    p.pump();
    let Event::Answer {
        request_id,
        result: Err(got),
    } = one(events(&mut p.listener))
    else {
        panic!("expected a failed answer");
    };
    assert_eq!(request_id, id);
    assert_eq!(
        (got.type_name, got.parents),
        (failure.type_name, failure.parents)
    );
    assert_eq!(p.listener.pending_calls(), 0);
}

#[test]
fn calls_to_unknown_objects_are_refused_and_the_connection_stays() {
    let (mut b, now) = negotiated_listener(listener_config());
    b.handle_input(&call_bytes(1, ObjectId::Id(99), "anything"), now);
    let Message::Error {
        request_id: 1,
        failure,
    } = one(sent_messages(&mut b))
    else {
        panic!("expected an error answer");
    };
    let f = Failure::from_value(&failure).unwrap();
    assert_eq!(
        (f.type_name.as_str(), f.value.as_str()),
        ("twisted.spread.pb.Error", "Invalid Object ID")
    );
    assert_eq!(b.phase(), Phase::LoginPending);
    assert!(events(&mut b).is_empty());
}

#[test]
fn other_root_methods_go_to_the_application() {
    let (mut b, now) = negotiated_listener(listener_config());
    b.handle_input(&call_bytes(1, ObjectId::Root, "whoami"), now);
    let Event::Call(call) = one(events(&mut b)) else {
        panic!("expected a call");
    };
    assert_eq!(call.object, ObjectId::Root);
}

#[test]
fn challengers_answer_only_respond() {
    let (mut b, now) = negotiated_listener(listener_config());
    let mut login = call_bytes(1, ObjectId::Root, "login");
    // `login` with a name argument.
    login = {
        let Message::Call(mut c) = pb::decode(
            &{
                let mut d = Decoder::new(crate::Limits::default());
                d.set_dialect(Dialect::Pb);
                d.decode(&mut BytesMut::from(&login[..])).unwrap().unwrap()
            },
            &Security::default(),
        )
        .unwrap() else {
            unreachable!()
        };
        c.args = vec![Value::bytes(&b"w1"[..])];
        wire(&Message::Call(c))
    };
    b.handle_input(&login, now);
    let Message::Answer { value, .. } = one(sent_messages(&mut b)) else {
        panic!("expected the challenge");
    };
    let Some([Value::Bytes(challenge), Value::Remote(challenger)]) = value.as_seq() else {
        panic!("unexpected challenge {value:?}");
    };
    assert_eq!(challenge.len(), 16);
    b.handle_input(&call_bytes(2, ObjectId::Id(*challenger), "shutdown"), now);
    let Message::Error { failure, .. } = one(sent_messages(&mut b)) else {
        panic!("expected a refusal");
    };
    assert!(Failure::from_value(&failure)
        .unwrap()
        .check("twisted.spread.flavors.NoSuchMethod"));
}

/// A `login(name)` call from a raw peer.
fn login_bytes(request_id: i64, name: &[u8]) -> Vec<u8> {
    wire(&Message::Call(Call {
        request_id,
        object: ObjectId::Root,
        method: Bytes::from_static(b"login"),
        answer_required: true,
        args: vec![Value::bytes(name.to_vec())],
        kwargs: vec![],
    }))
}

#[test]
fn challenges_are_bounded_and_excess_counts_against_the_peer() {
    let config = BrokerConfig {
        max_challenges: 2,
        max_violations: 1,
        ..listener_config()
    };
    let (mut b, now) = negotiated_listener(config);
    for id in 1..=2 {
        b.handle_input(&login_bytes(id, b"w1"), now);
    }
    assert!(matches!(
        sent_messages(&mut b).as_slice(),
        [Message::Answer { .. }, Message::Answer { .. }]
    ));
    b.handle_input(&login_bytes(3, b"w1"), now);
    let Message::Error { failure, .. } = one(sent_messages(&mut b)) else {
        panic!("expected a refusal");
    };
    assert_eq!(
        Failure::from_value(&failure).unwrap().value,
        "too many login challenges"
    );
    b.handle_input(&login_bytes(4, b"w1"), now);
    assert_eq!(closed(&mut b), CloseReason::Limit(Limit::Violations(2)));
}

#[test]
fn rejects_long_login_names() {
    let config = BrokerConfig {
        max_login_name: 8,
        ..listener_config()
    };
    let (mut b, now) = negotiated_listener(config);
    b.handle_input(&login_bytes(1, &[b'x'; 9]), now);
    let Message::Error { failure, .. } = one(sent_messages(&mut b)) else {
        panic!("expected a refusal");
    };
    assert_eq!(
        Failure::from_value(&failure).unwrap().value,
        "login name too long"
    );
}

#[test]
fn closes_a_connection_that_does_not_log_in_in_time() {
    let mut p = Pair::new();
    let deadline = p.listener.poll_timeout().unwrap();
    assert_eq!(deadline, p.now + Duration::from_secs(30));
    p.advance(Duration::from_secs(29));
    assert_eq!(p.listener.phase(), Phase::LoginPending);
    p.advance(Duration::from_secs(1));
    assert_eq!(
        closed(&mut p.listener),
        CloseReason::Deadline(Deadline::Login)
    );
    assert_eq!(p.listener.poll_timeout(), None);
}

#[test]
fn the_login_deadline_waits_while_the_application_decides() {
    let mut p = Pair::new();
    let attempt = p.attempt(PASSWORD, None);
    assert_eq!(p.listener.poll_timeout(), None);
    p.advance(Duration::from_secs(120));
    assert_eq!(p.listener.phase(), Phase::LoginPending);
    p.listener
        .refuse_login(attempt.id, unauthorized(""))
        .unwrap();
    p.advance(Duration::from_secs(1));
    assert_eq!(
        closed(&mut p.listener),
        CloseReason::Deadline(Deadline::Login),
        "the deadline is back, and long past"
    );
}

#[test]
fn a_logged_in_peer_has_no_login_deadline() {
    let mut p = Pair::new();
    p.logged_in();
    assert_eq!(
        p.listener.poll_timeout(),
        Some(p.now + Duration::from_secs(300)),
        "only the keepalive remains"
    );
}

#[test]
fn probes_a_quiet_peer_and_closes_one_that_stays_silent() {
    let mut p = Pair::new();
    let (_, mind) = p.logged_in();
    p.advance(Duration::from_secs(300));
    let Event::Call(probe) = one(events(&mut p.connector)) else {
        panic!("expected a probe");
    };
    assert_eq!(
        (probe.object, probe.method.as_ref()),
        (ObjectId::Id(mind), &b"print"[..])
    );
    // The peer answers: the probe's answer is the broker's own, not an event.
    p.connector
        .answer(probe.request_id, Ok(Value::None))
        .unwrap();
    p.pump();
    assert!(events(&mut p.listener).is_empty());
    assert_eq!(
        p.listener.poll_timeout(),
        Some(p.now + Duration::from_secs(300))
    );

    // Next time it stays silent.
    p.now += Duration::from_secs(300);
    p.listener.handle_timeout(p.now);
    let _probe = p.listener.poll_transmit().unwrap();
    assert_eq!(
        p.listener.poll_timeout(),
        Some(p.now + Duration::from_secs(60))
    );
    p.now += Duration::from_secs(60);
    p.listener.handle_timeout(p.now);
    assert_eq!(
        closed(&mut p.listener),
        CloseReason::Deadline(Deadline::Keepalive)
    );
}

#[test]
fn any_input_counts_as_life() {
    let mut p = Pair::new();
    let (avatar, _) = p.logged_in();
    p.now += Duration::from_secs(300);
    p.listener.handle_timeout(p.now);
    let _unanswered_probe = p.listener.poll_transmit();
    p.now += Duration::from_secs(59);
    p.connector
        .call(ObjectId::Id(avatar), "keepalive", vec![], vec![])
        .unwrap();
    p.pump();
    p.now += Duration::from_secs(30);
    p.listener.handle_timeout(p.now);
    assert_eq!(p.listener.phase(), Phase::LoggedIn);
}

#[test]
fn rejects_malformed_banana() {
    let (mut b, now) = negotiated_listener(listener_config());
    b.handle_input(b"\x01\xff", now);
    let reason = closed(&mut b);
    assert!(
        matches!(reason, CloseReason::Violation(Violation::Banana(e)) if e.kind == crate::banana::DecodeErrorKind::UnknownType(0xff)),
        "{reason:?}"
    );
    assert!(reason.is_peer_fault());
}

#[test]
fn rejects_oversized_strings_as_a_limit_before_buffering() {
    let config = BrokerConfig {
        limits: crate::Limits {
            max_string_len: 100,
            ..crate::Limits::default()
        },
        ..listener_config()
    };
    let (mut b, now) = negotiated_listener(config);
    // A header declaring 1000 bytes, and none of them.
    b.handle_input(b"\x68\x07\x82", now);
    let reason = closed(&mut b);
    assert!(
        matches!(reason, CloseReason::Limit(Limit::Decoder(e)) if e.kind == crate::banana::DecodeErrorKind::StringTooLong),
        "{reason:?}"
    );
}

#[test]
fn rejects_an_unoffered_dialect() {
    let now = Instant::now();
    let mut b = Broker::new(listener_config(), now, counter());
    b.handle_input(b"\x03\x82foo", now);
    assert_eq!(
        closed(&mut b),
        CloseReason::Violation(Violation::Negotiation(
            negotiation::NegotiationError::UnknownChoice
        ))
    );
}

#[test]
fn rejects_another_pb_version() {
    let (mut b, now) = negotiated_listener(listener_config());
    b.handle_input(&wire(&Message::Version(5)), now);
    assert_eq!(
        closed(&mut b),
        CloseReason::Violation(Violation::Version(5))
    );
}

#[test]
fn rejects_messages_that_are_not_pb() {
    let (mut b, now) = negotiated_listener(listener_config());
    b.handle_input(b"\x01\x81", now);
    assert!(matches!(
        closed(&mut b),
        CloseReason::Violation(Violation::Message(_))
    ));
}

#[test]
fn end_of_input_inside_an_element_is_a_violation() {
    let (mut b, now) = negotiated_listener(listener_config());
    b.handle_input(b"\x02\x80\x01", now);
    b.handle_eof();
    assert!(matches!(
        closed(&mut b),
        CloseReason::Violation(Violation::Banana(_))
    ));
    let (mut b, _) = negotiated_listener(listener_config());
    b.handle_eof();
    assert_eq!(closed(&mut b), CloseReason::PeerClosed);
}

#[test]
fn unanswered_calls_are_bounded() {
    let config = BrokerConfig {
        max_pending: 2,
        ..listener_config()
    };
    let (mut b, _) = negotiated_listener(config);
    for _ in 0..2 {
        b.call(ObjectId::Id(1), "ping", vec![], vec![]).unwrap();
    }
    assert_eq!(
        b.call(ObjectId::Id(1), "ping", vec![], vec![]),
        Err(BrokerError::Closed)
    );
    assert_eq!(closed(&mut b), CloseReason::Limit(Limit::PendingCalls(2)));
}

#[test]
fn nothing_is_read_after_closing_but_queued_bytes_still_go_out() {
    let (mut b, now) = negotiated_listener(listener_config());
    b.call(ObjectId::Id(1), "ping", vec![], vec![]).unwrap();
    b.close("shutting down");
    assert_eq!(closed(&mut b), CloseReason::Local("shutting down".into()));
    b.handle_input(&call_bytes(1, ObjectId::Root, "login"), now);
    assert!(events(&mut b).is_empty());
    assert!(b.poll_transmit().is_some(), "the call was queued before");
    assert_eq!(
        b.call(ObjectId::Id(1), "ping", vec![], vec![]),
        Err(BrokerError::Closed)
    );
}

#[test]
fn input_split_anywhere_gives_the_same_events() {
    let mut whole = Pair::new();
    let (avatar, _) = whole.logged_in();
    let call = Message::Call(Call {
        request_id: 10,
        object: ObjectId::Id(avatar),
        method: Bytes::from_static(b"shutdown"),
        answer_required: false,
        args: vec![Value::text("x"), Value::List(vec![Value::int(1); 3])],
        kwargs: vec![],
    });
    let bytes = [wire(&call), wire(&Message::Decref(avatar))].concat();
    whole.listener.handle_input(&bytes, whole.now);
    let expected = events(&mut whole.listener);
    assert_eq!(expected.len(), 2, "{expected:?}");
    assert_eq!(expected[1], Event::Released(avatar));

    let mut bytewise = Pair::new();
    bytewise.logged_in();
    for b in &bytes {
        bytewise.listener.handle_input(&[*b], bytewise.now);
    }
    assert_eq!(events(&mut bytewise.listener), expected);
}

#[test]
fn no_randomness_means_no_challenge() {
    let now = Instant::now();
    let mut b = Broker::new(listener_config(), now, |_: &mut [u8]| false);
    b.poll_transmit();
    b.handle_input(b"\x02\x82pb", now);
    b.handle_input(&login_bytes(1, b"w1"), now);
    assert!(matches!(closed(&mut b), CloseReason::Local(_)));
}

#[test]
fn a_connector_may_ask_to_log_in_before_the_dialect() {
    let now = Instant::now();
    let mut listener = Broker::new(listener_config(), now, counter());
    let mut connector = Broker::new(BrokerConfig::new(Side::Connector), now, counter());
    connector.login("w1", PASSWORD, None).unwrap();
    assert_eq!(
        connector.login("w1", PASSWORD, None),
        Err(BrokerError::Misuse("a login is already under way"))
    );
    assert_eq!(
        listener.login("w1", PASSWORD, None),
        Err(BrokerError::Misuse("only a connector logs in"))
    );
    connector.handle_input(&listener.poll_transmit().unwrap(), now);
    listener.handle_input(&connector.poll_transmit().unwrap(), now);
    connector.handle_input(&listener.poll_transmit().unwrap(), now);
    listener.handle_input(&connector.poll_transmit().unwrap(), now);
    let Event::Login(attempt) = one(events(&mut listener)) else {
        panic!("expected the login");
    };
    assert!(attempt.verify(PASSWORD));
}

#[test]
fn login_attempts_do_not_print_their_secrets() {
    let mut p = Pair::new();
    let attempt = p.attempt(PASSWORD, None);
    let printed = format!("{attempt:?}");
    assert!(!printed.contains("challenge") && !printed.contains("response"));
}

#[test]
fn a_connector_may_export_its_mind_before_the_dialect() {
    // The usual order for a client: connect, export the mind, log in with it.
    let now = Instant::now();
    let mut connector = Broker::new(BrokerConfig::new(Side::Connector), now, counter());
    let mind = connector.export().unwrap();
    connector.login("w1", PASSWORD, Some(mind)).unwrap();
    let mut p = Pair {
        listener: Broker::new(listener_config(), now, counter()),
        connector,
        now,
    };
    p.pump();
    let Event::Login(attempt) = one(events(&mut p.listener)) else {
        panic!("expected the login");
    };
    assert_eq!(attempt.mind, Some(mind));
}

#[test]
fn an_object_sent_twice_is_released_after_both_decrefs() {
    // Twisted makes a proxy for each `remote` it receives, and each sends a decref.
    let mut p = Pair::new();
    let (avatar, mind) = p.logged_in();
    p.connector
        .call(
            ObjectId::Id(avatar),
            "echo",
            vec![Value::Remote(mind)],
            vec![],
        )
        .unwrap();
    p.pump();
    assert!(matches!(one(events(&mut p.listener)), Event::Call(_)));
    // The peer drops the proxy the call made; the login's is still held.
    p.connector
        .handle_input(&wire(&Message::Decref(mind)), p.now);
    assert!(events(&mut p.connector).is_empty());
    p.listener
        .call(ObjectId::Id(mind), "hello", vec![], vec![])
        .unwrap();
    p.pump();
    let Event::Call(call) = one(events(&mut p.connector)) else {
        panic!("expected the call on the mind");
    };
    assert_eq!(call.object, ObjectId::Id(mind));
    p.connector
        .handle_input(&wire(&Message::Decref(mind)), p.now);
    assert_eq!(events(&mut p.connector), vec![Event::Released(mind)]);
}

#[test]
fn an_object_the_peer_released_is_served_again_when_sent_again() {
    // A connector retries a refused login with the same mind, which Twisted dropped.
    let mut p = Pair::new();
    let mind = p.connector.export().unwrap();
    let attempt = p.attempt(b"wrong", Some(mind));
    p.listener
        .refuse_login(attempt.id, unauthorized(""))
        .unwrap();
    p.pump();
    assert!(matches!(
        one(events(&mut p.connector)),
        Event::LoginRefused(_)
    ));
    p.connector
        .handle_input(&wire(&Message::Decref(mind)), p.now);
    assert_eq!(events(&mut p.connector), vec![Event::Released(mind)]);

    let attempt = p.attempt(PASSWORD, Some(mind));
    let avatar = p.listener.accept_login(attempt.id, p.now).unwrap();
    p.pump();
    assert_eq!(events(&mut p.connector), vec![Event::LoggedIn { avatar }]);
    p.listener
        .call(ObjectId::Id(mind), "hello", vec![], vec![])
        .unwrap();
    p.pump();
    let Event::Call(call) = one(events(&mut p.connector)) else {
        panic!("expected the call on the mind");
    };
    assert_eq!(call.object, ObjectId::Id(mind));
}

#[test]
fn a_call_that_cannot_be_sent_is_not_awaited() {
    let mut p = Pair::new();
    let (avatar, _) = p.logged_in();
    let mut deep = Value::None;
    for _ in 0..=crate::DEPTH_CEILING {
        deep = Value::List(vec![deep]);
    }
    assert!(matches!(
        p.connector
            .call(ObjectId::Id(avatar), "echo", vec![deep], vec![]),
        Err(BrokerError::Encode(_))
    ));
    assert_eq!(p.connector.pending_calls(), 0);
    assert_eq!(p.connector.poll_transmit(), None);
}

#[test]
fn a_reserved_request_id_gets_the_answer_to_a_hand_made_call() {
    let mut p = Pair::new();
    let (avatar, _) = p.logged_in();
    let id = p.connector.reserve_request().unwrap();
    assert_eq!(p.connector.poll_transmit(), None);
    let call = Call {
        request_id: id,
        object: ObjectId::Id(avatar),
        method: Bytes::from_static(b"ping"),
        answer_required: true,
        args: vec![],
        kwargs: vec![],
    };
    p.listener.handle_input(&wire(&Message::Call(call)), p.now);
    let Event::Call(call) = one(events(&mut p.listener)) else {
        panic!("no call")
    };
    p.listener
        .answer(call.request_id, Ok(Value::int(1)))
        .unwrap();
    p.pump();
    assert_eq!(
        events(&mut p.connector),
        vec![Event::Answer {
            request_id: id,
            result: Ok(Value::int(1))
        }]
    );
}

#[test]
fn releasing_memory_between_reads_keeps_a_message_half_received() {
    let mut p = Pair::new();
    let (avatar, _mind) = p.logged_in();
    let big = Value::text("x".repeat(10_000));
    p.connector
        .call(ObjectId::Id(avatar), "echo", vec![big.clone()], vec![])
        .unwrap();
    let bytes = p.connector.poll_transmit().unwrap();
    let (first, second) = bytes.split_at(bytes.len() / 2);
    p.listener.handle_input(first, p.now);
    p.listener.release_memory();
    assert!(events(&mut p.listener).is_empty());
    assert!(
        p.listener.receive_buffer().len() == first.len(),
        "the half is kept"
    );
    p.listener.handle_input(second, p.now);
    let Event::Call(call) = one(events(&mut p.listener)) else {
        panic!("expected the call");
    };
    assert_eq!(call.args, vec![big]);
    // What a driver reserves before its next read.
    p.listener.receive_buffer().reserve(4096);
    p.listener.release_memory();
    assert_eq!(p.listener.receive_buffer().capacity(), 0);
    // The connection goes on as before.
    let id = p
        .connector
        .call(ObjectId::Id(avatar), "echo", vec![Value::int(1)], vec![])
        .unwrap();
    p.pump();
    let Event::Call(call) = one(events(&mut p.listener)) else {
        panic!("expected a second call");
    };
    p.listener
        .answer(call.request_id, Ok(Value::int(2)))
        .unwrap();
    p.pump();
    assert_eq!(
        events(&mut p.connector),
        vec![Event::Answer {
            request_id: id,
            result: Ok(Value::int(2))
        }]
    );
}
