//! Statement arguments: anything that can be sent as one of SQL's five kinds of
//! value. PostgreSQL then converts by the parameter's declared type (see the
//! `postgres` module), so an integer argument may fill a `DOUBLE PRECISION` column.

use std::borrow::Cow;

/// One argument, as sent.
#[derive(Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(Cow<'a, str>),
    Blob(Cow<'a, [u8]>),
}

/// Text and bytes by their size only: arguments include one-time passwords and log
/// bytes, and the PostgreSQL client logs its arguments at debug level.
impl std::fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Real(v) => write!(f, "{v}"),
            Value::Text(t) => write!(f, "<text of {} bytes>", t.len()),
            Value::Blob(b) => write!(f, "<{} bytes>", b.len()),
        }
    }
}

/// A value that can be a statement's argument.
pub trait Arg {
    fn value(&self) -> Value<'_>;
}

macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            fn value(&self) -> Value<'_> {
                Value::Int(i64::from(*self))
            }
        }
    )*};
}

int_arg!(i64, i32, u32, bool);

impl Arg for f64 {
    fn value(&self) -> Value<'_> {
        Value::Real(*self)
    }
}

impl Arg for str {
    fn value(&self) -> Value<'_> {
        Value::Text(Cow::Borrowed(self))
    }
}

impl Arg for String {
    fn value(&self) -> Value<'_> {
        Value::Text(Cow::Borrowed(self))
    }
}

impl Arg for [u8] {
    fn value(&self) -> Value<'_> {
        Value::Blob(Cow::Borrowed(self))
    }
}

impl Arg for Vec<u8> {
    fn value(&self) -> Value<'_> {
        Value::Blob(Cow::Borrowed(self))
    }
}

impl<T: Arg + ?Sized> Arg for &T {
    fn value(&self) -> Value<'_> {
        (**self).value()
    }
}

impl<T: Arg> Arg for Option<T> {
    fn value(&self) -> Value<'_> {
        match self {
            Some(v) => v.value(),
            None => Value::Null,
        }
    }
}

impl Arg for Value<'_> {
    fn value(&self) -> Value<'_> {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_shows_no_text_or_bytes() {
        let shown = format!(
            "{:?}",
            ["s3cret-pw".value(), b"log bytes"[..].value(), 7.value()]
        );
        assert!(
            !shown.contains("s3cret") && !shown.contains("log"),
            "{shown}"
        );
        assert!(shown.contains("9 bytes") && shown.contains('7'), "{shown}");
    }
}
