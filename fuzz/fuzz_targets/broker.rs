//! A broker driven by a random script of peer input, clock steps and application
//! requests. Invariants: no panic; nothing happens after the close; local state stays
//! within its bounds; and whatever the broker transmits, however hostile its input,
//! a well-behaved peer broker accepts without finding a protocol violation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbwire::broker::{Broker, BrokerConfig, CloseReason, Event, Keepalive, LoginId, Phase, Side};
use pbwire::jelly::Value;
use pbwire::pb::failures::unauthorized;
use pbwire::pb::ObjectId;
use pbwire::Limits;
use std::time::{Duration, Instant};

const MAX_PENDING: usize = 8;

fn config(side: Side) -> BrokerConfig {
    BrokerConfig {
        limits: Limits {
            max_message_bytes: 1 << 16,
            ..Limits::default()
        },
        max_pending: MAX_PENDING,
        max_objects: 16,
        keepalive: Some(Keepalive {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            method: "print".into(),
            kwargs: vec![],
        }),
        ..BrokerConfig::new(side)
    }
}

fn zeros(_: &mut [u8]) -> bool {
    true
}

/// The broker under test, with what a script needs to remember about it.
struct Subject {
    broker: Broker,
    peer: Broker,
    closed: bool,
    login: Option<LoginId>,
    incoming: Vec<i64>,
}

impl Subject {
    /// Drains events, checking that none follows the close.
    fn events(&mut self) {
        while let Some(e) = self.broker.poll_event() {
            assert!(!self.closed, "event after the close: {e:?}");
            match e {
                Event::Closed(_) => self.closed = true,
                Event::Login(a) => self.login = Some(a.id),
                Event::Call(c) if c.answer_required => self.incoming.push(c.request_id),
                _ => {}
            }
        }
        assert!(self.broker.pending_calls() <= MAX_PENDING);
        if self.closed {
            assert_eq!(self.broker.phase(), Phase::Closing);
            assert_eq!(self.broker.poll_timeout(), None);
        }
    }

    /// Sends what the broker transmitted to a well-behaved peer, which must not
    /// find a violation in it.
    fn transmit(&mut self, now: Instant) {
        while let Some(bytes) = self.broker.poll_transmit() {
            self.peer.handle_input(&bytes, now);
        }
        while let Some(e) = self.peer.poll_event() {
            if let Event::Closed(reason) = e {
                // (A limit is the peer's own bound, e.g. on challenges never answered.)
                assert!(
                    !matches!(reason, CloseReason::Violation(_)),
                    "the broker's output broke the protocol: {reason:?}"
                );
            }
        }
        let _ = self.peer.poll_transmit();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut script)) = data.split_first() else {
        return;
    };
    let side = if first & 1 == 0 { Side::Listener } else { Side::Connector };
    let peer_side = if side == Side::Listener { Side::Connector } else { Side::Listener };
    let mut now = Instant::now();
    let mut s = Subject {
        broker: Broker::new(config(side), now, zeros),
        peer: Broker::new(BrokerConfig::new(peer_side), now, zeros),
        closed: false,
        login: None,
        incoming: vec![],
    };
    // The peer needs to see the negotiation the subject starts; a connector subject's
    // peer is a listener whose own offer is not part of this stream.
    let _ = s.peer.poll_transmit();
    while let Some((&op, rest)) = script.split_first() {
        script = rest;
        let arg = script.first().copied().unwrap_or(0);
        match op % 10 {
            0 => {
                let n = (arg as usize).min(script.len().saturating_sub(1));
                s.broker.handle_input(script.get(1..1 + n).unwrap_or_default(), now);
                script = script.get(n..).unwrap_or_default();
            }
            1 => {
                now += Duration::from_secs(u64::from(arg));
                s.broker.handle_timeout(now);
            }
            2 => {
                let _ = s.broker.call(
                    ObjectId::Id(i64::from(arg)),
                    "remote",
                    vec![Value::int(i64::from(arg))],
                    vec![],
                );
            }
            3 => {
                let _ = s.broker.export();
            }
            4 => {
                if let Some(id) = s.login.take() {
                    if arg & 1 == 0 {
                        let _ = s.broker.accept_login(id, now);
                    } else {
                        let _ = s.broker.refuse_login(id, unauthorized(""));
                    }
                }
            }
            5 => {
                if let Some(id) = s.incoming.pop() {
                    let _ = s.broker.answer(id, Ok(Value::bytes(vec![arg; 3])));
                }
            }
            6 => s.broker.handle_eof(),
            7 => s.broker.close("script"),
            8 => {
                let _ = s.broker.login("w", b"pw", Some(i64::from(arg)));
            }
            _ => s.broker.unexport(i64::from(arg)),
        }
        script = script.get(1..).unwrap_or_default();
        s.events();
        s.transmit(now);
    }
    s.events();
});
