//! The failures the master sends, shaped so each worker generation reacts as intended.

use pbwire::jelly::Failure;

/// A refused login. Workers of every generation retry after this one (any other
/// failure type makes them stop their process).
pub fn unauthorized(why: &str) -> Failure {
    Failure {
        type_name: "twisted.cred.error.UnauthorizedLogin".into(),
        value: why.into(),
        parents: [
            "twisted.cred.error.UnauthorizedLogin",
            "twisted.cred.error.LoginFailed",
            "twisted.cred.error.Unauthorized",
            "builtins.Exception",
            "builtins.BaseException",
            "builtins.object",
        ]
        .map(String::from)
        .to_vec(),
        traceback: None,
    }
}

/// A call to a method the object does not have.
pub fn no_such_method(method: &str) -> Failure {
    Failure {
        type_name: "twisted.spread.flavors.NoSuchMethod".into(),
        value: format!("No such method: remote_{method}"),
        parents: [
            "twisted.spread.flavors.NoSuchMethod",
            "builtins.AttributeError",
            "builtins.Exception",
            "builtins.BaseException",
            "builtins.object",
        ]
        .map(String::from)
        .to_vec(),
        traceback: None,
    }
}

/// A call to an object id this side never handed out, or a refused call.
pub fn pb_error(value: &str) -> Failure {
    Failure {
        type_name: "twisted.spread.pb.Error".into(),
        value: value.into(),
        parents: [
            "twisted.spread.pb.Error",
            "builtins.Exception",
            "builtins.BaseException",
            "builtins.object",
        ]
        .map(String::from)
        .to_vec(),
        traceback: None,
    }
}
