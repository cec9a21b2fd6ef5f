//! The mutation cases: each turns the logged-in session's ids into the exact bytes to
//! send. Grouped as the brief of the mode: wrong types, huge and boundary lengths,
//! deep nesting, unknown ids and methods, forbidden jelly, truncated streams, floods,
//! and seeded random byte mutations of valid messages.

use super::wire::*;
use pbwire::banana::Element;

/// What a case knows about the session it runs on.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// The request id the mutated call should use (the next one in sequence).
    pub id: i64,
    /// The server's avatar object for this worker.
    pub avatar: i64,
    /// This side's mind object.
    pub mind: i64,
}

/// Bytes to send, as runs of repeated pieces (exact, and compact to print).
#[derive(Debug, Clone)]
pub struct Piece {
    pub bytes: Vec<u8>,
    pub repeat: usize,
}

/// What follows the mutated bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// A valid `keepalive()` call on the avatar: answered means the server still serves.
    Probe,
    /// Close the sending side: how does the server treat a stream that ends here?
    HalfClose,
}

#[derive(Debug, Clone)]
pub struct Payload {
    pub pieces: Vec<Piece>,
    pub after: After,
    /// Multiplies the reply timeout (floods need longer).
    pub patience: u32,
}

type Build = Box<dyn Fn(&Ctx) -> Payload + Send + Sync>;

pub struct Case {
    pub name: String,
    pub build: Build,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

fn once(bytes: Vec<u8>) -> Payload {
    Payload {
        pieces: vec![Piece { bytes, repeat: 1 }],
        after: After::Probe,
        patience: 1,
    }
}

fn el(e: Element) -> Payload {
    once(enc(&e))
}

fn case(name: &str, build: impl Fn(&Ctx) -> Payload + Send + Sync + 'static) -> Case {
    Case {
        name: name.to_owned(),
        build: Box::new(build),
    }
}

/// A keepalive call on the avatar with the given parts replaced.
fn keepalive(c: &Ctx) -> Element {
    call(
        c.id,
        int(c.avatar),
        raw(b"keepalive"),
        tuple(vec![]),
        dict(),
    )
}

/// The call `keepalive` with its args replaced by `args`.
fn with_args(c: &Ctx, args: Element) -> Element {
    call(c.id, int(c.avatar), raw(b"keepalive"), args, dict())
}

/// `depth` nested untagged banana lists around an int: a banana-level stress (not
/// valid jelly).
fn nested(depth: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(depth * 2 + 2);
    for _ in 0..depth {
        v.extend_from_slice(&[0x01, LIST]);
    }
    v.extend_from_slice(&[0x01, INT]);
    v
}

/// `depth` nested jelly lists `(list (list ... 1))`: valid jelly, only deep.
fn nested_jelly(depth: usize) -> Vec<u8> {
    let tag = enc(&s("list"));
    let mut v = Vec::with_capacity(depth * (tag.len() + 2) + 2);
    for _ in 0..depth {
        v.extend(header(2, LIST));
        v.extend(&tag);
    }
    v.extend_from_slice(&[0x01, INT]);
    v
}

/// `(message id avatar keepalive 1 <args bytes> (dictionary))` with raw args bytes.
fn call_with_raw_args(c: &Ctx, args: Vec<u8>) -> Vec<u8> {
    let mut v = header(7, LIST);
    v.extend(enc(&s("message")));
    v.extend(enc(&int(c.id)));
    v.extend(enc(&int(c.avatar)));
    v.extend(enc(&raw(b"keepalive")));
    v.extend(enc(&int(1)));
    v.extend(args);
    v.extend(enc(&dict()));
    v
}

pub fn all(seed: u64, random: usize) -> Vec<Case> {
    let mut v = vec![
        // A valid call first: the baseline every other case is judged against.
        case("valid/keepalive", |c| el(keepalive(c))),
        // --- wrong types and shapes ---
        case("type/request-id-string", |c| {
            el(list(vec![
                s("message"),
                raw(b"7"),
                int(c.avatar),
                raw(b"keepalive"),
                int(1),
                tuple(vec![]),
                dict(),
            ]))
        }),
        case("type/object-id-list", |c| {
            el(list(vec![
                s("message"),
                int(c.id),
                list(vec![int(1)]),
                raw(b"keepalive"),
                int(1),
                tuple(vec![]),
                dict(),
            ]))
        }),
        case("type/method-int", |c| {
            el(list(vec![
                s("message"),
                int(c.id),
                int(c.avatar),
                int(5),
                int(1),
                tuple(vec![]),
                dict(),
            ]))
        }),
        case("type/answer-required-string", |c| {
            el(list(vec![
                s("message"),
                int(c.id),
                int(c.avatar),
                raw(b"keepalive"),
                raw(b"yes"),
                tuple(vec![]),
                dict(),
            ]))
        }),
        case("type/args-int", |c| el(with_args(c, int(3)))),
        case("type/args-dict", |c| el(with_args(c, dict()))),
        case("type/kwargs-list", |c| {
            el(call(
                c.id,
                int(c.avatar),
                raw(b"keepalive"),
                tuple(vec![]),
                list(vec![s("list")]),
            ))
        }),
        case("type/kwargs-bad-pairs", |c| {
            el(call(
                c.id,
                int(c.avatar),
                raw(b"keepalive"),
                tuple(vec![]),
                list(vec![s("dictionary"), list(vec![int(1)])]),
            ))
        }),
        case("type/arity-short", |c| {
            el(list(vec![
                s("message"),
                int(c.id),
                int(c.avatar),
                raw(b"keepalive"),
                int(1),
                tuple(vec![]),
            ]))
        }),
        case("type/arity-long", |c| {
            el(list(vec![
                s("message"),
                int(c.id),
                int(c.avatar),
                raw(b"keepalive"),
                int(1),
                tuple(vec![]),
                dict(),
                int(0),
            ]))
        }),
        case("type/top-level-int", |_| el(int(42))),
        case("type/top-level-string", |_| el(raw(b"message"))),
        case("type/top-level-empty-list", |_| el(list(vec![]))),
        case("type/unknown-message-name", |_| {
            el(list(vec![raw(b"frobnicate"), int(1)]))
        }),
        case("type/version-mismatch", |_| {
            el(list(vec![s("version"), int(7)]))
        }),
        case("type/version-again", |_| {
            el(list(vec![s("version"), int(6)]))
        }),
        case("type/float-request-id", |c| {
            el(list(vec![
                s("message"),
                Element::Float(f64::NAN),
                int(c.avatar),
                raw(b"keepalive"),
                int(1),
                tuple(vec![]),
                dict(),
            ]))
        }),
        case("type/negative-request-id", |c| {
            el(call(
                -1,
                int(c.avatar),
                raw(b"keepalive"),
                tuple(vec![]),
                dict(),
            ))
        }),
        case("type/huge-request-id-448-bits", |c| {
            let mut v = header(7, LIST);
            v.extend(enc(&s("message")));
            v.extend(std::iter::repeat_n(0x7f, 64));
            v.push(LONGINT);
            v.extend(enc(&int(c.avatar)));
            v.extend(enc(&raw(b"keepalive")));
            v.extend(enc(&int(1)));
            v.extend(enc(&tuple(vec![])));
            v.extend(enc(&dict()));
            once(v)
        }),
        case("type/float-object-id", |c| {
            el(list(vec![
                s("message"),
                int(c.id),
                Element::Float(1.0),
                raw(b"keepalive"),
                int(1),
                tuple(vec![]),
                dict(),
            ]))
        }),
        // --- unknown ids and methods ---
        case("unknown/object-id", |c| {
            el(call(
                c.id,
                int(999_999),
                raw(b"keepalive"),
                tuple(vec![]),
                dict(),
            ))
        }),
        case("unknown/object-id-negative", |c| {
            el(call(
                c.id,
                int(-5),
                raw(b"keepalive"),
                tuple(vec![]),
                dict(),
            ))
        }),
        case("unknown/method-on-avatar", |c| {
            el(call(
                c.id,
                int(c.avatar),
                raw(b"frobnicate"),
                tuple(vec![]),
                dict(),
            ))
        }),
        case("unknown/method-on-root", |c| {
            el(call(
                c.id,
                raw(b"root"),
                raw(b"frobnicate"),
                tuple(vec![]),
                dict(),
            ))
        }),
        case("unknown/method-empty-name", |c| {
            el(call(c.id, int(c.avatar), raw(b""), tuple(vec![]), dict()))
        }),
        case("unknown/method-non-utf8", |c| {
            el(call(
                c.id,
                int(c.avatar),
                raw(b"\xff\xfe"),
                tuple(vec![]),
                dict(),
            ))
        }),
        case("unknown/answer-id", |_| {
            el(list(vec![s("answer"), int(777_777), list(vec![s("None")])]))
        }),
        case("unknown/error-id", |_| {
            el(list(vec![s("error"), int(777_778), raw(b"boom")]))
        }),
        case("unknown/decref-id", |_| {
            el(list(vec![s("decref"), int(888_888)]))
        }),
        case("unknown/decref-avatar-twice", |c| {
            let d = enc(&list(vec![s("decref"), int(c.avatar)]));
            Payload {
                pieces: vec![Piece {
                    bytes: d,
                    repeat: 2,
                }],
                after: After::Probe,
                patience: 1,
            }
        }),
        case("unknown/decache", |_| el(list(vec![s("decache"), int(5)]))),
        case("unknown/uncache", |_| el(list(vec![s("uncache"), int(5)]))),
        case("unknown/cachemessage", |c| {
            el(list(vec![
                s("cachemessage"),
                int(c.id),
                int(c.avatar),
                raw(b"keepalive"),
                int(1),
                tuple(vec![]),
                dict(),
            ]))
        }),
        case("unknown/didNotUnderstand", |_| {
            el(list(vec![raw(b"didNotUnderstand"), raw(b"x")]))
        }),
        case("unknown/login-again-wrong-type", |c| {
            el(call(
                c.id,
                raw(b"root"),
                s("login"),
                tuple(vec![int(5)]),
                dict(),
            ))
        }),
        case("unknown/respond-on-avatar", |c| {
            el(call(
                c.id,
                int(c.avatar),
                raw(b"respond"),
                tuple(vec![raw(&[0; 16]), list(vec![s("None")])]),
                dict(),
            ))
        }),
        case("unknown/keepalive-with-args", |c| {
            el(with_args(c, tuple(vec![int(1), unicode("x")])))
        }),
        case("unknown/shutdown-with-args", |c| {
            el(call(
                c.id,
                int(c.avatar),
                raw(b"shutdown"),
                tuple(vec![int(1), int(2), int(3)]),
                dict(),
            ))
        }),
        // --- forbidden and malformed jelly ---
        case("jelly/class", |c| {
            el(with_args(
                c,
                tuple(vec![list(vec![s("class"), raw(b"os.system")])]),
            ))
        }),
        case("jelly/module", |c| {
            el(with_args(
                c,
                tuple(vec![list(vec![s("module"), raw(b"os")])]),
            ))
        }),
        case("jelly/function", |c| {
            el(with_args(
                c,
                tuple(vec![list(vec![s("function"), raw(b"os.system")])]),
            ))
        }),
        case("jelly/instance", |c| {
            el(with_args(
                c,
                tuple(vec![list(vec![
                    s("instance"),
                    list(vec![s("class"), raw(b"os.Foo")]),
                    dict(),
                ])]),
            ))
        }),
        case("jelly/unknown-copyable", |c| {
            el(with_args(
                c,
                tuple(vec![list(vec![raw(b"evil.Thing"), dict()])]),
            ))
        }),
        case("jelly/persistent", |c| {
            el(with_args(
                c,
                tuple(vec![list(vec![s("persistent"), raw(b"x")])]),
            ))
        }),
        case("jelly/unicode-invalid-utf8", |c| {
            el(with_args(
                c,
                tuple(vec![list(vec![raw(b"unicode"), raw(b"\xff\xfe\xc0")])]),
            ))
        }),
        case("jelly/unknown-dereference", |c| {
            el(with_args(
                c,
                tuple(vec![list(vec![s("dereference"), int(9)])]),
            ))
        }),
        case("jelly/duplicate-reference", |c| {
            let r = list(vec![s("reference"), int(1), tuple(vec![])]);
            el(with_args(c, tuple(vec![r.clone(), r])))
        }),
        case("jelly/cyclic-reference", |c| {
            el(with_args(
                c,
                tuple(vec![list(vec![
                    s("reference"),
                    int(1),
                    list(vec![s("list"), list(vec![s("dereference"), int(1)])]),
                ])]),
            ))
        }),
        case("jelly/boolean-bad", |c| {
            el(with_args(
                c,
                tuple(vec![list(vec![raw(b"boolean"), raw(b"maybe")])]),
            ))
        }),
        case("jelly/remote-negative", |c| {
            el(with_args(c, tuple(vec![list(vec![s("remote"), int(-1)])])))
        }),
        case("jelly/local-unknown", |c| {
            el(with_args(c, tuple(vec![list(vec![s("local"), int(4242)])])))
        }),
        case("jelly/cached", |c| {
            el(with_args(c, tuple(vec![list(vec![s("cached"), int(1)])])))
        }),
        case("jelly/failure-as-args", |c| {
            el(with_args(
                c,
                tuple(vec![list(vec![
                    raw(b"twisted.spread.pb.CopyableFailure"),
                    int(3),
                ])]),
            ))
        }),
        case("jelly/decimal-huge-exponent", |c| {
            el(with_args(
                c,
                tuple(vec![list(vec![
                    raw(b"decimal"),
                    int(1),
                    int(i64::from(i32::MAX)),
                ])]),
            ))
        }),
        case("jelly/datetime-garbage", |c| {
            el(with_args(
                c,
                tuple(vec![list(vec![raw(b"datetime"), raw(b"99 99 99")])]),
            ))
        }),
        // --- banana: bad bytes, boundary and huge lengths ---
        case("banana/unknown-type-0x88", |_| once(vec![0x01, 0x88])),
        case("banana/unknown-type-0xff", |_| once(vec![0x01, 0xff])),
        case("banana/vocab-index-0", |_| once(vec![0x00, VOCAB])),
        case("banana/vocab-index-32", |_| once(vec![0x20, VOCAB])),
        case("banana/prefix-64-bytes", |_| {
            let mut v = vec![0x7f; 64];
            v.push(INT);
            once(v)
        }),
        case("banana/prefix-65-bytes", |_| {
            let mut v = vec![0x7f; 65];
            v.push(INT);
            once(v)
        }),
        case("banana/prefix-endless", |_| Payload {
            pieces: vec![Piece {
                bytes: vec![0x00; 4096],
                repeat: 256,
            }],
            after: After::Probe,
            patience: 2,
        }),
        case("banana/string-640KiB-exact", |c| {
            let name = vec![b'k'; 640 * 1024];
            el(call(c.id, int(c.avatar), raw(&name), tuple(vec![]), dict()))
        }),
        case("banana/string-640KiB-plus-1-header", |_| {
            once(header(640 * 1024 + 1, STRING))
        }),
        case("banana/string-2^63-header", |_| {
            once(header(1 << 63, STRING))
        }),
        case("banana/list-640K-header-only", |_| {
            once(header(640 * 1024, LIST))
        }),
        case("banana/list-640K-plus-1-header", |_| {
            once(header(640 * 1024 + 1, LIST))
        }),
        case("banana/list-max-of-empty-lists", |c| {
            let mut args = header(640 * 1024, LIST);
            args.extend(enc(&s("tuple")));
            let body = vec![0x00, LIST];
            let mut v = call_with_raw_args(c, Vec::new());
            // The header, then 655,359 empty lists, then the kw dict: built as pieces.
            let tail = enc(&dict());
            v.truncate(v.len() - tail.len());
            v.extend(args);
            Payload {
                pieces: vec![
                    Piece {
                        bytes: v,
                        repeat: 1,
                    },
                    Piece {
                        bytes: body,
                        repeat: 640 * 1024 - 1,
                    },
                    Piece {
                        bytes: tail,
                        repeat: 1,
                    },
                ],
                after: After::Probe,
                patience: 3,
            }
        }),
        case("banana/float-short-body", |_| once(vec![FLOAT, 0x3f, 0xf8])),
        case("banana/top-level-neg-zero", |_| once(vec![0x00, NEG])),
        case("banana/empty-prefix-int-arg", |c| {
            // `81` alone is the integer 0: Twisted accepts it, never sends it.
            let mut args = header(2, LIST);
            args.extend(enc(&s("tuple")));
            args.push(INT);
            once(call_with_raw_args(c, args))
        }),
        // --- nesting ---
        case("nesting/depth-60", |c| {
            once(call_with_raw_args(c, tuple_around(60)))
        }),
        case("nesting/depth-64", |c| {
            once(call_with_raw_args(c, tuple_around(64)))
        }),
        case("nesting/depth-65", |c| {
            once(call_with_raw_args(c, tuple_around(65)))
        }),
        case("nesting/depth-300", |c| {
            once(call_with_raw_args(c, tuple_around(300)))
        }),
        case("nesting/depth-100000-unterminated", |_| {
            once(nested(100_000))
        }),
        case("nesting/wide-dict-100000-keys", |c| {
            let pairs = (0..100_000)
                .map(|i| list(vec![int(i), int(i)]))
                .collect::<Vec<_>>();
            let mut d = vec![s("dictionary")];
            d.extend(pairs);
            el(with_args(c, tuple(vec![list(d)])))
        }),
        // --- truncated streams ---
        case("truncated/inside-header", |_| Payload {
            pieces: vec![Piece {
                bytes: vec![0x07],
                repeat: 1,
            }],
            after: After::HalfClose,
            patience: 1,
        }),
        case("truncated/inside-call", |c| {
            let mut v = enc(&keepalive(c));
            v.truncate(v.len() / 2);
            Payload {
                pieces: vec![Piece {
                    bytes: v,
                    repeat: 1,
                }],
                after: After::HalfClose,
                patience: 1,
            }
        }),
        case("truncated/inside-string-body", |_| {
            let mut v = header(100, STRING);
            v.extend(b"only a little");
            Payload {
                pieces: vec![Piece {
                    bytes: v,
                    repeat: 1,
                }],
                after: After::HalfClose,
                patience: 1,
            }
        }),
        case("truncated/call-then-probe", |c| {
            // The probe's bytes complete a string the server is still waiting for.
            let mut v = enc(&keepalive(c));
            v.truncate(v.len() - 3);
            once(v)
        }),
        case("truncated/clean-close", |_| Payload {
            pieces: vec![],
            after: After::HalfClose,
            patience: 1,
        }),
        // --- floods ---
        case("flood/10000-keepalives", |c| {
            let mut v = Vec::new();
            for i in 0..10_000 {
                v.extend(enc(&call(
                    c.id + i,
                    int(c.avatar),
                    raw(b"keepalive"),
                    tuple(vec![]),
                    dict(),
                )));
            }
            Payload {
                pieces: vec![Piece {
                    bytes: v,
                    repeat: 1,
                }],
                after: After::Probe,
                patience: 10,
            }
        }),
        case("flood/5000-unknown-methods", |c| {
            let mut v = Vec::new();
            for i in 0..5_000 {
                v.extend(enc(&call(
                    c.id + i,
                    int(c.avatar),
                    raw(b"nope"),
                    tuple(vec![]),
                    dict(),
                )));
            }
            Payload {
                pieces: vec![Piece {
                    bytes: v,
                    repeat: 1,
                }],
                after: After::Probe,
                patience: 10,
            }
        }),
        case("flood/3000-logins", |c| {
            let mut v = Vec::new();
            for i in 0..3_000 {
                v.extend(enc(&call(
                    c.id + i,
                    raw(b"root"),
                    s("login"),
                    tuple(vec![raw(b"mut-0")]),
                    dict(),
                )));
            }
            Payload {
                pieces: vec![Piece {
                    bytes: v,
                    repeat: 1,
                }],
                after: After::Probe,
                patience: 10,
            }
        }),
        case("flood/20000-decrefs", |_| Payload {
            pieces: vec![Piece {
                bytes: enc(&list(vec![s("decref"), int(31_337)])),
                repeat: 20_000,
            }],
            after: After::Probe,
            patience: 10,
        }),
        case("flood/64MiB-of-strings", |_| {
            // A top-level list declaring 100 strings of 640 KiB: over every sane
            // per-message bound, unbounded in Twisted.
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
                patience: 10,
            }
        }),
    ];
    let mut rng = Rng::new(seed);
    for n in 0..random {
        let case_seed = rng.next();
        v.push(case(&format!("random/{seed}-{n}"), move |c| {
            random_case(c, case_seed)
        }));
    }
    v
}

/// `(tuple <depth nested jelly lists>)` as raw bytes.
fn tuple_around(depth: usize) -> Vec<u8> {
    let mut v = header(2, LIST);
    v.extend(enc(&s("tuple")));
    v.extend(nested_jelly(depth));
    v
}

/// A valid message with a few random byte edits (flip, insert, delete, duplicate).
fn random_case(c: &Ctx, seed: u64) -> Payload {
    let mut rng = Rng::new(seed);
    let templates = [
        enc(&keepalive(c)),
        enc(&call(
            c.id,
            int(c.avatar),
            raw(b"shutdown"),
            tuple(vec![]),
            dict(),
        )),
        enc(&with_args(
            c,
            tuple(vec![
                unicode("text"),
                int(-5),
                list(vec![s("None")]),
                dict(),
            ]),
        )),
        enc(&list(vec![s("answer"), int(3), list(vec![s("None")])])),
        enc(&list(vec![s("decref"), int(c.mind)])),
    ];
    let mut v = templates[rng.below(templates.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(4) {
            0 if at < v.len() => v[at] ^= 1 << rng.below(8),
            1 => v.insert(at, rng.next() as u8),
            2 if at < v.len() => {
                v.remove(at);
            }
            _ => {
                let end = (at + 1 + rng.below(8)).min(v.len());
                let dup = v[at.min(end)..end].to_vec();
                v.splice(at..at, dup);
            }
        }
    }
    once(v)
}
