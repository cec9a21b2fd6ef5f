//! The failures a PB side sends on its own behalf, shaped as Twisted raises them so
//! that each receiver reacts as it would to Twisted (a refused login is retried, a
//! missing method is an `AttributeError`).

use crate::jelly::Failure;

/// A failure of `type_name` whose bases, after its own, are `bases` and then Python's
/// `Exception`, `BaseException` and `object` (receivers match on these).
fn failure(type_name: &str, value: String, bases: &[&str]) -> Failure {
    let builtins = [
        "builtins.Exception",
        "builtins.BaseException",
        "builtins.object",
    ];
    let parents = std::iter::once(type_name)
        .chain(bases.iter().copied())
        .chain(builtins);
    Failure {
        type_name: type_name.into(),
        value,
        parents: parents.map(String::from).collect(),
        traceback: None,
    }
}

/// A refused login. Buildbot workers of every generation retry after this one (any
/// other failure type makes them stop their process).
pub fn unauthorized(why: &str) -> Failure {
    failure(
        "twisted.cred.error.UnauthorizedLogin",
        why.into(),
        &[
            "twisted.cred.error.LoginFailed",
            "twisted.cred.error.Unauthorized",
        ],
    )
}

/// A call to a method the object does not have.
pub fn no_such_method(method: &str) -> Failure {
    failure(
        "twisted.spread.flavors.NoSuchMethod",
        format!("No such method: remote_{method}"),
        &["builtins.AttributeError"],
    )
}

/// A call to an object id this side never handed out, or a refused call.
pub fn pb_error(value: &str) -> Failure {
    failure("twisted.spread.pb.Error", value.into(), &[])
}
