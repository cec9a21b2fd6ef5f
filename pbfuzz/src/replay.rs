//! Replay of a recorded session (a `fixtures/sessions/NAME/` folder: `w2m.bin`, what
//! the client sent, and `m2w.bin`, what the server sent) with seeded mutations.
//!
//! The recording's login cannot be replayed (the challenge differs every time), so the
//! live session logs in as the profile says, and a case replays a window of the
//! client's calls made after its login, renumbered into the live session's request ids
//! and with the recorded avatar replaced by the live target, then mutates those bytes:
//! bit flips, truncation, inflated length headers, duplication, splices of another
//! recorded call. Answers and decrefs are left out: they name the recorded server's
//! requests and objects, which a live server does not have (Twisted drops the
//! connection for them, which the fixed cases already test).

use crate::cases::{Ctx, Payload};
use crate::mutate::{self, Op};
use crate::wire::{enc, Rng};
use bytes::BytesMut;
use pbwire::banana::{Decoder, Dialect, Element};
use pbwire::{notation, Limits};
use std::path::Path;

/// The client's calls of one recorded session.
#[derive(Debug)]
pub struct Recording {
    pub name: String,
    calls: Vec<Element>,
    /// The object the recorded login returned.
    avatar: Option<i64>,
}

const EDITS: &[Op] = &[
    Op::Flip,
    Op::Truncate,
    Op::Inflate,
    Op::Duplicate,
    Op::Splice,
    Op::Insert,
    Op::Delete,
];

impl Recording {
    /// Reads `dir/w2m.bin` and `dir/m2w.bin`.
    pub fn load(dir: &Path) -> Result<Recording, String> {
        let read = |f: &str| {
            std::fs::read(dir.join(f)).map_err(|e| format!("{}: {e}", dir.join(f).display()))
        };
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "session".into());
        Recording::from_streams(name, &read("w2m.bin")?, &read("m2w.bin")?)
    }

    /// From the two byte streams of a session, each from its first byte (the dialect
    /// offer or choice).
    pub fn from_streams(name: String, client: &[u8], server: &[u8]) -> Result<Recording, String> {
        let client = elements(client).map_err(|e| format!("{name}: client stream: {e}"))?;
        let server = elements(server).map_err(|e| format!("{name}: server stream: {e}"))?;
        let is = |e: &Element, word: &[u8]| match e {
            Element::List(items) => items.first().and_then(Element::as_bytes) == Some(word),
            _ => false,
        };
        let method = |e: &Element| match e {
            Element::List(items) => items.get(3).and_then(Element::as_bytes).map(<[u8]>::to_vec),
            _ => None,
        };
        let request = |e: &Element| match e {
            Element::List(items) => items.get(1).and_then(int),
            _ => None,
        };
        let calls: Vec<&Element> = client.iter().filter(|e| is(e, b"message")).collect();
        let respond = calls
            .iter()
            .position(|c| method(c).as_deref() == Some(b"respond"));
        let avatar = respond.and_then(|i| request(calls[i])).and_then(|rid| {
            server.iter().find_map(|e| match e {
                Element::List(items)
                    if is(e, b"answer") && items.get(1).and_then(int) == Some(rid) =>
                {
                    match items.get(2) {
                        Some(Element::List(r))
                            if r.first().and_then(Element::as_bytes) == Some(b"remote") =>
                        {
                            r.get(1).and_then(int)
                        }
                        _ => None,
                    }
                }
                _ => None,
            })
        });
        let after_login = respond.map_or(0, |i| i + 1);
        let calls: Vec<Element> = calls[after_login..].iter().map(|e| (*e).clone()).collect();
        if calls.is_empty() {
            return Err(format!("{name}: no calls after the login"));
        }
        Ok(Recording {
            name,
            calls,
            avatar,
        })
    }

    /// Calls available for replay.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Mixed into the run's seed so that two recordings get different cases.
    pub fn seed_salt(&self) -> u64 {
        // FNV-1a.
        self.name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    /// One to three consecutive recorded calls, rewritten for the live session, then
    /// zero to three edits (a quarter of the cases replay the calls as they are).
    pub fn case(&self, c: &Ctx, seed: u64) -> Payload {
        let mut rng = Rng::new(seed);
        let start = rng.below(self.calls.len());
        let window = (1 + rng.below(3)).min(self.calls.len() - start);
        let target = notation::parse(&c.target)
            .ok()
            .and_then(|v| v.into_iter().next())
            .unwrap_or_else(|| Element::int(0));
        let mut v = Vec::new();
        for (j, call) in self.calls[start..start + window].iter().enumerate() {
            v.extend(enc(&self.rewrite(call, c.id + j as i64, &target)));
        }
        let donor = enc(&self.calls[rng.below(self.calls.len())]);
        for _ in 0..rng.below(4) {
            let op = EDITS[rng.below(EDITS.len())];
            mutate::apply(op, &mut v, &donor, &mut rng);
        }
        Payload::once(v)
    }

    /// The call with request id `id`, and the live target for the recorded avatar.
    fn rewrite(&self, call: &Element, id: i64, target: &Element) -> Element {
        let Element::List(items) = call else {
            return call.clone();
        };
        let mut items = items.clone();
        if let Some(r) = items.get_mut(1) {
            *r = Element::int(id);
        }
        if let Some(o) = items.get_mut(2) {
            if self.avatar.is_some() && int(o) == self.avatar {
                *o = target.clone();
            }
        }
        Element::List(items)
    }
}

fn int(e: &Element) -> Option<i64> {
    match e {
        Element::Int(i) => i.to_i64(),
        _ => None,
    }
}

/// Every top-level element of a stream: the first in dialect `none`, the rest in `pb`.
fn elements(bytes: &[u8]) -> Result<Vec<Element>, String> {
    let mut decoder = Decoder::new(Limits::default());
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(e) = decoder.decode(&mut buf).map_err(|e| e.to_string())? {
        if out.is_empty() {
            decoder.set_dialect(Dialect::Pb);
        }
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded() -> Recording {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/sessions/worker-4.3.0");
        match Recording::load(&dir) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_recorded_worker_session_gives_its_calls_after_the_login() {
        let r = recorded();
        assert!(r.calls() > 50, "{}", r.calls());
        assert!(r.avatar.is_some());
        // Rewritten: the live request id and target; otherwise the recorded bytes.
        let c = Ctx::example("keepalive");
        let keepalive = r
            .calls
            .iter()
            .find(|e| matches!(e, Element::List(i) if i.get(3).and_then(Element::as_bytes) == Some(b"keepalive")));
        let keepalive = keepalive.map(|k| notation::to_string(&r.rewrite(k, 3, &Element::int(1))));
        assert_eq!(
            keepalive.as_deref(),
            Some("(message 3 1 b'keepalive' 1 (tuple) (dictionary))")
        );
        assert_eq!(r.case(&c, 5), r.case(&c, 5));
    }
}
