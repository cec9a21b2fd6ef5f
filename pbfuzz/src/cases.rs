//! The cases: a table of fixed ones (wrong types, unknown ids and methods, forbidden
//! jelly, bad banana, nesting, truncation, floods), seeded random edits of valid
//! messages, and seeded mutations of recorded sessions ([`crate::replay`]). Each case
//! turns the session it runs on ([`Ctx`]) into the exact bytes to send.

use crate::mutate::{self, Op};
use crate::replay::Recording;
use crate::wire::*;
use std::sync::Arc;

/// What a case knows about the session it runs on.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The request id the mutated call uses (reserved: its answer is reported).
    pub id: i64,
    /// The object the calls go to, in notation: an id (`7`) or `b'root'`.
    pub target: String,
    /// The method the calls name (the profile's call).
    pub method: Vec<u8>,
    /// This side's mind, or 0 without one.
    pub mind: i64,
    /// The login name (for the login flood), or `fuzz`.
    pub user: Vec<u8>,
}

impl Ctx {
    /// A session as a dry run shows it: avatar 1, request 3, mind 1.
    pub fn example(method: &str) -> Ctx {
        Ctx {
            id: 3,
            target: "1".into(),
            method: method.as_bytes().to_vec(),
            mind: 1,
            user: b"fuzz".to_vec(),
        }
    }

    /// `template` with `{id}`, `{target}`, `{method}`, `{mind}`, `{user}` filled in.
    pub fn fill(&self, template: &str) -> String {
        template
            .replace("{id}", &self.id.to_string())
            .replace("{target}", &self.target)
            .replace("{method}", &bytes_notation(&self.method))
            .replace("{mind}", &self.mind.to_string())
            .replace("{user}", &bytes_notation(&self.user))
    }

    /// The filled template's bytes; a template that does not parse gives nothing (the
    /// tables are checked by a test).
    fn bytes(&self, template: &str) -> Vec<u8> {
        from_notation(&self.fill(template)).unwrap_or_default()
    }
}

/// Bytes to send, as runs of repeated pieces (exact, and compact to print).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Piece {
    pub bytes: Vec<u8>,
    pub repeat: usize,
}

/// What follows the mutated bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// A valid call (the profile's probe): an answer means the server still serves.
    Probe,
    /// Close the sending side: how does the server treat a stream that ends here?
    HalfClose,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub pieces: Vec<Piece>,
    pub after: After,
    /// Multiplies the reply timeout (floods need longer).
    pub patience: u32,
}

impl Payload {
    pub fn once(bytes: Vec<u8>) -> Payload {
        Payload {
            pieces: vec![Piece { bytes, repeat: 1 }],
            after: After::Probe,
            patience: 1,
        }
    }

    /// Bytes in all, repeats counted.
    pub fn len(&self) -> usize {
        self.pieces.iter().map(|p| p.bytes.len() * p.repeat).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every byte in order (for small payloads: the minimizer's byte phase).
    pub fn flat(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        for p in &self.pieces {
            for _ in 0..p.repeat {
                v.extend_from_slice(&p.bytes);
            }
        }
        v
    }

    fn after(mut self, after: After, patience: u32) -> Payload {
        self.after = after;
        self.patience = patience;
        self
    }
}

/// How a fixed case makes its bytes.
#[derive(Debug, Clone, Copy)]
pub enum Spec {
    /// Whole messages in pbwire notation, with the [`Ctx`] placeholders.
    Text(&'static str),
    /// A call on the target whose args tuple holds these items (notation).
    Args(&'static str),
    /// Exact bytes.
    Raw(&'static [u8]),
    /// An element header alone: the length, the type byte.
    Header(u64, u8),
    /// The message `count` times; `{i}` is the request id plus the index.
    Flood(&'static str, usize),
    /// A call whose args tuple holds `n` nested jelly lists (valid jelly, only deep).
    JellyNest(usize),
    /// `n` nested banana lists, never closed (no valid jelly).
    BananaNest(usize),
    /// Computed.
    Build(fn(&Ctx) -> Payload),
}

/// One row of the fixed table.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub name: &'static str,
    pub spec: Spec,
    pub after: After,
    pub patience: u32,
}

const fn probe(name: &'static str, spec: Spec) -> Row {
    Row {
        name,
        spec,
        after: After::Probe,
        patience: 1,
    }
}

const fn slow(name: &'static str, spec: Spec, patience: u32) -> Row {
    Row {
        name,
        spec,
        after: After::Probe,
        patience,
    }
}

const fn close(name: &'static str, spec: Spec) -> Row {
    Row {
        name,
        spec,
        after: After::HalfClose,
        patience: 1,
    }
}

/// The valid call every other case is judged against.
pub const CALL: &str = "(message {id} {target} {method} 1 (tuple) (dictionary))";

use Spec::*;

/// The fixed cases.
pub const TABLE: &[Row] = &[
    probe("valid/call", Text(CALL)),
    // --- wrong types and shapes ---
    probe("type/request-id-string", Text("(message b'7' {target} {method} 1 (tuple) (dictionary))")),
    probe("type/object-id-list", Text("(message {id} (1) {method} 1 (tuple) (dictionary))")),
    probe("type/method-int", Text("(message {id} {target} 5 1 (tuple) (dictionary))")),
    probe("type/answer-required-string", Text("(message {id} {target} {method} b'yes' (tuple) (dictionary))")),
    probe("type/args-int", Text("(message {id} {target} {method} 1 3 (dictionary))")),
    probe("type/args-dict", Text("(message {id} {target} {method} 1 (dictionary) (dictionary))")),
    probe("type/kwargs-list", Text("(message {id} {target} {method} 1 (tuple) (list))")),
    probe("type/kwargs-bad-pairs", Text("(message {id} {target} {method} 1 (tuple) (dictionary (1)))")),
    probe("type/arity-short", Text("(message {id} {target} {method} 1 (tuple))")),
    probe("type/arity-long", Text("(message {id} {target} {method} 1 (tuple) (dictionary) 0)")),
    probe("type/top-level-int", Text("42")),
    probe("type/top-level-string", Text("b'message'")),
    probe("type/top-level-empty-list", Text("()")),
    probe("type/unknown-message-name", Text("(b'frobnicate' 1)")),
    probe("type/version-mismatch", Text("(version 7)")),
    probe("type/version-again", Text("(version 6)")),
    probe("type/float-request-id", Text("(message nan {target} {method} 1 (tuple) (dictionary))")),
    probe("type/negative-request-id", Text("(message -1 {target} {method} 1 (tuple) (dictionary))")),
    probe("type/huge-request-id-448-bits", Build(huge_request_id)),
    probe("type/float-object-id", Text("(message {id} 1.0 {method} 1 (tuple) (dictionary))")),
    // --- unknown ids and methods ---
    probe("unknown/object-id", Text("(message {id} 999999 {method} 1 (tuple) (dictionary))")),
    probe("unknown/object-id-negative", Text("(message {id} -5 {method} 1 (tuple) (dictionary))")),
    probe("unknown/method-on-target", Text("(message {id} {target} b'frobnicate' 1 (tuple) (dictionary))")),
    probe("unknown/method-on-root", Text("(message {id} b'root' b'frobnicate' 1 (tuple) (dictionary))")),
    probe("unknown/method-empty-name", Text("(message {id} {target} b'' 1 (tuple) (dictionary))")),
    probe("unknown/method-non-utf8", Text("(message {id} {target} b'\\xff\\xfe' 1 (tuple) (dictionary))")),
    probe("unknown/answer-id", Text("(answer 777777 (None))")),
    probe("unknown/error-id", Text("(error 777778 b'boom')")),
    probe("unknown/decref-id", Text("(decref 888888)")),
    probe("unknown/decref-target-twice", Text("(decref {target}) (decref {target})")),
    probe("unknown/decache", Text("(decache 5)")),
    probe("unknown/uncache", Text("(uncache 5)")),
    probe("unknown/cachemessage", Text("(cachemessage {id} {target} {method} 1 (tuple) (dictionary))")),
    probe("unknown/didNotUnderstand", Text("(b'didNotUnderstand' b'x')")),
    probe("unknown/login-again-wrong-type", Text("(message {id} b'root' login 1 (tuple 5) (dictionary))")),
    probe("unknown/respond-on-target", Text("(message {id} {target} b'respond' 1 (tuple b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00' (None)) (dictionary))")),
    probe("unknown/call-with-extra-args", Args("1 (b'unicode' \"x\")")),
    probe("unknown/shutdown-with-args", Text("(message {id} {target} b'shutdown' 1 (tuple 1 2 3) (dictionary))")),
    // --- forbidden and malformed jelly ---
    probe("jelly/class", Args("(class b'os.system')")),
    probe("jelly/module", Args("(module b'os')")),
    probe("jelly/function", Args("(function b'os.system')")),
    probe("jelly/instance", Args("(instance (class b'os.Foo') (dictionary))")),
    probe("jelly/unknown-copyable", Args("(b'evil.Thing' (dictionary))")),
    probe("jelly/persistent", Args("(persistent b'x')")),
    probe("jelly/unicode-invalid-utf8", Args("(b'unicode' b'\\xff\\xfe\\xc0')")),
    probe("jelly/unknown-dereference", Args("(dereference 9)")),
    probe("jelly/duplicate-reference", Args("(reference 1 (tuple)) (reference 1 (tuple))")),
    probe("jelly/cyclic-reference", Args("(reference 1 (list (dereference 1)))")),
    probe("jelly/boolean-bad", Args("(b'boolean' b'maybe')")),
    probe("jelly/remote-negative", Args("(remote -1)")),
    probe("jelly/local-unknown", Args("(local 4242)")),
    probe("jelly/cached", Args("(cached 1)")),
    probe("jelly/failure-as-args", Args("(b'twisted.spread.pb.CopyableFailure' 3)")),
    probe("jelly/decimal-huge-exponent", Args("(b'decimal' 1 2147483647)")),
    probe("jelly/datetime-garbage", Args("(b'datetime' b'99 99 99')")),
    // --- banana: bad bytes, boundary and huge lengths ---
    probe("banana/unknown-type-0x88", Raw(&[0x01, 0x88])),
    probe("banana/unknown-type-0xff", Raw(&[0x01, 0xff])),
    probe("banana/vocab-index-0", Raw(&[0x00, VOCAB])),
    probe("banana/vocab-index-32", Raw(&[0x20, VOCAB])),
    probe("banana/prefix-64-bytes", Build(|_| long_prefix(64))),
    probe("banana/prefix-65-bytes", Build(|_| long_prefix(65))),
    slow("banana/prefix-endless", Build(endless_prefix), 2),
    probe("banana/string-640KiB-exact", Build(method_640k)),
    probe("banana/string-640KiB-plus-1-header", Header(640 * 1024 + 1, STRING)),
    probe("banana/string-2^63-header", Header(1 << 63, STRING)),
    probe("banana/list-640K-header-only", Header(640 * 1024, LIST)),
    probe("banana/list-640K-plus-1-header", Header(640 * 1024 + 1, LIST)),
    slow("banana/list-max-of-empty-lists", Build(max_of_empty_lists), 3),
    probe("banana/float-short-body", Raw(&[FLOAT, 0x3f, 0xf8])),
    probe("banana/top-level-neg-zero", Raw(&[0x00, NEG])),
    // `81` alone is the integer 0: Twisted accepts it, never sends it.
    probe("banana/empty-prefix-int-arg", Build(empty_prefix_int)),
    // --- nesting ---
    probe("nesting/depth-60", JellyNest(60)),
    probe("nesting/depth-64", JellyNest(64)),
    probe("nesting/depth-65", JellyNest(65)),
    probe("nesting/depth-300", JellyNest(300)),
    probe("nesting/depth-100000-unterminated", BananaNest(100_000)),
    probe("nesting/wide-dict-100000-keys", Build(wide_dict)),
    // --- truncated streams ---
    close("truncated/inside-header", Raw(&[0x07])),
    close("truncated/inside-call", Build(|c| Payload::once(cut(c.bytes(CALL), |n| n / 2)))),
    close("truncated/inside-string-body", Raw(b"\x64\x82only a little")),
    // The probe's bytes complete a string the server is still waiting for.
    probe("truncated/call-then-probe", Build(|c| Payload::once(cut(c.bytes(CALL), |n| n - 3)))),
    close("truncated/clean-close", Raw(&[])),
    // --- floods ---
    slow("flood/10000-calls", Flood("(message {i} {target} {method} 1 (tuple) (dictionary))", 10_000), 10),
    slow("flood/5000-unknown-methods", Flood("(message {i} {target} b'nope' 1 (tuple) (dictionary))", 5_000), 10),
    slow("flood/3000-logins", Flood("(message {i} b'root' login 1 (tuple {user}) (dictionary))", 3_000), 10),
    slow("flood/20000-decrefs", Flood("(decref 31337)", 20_000), 10),
    // 100 strings of 640 KiB in one list: over every sane per-message bound.
    slow("flood/64MiB-of-strings", Build(strings_64m), 10),
];

/// Valid messages the random cases start from.
const RANDOM_TEMPLATES: &[&str] = &[
    CALL,
    "(message {id} {target} b'shutdown' 1 (tuple) (dictionary))",
    "(message {id} {target} {method} 1 (tuple (b'unicode' \"text\") -5 (None) (dictionary)) (dictionary))",
    "(answer 3 (None))",
    "(decref {mind})",
];

/// The edits a random case makes (those of the first version of this mode).
const RANDOM_OPS: &[Op] = &[Op::Flip, Op::Insert, Op::Delete, Op::Duplicate];

impl Spec {
    fn build(&self, c: &Ctx) -> Payload {
        match *self {
            Text(t) => Payload::once(c.bytes(t)),
            Args(items) => Payload::once(c.bytes(&format!(
                "(message {{id}} {{target}} {{method}} 1 (tuple {items}) (dictionary))"
            ))),
            Raw(b) => Payload::once(b.to_vec()),
            Header(n, ty) => Payload::once(header(n, ty)),
            Flood(t, count) if t.contains("{i}") => {
                let mut v = Vec::new();
                for i in 0..count as i64 {
                    v.extend(c.bytes(&t.replace("{i}", &(c.id + i).to_string())));
                }
                Payload::once(v)
            }
            Flood(t, count) => Payload {
                pieces: vec![Piece {
                    bytes: c.bytes(t),
                    repeat: count,
                }],
                after: After::Probe,
                patience: 1,
            },
            JellyNest(depth) => Payload::once(call_with_raw_args(c, tuple_around(depth))),
            BananaNest(depth) => {
                let mut v = Vec::with_capacity(depth * 2 + 2);
                for _ in 0..depth {
                    v.extend_from_slice(&[0x01, LIST]);
                }
                v.extend_from_slice(&[0x01, INT]);
                Payload::once(v)
            }
            Build(f) => f(c),
        }
    }
}

/// One case of a run.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Table(&'static Row),
    Random(u64),
    Replay(Arc<Recording>, u64),
}

impl Case {
    pub fn build(&self, c: &Ctx) -> Payload {
        match &self.kind {
            Kind::Table(row) => row.spec.build(c).after(row.after, row.patience),
            Kind::Random(seed) => random_case(c, *seed),
            Kind::Replay(rec, seed) => rec.case(c, *seed),
        }
    }
}

/// Which cases a run has, in order: the table, then `random` random ones, then
/// `replay_cases` per recording; everything random comes from `seed`.
pub fn all(
    seed: u64,
    table: bool,
    random: usize,
    recordings: &[Arc<Recording>],
    replay_cases: usize,
) -> Vec<Case> {
    let mut v: Vec<Case> = Vec::new();
    if table {
        v.extend(TABLE.iter().map(|row| Case {
            name: row.name.to_owned(),
            kind: Kind::Table(row),
        }));
    }
    let mut rng = Rng::new(seed);
    for n in 0..random {
        v.push(Case {
            name: format!("random/{seed}-{n}"),
            kind: Kind::Random(rng.next_u64()),
        });
    }
    for rec in recordings {
        let mut rng = Rng::new(seed ^ rec.seed_salt());
        for n in 0..replay_cases {
            v.push(Case {
                name: format!("replay/{}/{seed}-{n}", rec.name),
                kind: Kind::Replay(rec.clone(), rng.next_u64()),
            });
        }
    }
    v
}

/// A valid message with one to four random edits.
fn random_case(c: &Ctx, seed: u64) -> Payload {
    let mut rng = Rng::new(seed);
    let template = RANDOM_TEMPLATES[rng.below(RANDOM_TEMPLATES.len())];
    let mut v = c.bytes(template);
    for _ in 0..1 + rng.below(4) {
        let op = RANDOM_OPS[rng.below(RANDOM_OPS.len())];
        mutate::apply(op, &mut v, &[], &mut rng);
    }
    Payload::once(v)
}

/// `bytes` cut to `keep(len)` bytes.
fn cut(mut bytes: Vec<u8>, keep: impl Fn(usize) -> usize) -> Vec<u8> {
    let n = keep(bytes.len());
    bytes.truncate(n);
    bytes
}

/// `(message id target method 1 <args bytes> (dictionary))` with hand-made args.
fn call_with_raw_args(c: &Ctx, args: Vec<u8>) -> Vec<u8> {
    let mut v = header(7, LIST);
    v.extend(c.bytes("message {id} {target} {method} 1"));
    v.extend(args);
    v.extend(c.bytes("(dictionary)"));
    v
}

/// `(tuple <depth nested jelly lists around 1>)` as bytes.
fn tuple_around(depth: usize) -> Vec<u8> {
    let tag = from_notation("list").unwrap_or_default();
    let mut v = header(2, LIST);
    v.extend(from_notation("tuple").unwrap_or_default());
    for _ in 0..depth {
        v.extend(header(2, LIST));
        v.extend(&tag);
    }
    v.extend_from_slice(&[0x01, INT]);
    v
}

fn huge_request_id(c: &Ctx) -> Payload {
    let mut v = header(7, LIST);
    v.extend(c.bytes("message"));
    v.extend(std::iter::repeat_n(0x7f, 64));
    v.push(LONGINT);
    v.extend(c.bytes("{target} {method} 1 (tuple) (dictionary)"));
    Payload::once(v)
}

fn long_prefix(n: usize) -> Payload {
    let mut v = vec![0x7f; n];
    v.push(INT);
    Payload::once(v)
}

fn endless_prefix(_: &Ctx) -> Payload {
    Payload {
        pieces: vec![Piece {
            bytes: vec![0x00; 4096],
            repeat: 256,
        }],
        after: After::Probe,
        patience: 1,
    }
}

fn method_640k(c: &Ctx) -> Payload {
    let mut v = header(7, LIST);
    v.extend(c.bytes("message {id} {target}"));
    v.extend(header(640 * 1024, STRING));
    v.extend(std::iter::repeat_n(b'k', 640 * 1024));
    v.extend(c.bytes("1 (tuple) (dictionary)"));
    Payload::once(v)
}

/// A call whose args list declares the most elements a Twisted peer accepts, all
/// empty lists, sent as runs.
fn max_of_empty_lists(c: &Ctx) -> Payload {
    let mut head = header(7, LIST);
    head.extend(c.bytes("message {id} {target} {method} 1"));
    head.extend(header(640 * 1024, LIST));
    head.extend(from_notation("tuple").unwrap_or_default());
    Payload {
        pieces: vec![
            Piece {
                bytes: head,
                repeat: 1,
            },
            Piece {
                bytes: vec![0x00, LIST],
                repeat: 640 * 1024 - 1,
            },
            Piece {
                bytes: c.bytes("(dictionary)"),
                repeat: 1,
            },
        ],
        after: After::Probe,
        patience: 1,
    }
}

fn empty_prefix_int(c: &Ctx) -> Payload {
    let mut args = header(2, LIST);
    args.extend(from_notation("tuple").unwrap_or_default());
    args.push(INT);
    Payload::once(call_with_raw_args(c, args))
}

fn wide_dict(c: &Ctx) -> Payload {
    let mut d = String::from("(dictionary");
    for i in 0..100_000 {
        d.push_str(&format!(" ({i} {i})"));
    }
    d.push(')');
    Payload::once(c.bytes(&format!(
        "(message {{id}} {{target}} {{method}} 1 (tuple {d}) (dictionary))"
    )))
}

fn strings_64m(_: &Ctx) -> Payload {
    let mut head = header(100, LIST);
    head.extend(header(640 * 1024, STRING));
    let mut body = vec![b'x'; 640 * 1024];
    body.extend(header(640 * 1024, STRING));
    Payload {
        pieces: vec![
            Piece {
                bytes: head,
                repeat: 1,
            },
            Piece {
                bytes: body,
                repeat: 99,
            },
        ],
        after: After::Probe,
        patience: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        let c = Ctx::example("keepalive");
        for row in TABLE {
            if let Text(t) | Flood(t, _) = row.spec {
                let filled = c.fill(&t.replace("{i}", "1"));
                assert!(
                    pbwire::notation::parse(&filled).is_ok(),
                    "{}: {filled}",
                    row.name
                );
            }
            if let Args(items) = row.spec {
                assert!(pbwire::notation::parse(items).is_ok(), "{}", row.name);
            }
        }
        for t in RANDOM_TEMPLATES {
            assert!(pbwire::notation::parse(&c.fill(t)).is_ok(), "{t}");
        }
    }

    #[test]
    fn the_table_keeps_every_case_of_the_first_version() {
        let names: std::collections::HashSet<_> = TABLE.iter().map(|r| r.name).collect();
        assert_eq!(names.len(), TABLE.len());
        assert_eq!(TABLE.len(), 88);
        assert_eq!(all(1, true, 50, &[], 0).len(), 138);
    }

    #[test]
    fn the_templates_make_the_bytes_twisted_would_send() {
        let c = Ctx::example("keepalive");
        let call = c.bytes(CALL);
        let message = pbwire::pb::Message::Call(pbwire::pb::Call {
            request_id: 3,
            object: pbwire::pb::ObjectId::Id(1),
            method: bytes::Bytes::from_static(b"keepalive"),
            answer_required: true,
            args: vec![],
            kwargs: vec![],
        });
        let element = pbwire::pb::encode(&message, pbwire::banana::Dialect::Pb);
        assert_eq!(Some(call.clone()), element.ok().map(|e| enc(&e)));
        let nest = TABLE.iter().find(|r| r.name == "nesting/depth-60");
        let nest = nest.map(|r| r.spec.build(&c).len());
        assert_eq!(nest, Some(call.len() - 4 + 2 + 2 + 60 * 4 + 2));
    }
}
