//! One test per fixture file: the vectors real Twisted produced (`fixtures/vectors`) and
//! the recorded buildbot sessions (`fixtures/sessions`).
//!
//! Vectors: decode, compare with the expected expressions (and, for jelly vectors, the
//! expected value), re-encode, compare bytes; invalid vectors must fail with the
//! expected error at the expected offset. Sessions: each direction decodes as the
//! expressions Twisted's own decoder printed, every PB message parses, and re-encoding
//! the typed messages reproduces the stream byte for byte.

use bytes::{Bytes, BytesMut};
use libtest_mimic::{Arguments, Failed, Trial};
use pbwire::banana::{self, exactly_equal, negotiation, Decoder, Dialect, Element};
use pbwire::jelly::{self, Copyable, Security, Value};
use pbwire::{login, notation, pb, Integer, Limits};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut trials = Vec::new();
    for path in files(&root.join("vectors"), "json") {
        let name = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        trials.push(Trial::test(name, move || vector(&path)));
    }
    for dir in dirs(&root.join("sessions")) {
        for direction in ["m2w", "w2m"] {
            let dir = dir.clone();
            let name = format!(
                "{}/{direction}",
                dir.strip_prefix(&root).unwrap_or(&dir).display()
            );
            trials.push(Trial::test(name, move || session(&dir, direction)));
        }
        let d = dir.clone();
        let name = format!(
            "{}/login",
            dir.strip_prefix(&root).unwrap_or(&dir).display()
        );
        trials.push(Trial::test(name, move || session_login(&d)));
    }
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == ext) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("m2w.bin").exists())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(msg().into())
    }
}

/// What decoding a whole stream gave: the expressions, their offsets, and the error
/// that ended it, if any.
struct Decoded {
    elements: Vec<Element>,
    offsets: Vec<u64>,
    error: Option<banana::DecodeError>,
}

fn decode_stream(bytes: &[u8], dialect: Option<Dialect>) -> Decoded {
    let mut d = Decoder::new(Limits::default());
    let mut negotiating = dialect.is_none();
    d.set_dialect(dialect.unwrap_or(Dialect::None));
    let mut buf = BytesMut::from(bytes);
    let mut out = Decoded {
        elements: Vec::new(),
        offsets: Vec::new(),
        error: None,
    };
    loop {
        match d.decode(&mut buf) {
            Ok(Some(e)) => {
                if negotiating {
                    let chosen = match &e {
                        Element::List(_) => negotiation::choose(&e),
                        _ => negotiation::accept(&e),
                    };
                    d.set_dialect(chosen.unwrap_or(Dialect::None));
                    negotiating = false;
                }
                out.offsets.push(d.expression_start());
                out.elements.push(e);
            }
            Ok(None) => {
                out.error = d.finish(&buf).err();
                return out;
            }
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        }
    }
}

fn encode_all(elements: &[Element]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for e in elements {
        banana::encode(e, &mut out).expect("decoded elements re-encode");
    }
    out.to_vec()
}

fn vector(path: &Path) -> Result<(), Failed> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let fx: Json = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let dialect = match fx["dialect"].as_str() {
        Some("pb") => Dialect::Pb,
        Some("none") => Dialect::None,
        other => return Err(format!("bad dialect {other:?}").into()),
    };
    let bytes = hex::decode(fx["hex"].as_str().unwrap_or_default()).map_err(|e| e.to_string())?;
    let expected: Vec<Element> = fx["sexp"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Json::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .map(|t| notation::parse(&t))
        .transpose()
        .map_err(|e| format!("fixture sexp: {e}"))?
        .unwrap_or_default();
    let got = decode_stream(&bytes, Some(dialect));
    let error = &fx["error"];
    let layer = error["layer"].as_str();

    // Expressions before any error must match exactly (VOCAB vs STRING included).
    let prefix = got.elements.len().min(expected.len());
    for (i, (g, e)) in got.elements.iter().zip(&expected).enumerate().take(prefix) {
        check(exactly_equal(g, e), || {
            format!(
                "expression {i}: got {} want {}",
                notation::to_string(g),
                notation::to_string(e)
            )
        })?;
    }

    if layer == Some("banana") {
        let kind = error["kind"].as_str().unwrap_or_default();
        let offset = error["offset"].as_u64();
        let Some(e) = got.error else {
            return Err(format!("expected banana error {kind}, decoded fine").into());
        };
        check(e.kind.name() == kind, || {
            format!("error kind {} want {kind}", e.kind.name())
        })?;
        check(Some(e.offset) == offset, || {
            format!("error offset {} want {offset:?}", e.offset)
        })?;
        return Ok(());
    }
    if let Some(e) = got.error {
        return Err(format!("unexpected banana error: {e}").into());
    }
    check(got.elements.len() == expected.len(), || {
        format!(
            "{} expressions, want {}",
            got.elements.len(),
            expected.len()
        )
    })?;
    if fx["canonical"].as_bool() == Some(false) {
        // Bytes Twisted accepts but never writes: the re-encoding is the canonical form
        // of the same expressions.
        let again = decode_stream(&encode_all(&got.elements), Some(dialect));
        check(
            again.error.is_none() && again.elements.len() == got.elements.len(),
            || "re-encoding failed".into(),
        )?;
        for (a, b) in again.elements.iter().zip(&got.elements) {
            check(a.same_meaning(b), || {
                format!("canonical form of {} differs", notation::to_string(b))
            })?;
        }
    } else {
        check(encode_all(&got.elements) == bytes, || {
            "re-encoding changed the bytes".into()
        })?;
    }
    if let Some(kind) = fx["pbwire"]["kind"].as_str() {
        // Twisted accepts this; pbwire rejects it on purpose (the fixture says why).
        let errors: Vec<_> = got
            .elements
            .iter()
            .filter_map(|e| jelly::decode(e).err())
            .collect();
        return check(errors.first().map(|e| e.kind.name()) == Some(kind), || {
            format!("pbwire should reject with {kind}, got {errors:?}")
        });
    }

    match layer {
        Some("jelly") => {
            let kind = error["kind"].as_str().unwrap_or_default();
            let offset = error["offset"].as_u64();
            for (e, off) in got.elements.iter().zip(&got.offsets) {
                if let Err(err) = jelly::decode(e) {
                    check(err.kind.name() == kind, || {
                        format!("jelly error {err}, want {kind}")
                    })?;
                    return check(Some(*off) == offset, || {
                        format!("error offset {off} want {offset:?}")
                    });
                }
            }
            Err(format!("expected jelly error {kind}, unjellied fine").into())
        }
        Some("pb") => {
            let kind = error["kind"].as_str().unwrap_or_default();
            for e in &got.elements {
                if let Err(err) = pb::decode(e, &Security::default()) {
                    return check(err.kind.name() == kind, || {
                        format!("pb error {err}, want {kind}")
                    });
                }
            }
            Err(format!("expected pb error {kind}, decoded fine").into())
        }
        Some("session") => {
            // Well-formed messages that a fresh connection's state must refuse.
            let kind = error["kind"].as_str().unwrap_or_default();
            let mut session = pb::Session::new(16, 16);
            for e in &got.elements {
                let m = pb::decode(e, &Security::default())
                    .map_err(|err| format!("pb decode: {err}"))?;
                if let Err(err) = session.receive(&m) {
                    return check(err.name() == kind, || {
                        format!("session error {err}, want {kind}")
                    });
                }
            }
            Err(format!("expected session error {kind}, accepted").into())
        }
        Some(other) => Err(format!("unknown error layer {other}").into()),
        None => {
            // Present means a jelly vector, even as `null` (the value None).
            match fx.get("jelly") {
                Some(j) => jelly_vector(&got.elements, j, dialect, &bytes),
                None => Ok(()),
            }
        }
    }
}

fn jelly_vector(
    elements: &[Element],
    want: &Json,
    dialect: Dialect,
    bytes: &[u8],
) -> Result<(), Failed> {
    let [element] = elements else {
        return Err(format!("jelly vector holds {} expressions", elements.len()).into());
    };
    let security = Security {
        allowed_classes: allowed_classes(want),
    };
    let got = jelly::decode_with(element, &security).map_err(|e| format!("unjelly: {e}"))?;
    let want = typed(want)?;
    check(same_value(&got, &want), || {
        format!("value {got:?}\nwant {want:?}")
    })?;
    let again = jelly::encode(&got, dialect).map_err(|e| e.to_string())?;
    check(encode_all(&[again]) == bytes, || {
        "re-jellying changed the bytes".into()
    })
}

/// Copyable classes the vector's value contains (the test allows exactly those).
fn allowed_classes(j: &Json) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut stack = vec![j];
    while let Some(j) = stack.pop() {
        match j {
            Json::Object(m) => {
                if let Some(Json::Array(c)) = m.get("copyable") {
                    if let Some(name) = c.first().and_then(Json::as_str) {
                        out.push(Bytes::copy_from_slice(name.as_bytes()));
                    }
                }
                stack.extend(m.values());
            }
            Json::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    out
}

/// Equality with floats compared by bits (NaN equals NaN).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => {
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        (Value::List(x), Value::List(y))
        | (Value::Tuple(x), Value::Tuple(y))
        | (Value::Set(x), Value::Set(y))
        | (Value::FrozenSet(x), Value::FrozenSet(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
        }
        (Value::Dict(x), Value::Dict(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| same_value(k1, k2) && same_value(v1, v2))
        }
        (Value::Reference(i, x), Value::Reference(j, y)) => i == j && same_value(x, y),
        (Value::Copyable(x), Value::Copyable(y)) => {
            x.class == y.class && same_value(&x.state, &y.state)
        }
        _ => a == b,
    }
}

/// The typed JSON of fixtures/README.md → a value.
fn typed(j: &Json) -> Result<Value, Failed> {
    let seq = |v: &Json| -> Result<Vec<Value>, Failed> {
        v.as_array()
            .ok_or("expected an array")?
            .iter()
            .map(typed)
            .collect()
    };
    let hexb = |v: &Json| -> Result<Bytes, Failed> {
        Ok(Bytes::from(
            hex::decode(v.as_str().ok_or("expected hex")?).map_err(|e| e.to_string())?,
        ))
    };
    let text = |v: &Json| -> Result<Bytes, Failed> {
        Ok(Bytes::copy_from_slice(
            v.as_str().ok_or("expected a string")?.as_bytes(),
        ))
    };
    let int = |v: &Json| -> Result<Integer, Failed> {
        match v {
            Json::String(s) => s.parse::<Integer>().map_err(|e| e.to_string().into()),
            Json::Number(n) => n
                .as_i64()
                .map(Integer::from)
                .ok_or_else(|| "bad int".into()),
            _ => Err("expected an integer".into()),
        }
    };
    let id = |v: &Json| v.as_i64().ok_or_else(|| Failed::from("expected an id"));
    Ok(match j {
        Json::Null => Value::None,
        Json::Bool(b) => Value::Bool(*b),
        Json::Object(m) if m.len() == 1 => {
            let (k, v) = m.iter().next().ok_or("empty object")?;
            match k.as_str() {
                "int" => Value::Int(int(v)?),
                "float" => Value::Float(float(v.as_str().ok_or("float")?)?),
                "bytes" => Value::Bytes(hexb(v)?),
                "text" => Value::text(v.as_str().ok_or("text")?),
                "list" => Value::List(seq(v)?),
                "tuple" => Value::Tuple(seq(v)?),
                "set" => Value::Set(seq(v)?),
                "frozenset" => Value::FrozenSet(seq(v)?),
                "dict" => Value::Dict(
                    v.as_array()
                        .ok_or("dict")?
                        .iter()
                        .map(|p| match p.as_array().map(Vec::as_slice) {
                            Some([k, v]) => Ok((typed(k)?, typed(v)?)),
                            _ => Err(Failed::from("dict pair")),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                "reference" => match v.as_array().map(Vec::as_slice) {
                    Some([n, x]) => Value::Reference(id(n)?, Box::new(typed(x)?)),
                    _ => return Err("reference".into()),
                },
                "dereference" => Value::Dereference(id(v)?),
                "remote" => Value::Remote(id(v)?),
                "local" => Value::Local(id(v)?),
                "copyable" => match v.as_array().map(Vec::as_slice) {
                    Some([c, s]) => Value::Copyable(Box::new(Copyable {
                        class: text(c)?,
                        state: typed(s)?,
                    })),
                    _ => return Err("copyable".into()),
                },
                "unpersistable" => Value::Unpersistable(hexb(v)?),
                "datetime" => Value::DateTime(text(v)?),
                "date" => Value::Date(text(v)?),
                "time" => Value::Time(text(v)?),
                "timedelta" => Value::TimeDelta(text(v)?),
                "decimal" => match v.as_array().map(Vec::as_slice) {
                    Some([d, e]) => Value::Decimal {
                        digits: int(d)?,
                        exponent: int(e)?,
                    },
                    _ => return Err("decimal".into()),
                },
                other => return Err(format!("unknown typed JSON key {other}").into()),
            }
        }
        other => return Err(format!("bad typed JSON {other}").into()),
    })
}

fn float(s: &str) -> Result<f64, Failed> {
    match s {
        "nan" => Ok(f64::NAN),
        "inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse::<f64>().map_err(|e| e.to_string().into()),
    }
}

/// One direction of a recorded session.
fn session(dir: &Path, direction: &str) -> Result<(), Failed> {
    let bytes = std::fs::read(dir.join(format!("{direction}.bin"))).map_err(|e| e.to_string())?;
    let got = decode_stream(&bytes, None);
    if let Some(e) = got.error {
        return Err(format!("decode: {e}").into());
    }
    // Twisted's decoder cannot tell VOCAB from STRING, so compare meaning here; the
    // byte-exact re-encode below checks the distinction.
    let sexp = std::fs::read_to_string(dir.join(format!("{direction}.sexp")))
        .map_err(|e| e.to_string())?;
    let expected = notation::parse(&sexp).map_err(|e| format!("{direction}.sexp: {e}"))?;
    check(got.elements.len() == expected.len(), || {
        format!(
            "{} expressions, Twisted decoded {}",
            got.elements.len(),
            expected.len()
        )
    })?;
    for (i, (g, e)) in got.elements.iter().zip(&expected).enumerate() {
        check(g.same_meaning(e), || {
            format!(
                "expression {i}: got {} Twisted {}",
                notation::to_string(g),
                notation::to_string(e)
            )
        })?;
    }
    check(encode_all(&got.elements) == bytes, || {
        "re-encoding changed the bytes".into()
    })?;
    // After negotiation every expression is a PB message; typed messages re-encode to
    // the same bytes.
    let mut again = encode_all(&got.elements[..1]);
    for (e, off) in got.elements.iter().zip(&got.offsets).skip(1) {
        let m =
            pb::decode(e, &Security::default()).map_err(|err| format!("offset {off}: {err}"))?;
        let back = pb::encode(&m, Dialect::Pb).map_err(|err| err.to_string())?;
        check(exactly_equal(&back, e), || {
            format!(
                "offset {off}: re-encoded {} from {}",
                notation::to_string(&back),
                notation::to_string(e)
            )
        })?;
        again.extend(encode_all(&[back]));
    }
    check(again == bytes, || {
        "typed re-encoding changed the bytes".into()
    })
}

/// The login in a recorded session: the worker's response must be
/// MD5(MD5(password) ‖ challenge) for the password in meta.json.
fn session_login(dir: &Path) -> Result<(), Failed> {
    let meta: Json = serde_json::from_str(
        &std::fs::read_to_string(dir.join("meta.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let password = meta["worker"]["password"]
        .as_str()
        .ok_or("meta.json has no worker.password")?;
    let messages = |direction: &str| -> Result<Vec<pb::Message>, Failed> {
        let bytes =
            std::fs::read(dir.join(format!("{direction}.bin"))).map_err(|e| e.to_string())?;
        let got = decode_stream(&bytes, None);
        got.elements[1..]
            .iter()
            .map(|e| pb::decode(e, &Security::default()).map_err(|e| e.to_string().into()))
            .collect()
    };
    let (m2w, w2m) = (messages("m2w")?, messages("w2m")?);
    let login_id = w2m
        .iter()
        .find_map(|m| match m {
            pb::Message::Call(c) if &c.method[..] == b"login" => Some(c.request_id),
            _ => None,
        })
        .ok_or("no login call")?;
    let challenge = m2w
        .iter()
        .find_map(|m| match m {
            pb::Message::Answer { request_id, value } if *request_id == login_id => value
                .as_seq()
                .and_then(|s| s.first())
                .and_then(Value::as_bytes)
                .map(<[u8]>::to_vec),
            _ => None,
        })
        .ok_or("no challenge answer")?;
    let response = w2m
        .iter()
        .find_map(|m| match m {
            pb::Message::Call(c) if &c.method[..] == b"respond" => {
                c.args.first().and_then(Value::as_bytes).map(<[u8]>::to_vec)
            }
            _ => None,
        })
        .ok_or("no respond call")?;
    check(challenge.len() == 16, || {
        format!("challenge of {} bytes", challenge.len())
    })?;
    check(
        login::verify(password.as_bytes(), &challenge, &response),
        || "response does not verify".into(),
    )?;
    check(!login::verify(b"wrong", &challenge, &response), || {
        "a wrong password verifies".into()
    })
}
