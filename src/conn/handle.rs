//! The side of a connection other tasks hold.

use bytes::Bytes;
use pbwire::jelly::{Failure, FailureStyle, Value};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Why a call to the peer did not produce a value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The peer answered with a failure.
    #[error("remote {}: {}", .0.type_name, .0.value)]
    Remote(Failure),
    /// The connection closed before the answer came.
    #[error("connection lost")]
    ConnectionLost,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl CallError {
    /// Whether the peer said it has no such method (every generation's spelling).
    pub fn is_no_such_method(&self) -> bool {
        matches!(self, CallError::Remote(f) if f.check("twisted.spread.flavors.NoSuchMethod")
            || f.type_name.ends_with("AttributeError"))
    }
}

/// A call the peer made on one of our objects that a task owns (a remote command).
/// The connection has already answered it, as buildbot's master does: `update` with
/// 0, everything else with None.
#[derive(Debug)]
pub struct ObjectCall {
    pub method: String,
    pub args: Vec<Value>,
}

/// A request to the connection task. Large payloads are boxed: the channel allocates
/// its slots up front, once per connection, at the size of the largest variant, and
/// idle connections are many.
#[derive(Debug)]
pub(crate) enum Request {
    Call(Box<CallRequest>),
    Export {
        sink: mpsc::Sender<ObjectCall>,
        reply: oneshot::Sender<Option<i64>>,
    },
    ExportObject {
        object: Box<dyn super::LocalObject>,
        reply: oneshot::Sender<Option<i64>>,
    },
    Unexport(i64),
    Answer {
        request_id: i64,
        result: Box<Result<Value, Failure>>,
    },
    AcceptLogin,
    RefuseLogin(Box<Failure>),
    SetFailureStyle(FailureStyle),
    Close(String),
}

#[derive(Debug)]
pub(crate) struct CallRequest {
    pub(crate) object: i64,
    pub(crate) method: Bytes,
    pub(crate) args: Vec<Value>,
    pub(crate) kwargs: Vec<(Value, Value)>,
    pub(crate) reply: oneshot::Sender<Result<Value, CallError>>,
}

/// A cheap, cloneable handle on a connection task.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    pub id: u64,
    pub peer: SocketAddr,
    pub(crate) tx: mpsc::Sender<Request>,
}

impl ConnHandle {
    /// Calls `method` on the peer's object `object` and waits for the answer.
    pub async fn call(
        &self,
        object: i64,
        method: &str,
        args: Vec<Value>,
        kwargs: Vec<(Value, Value)>,
    ) -> Result<Value, CallError> {
        self.send_call(object, method, args, kwargs).await?.await
    }

    /// Hands the call to the connection now; the answer is what the returned
    /// future yields.
    pub async fn send_call(
        &self,
        object: i64,
        method: &str,
        args: Vec<Value>,
        kwargs: Vec<(Value, Value)>,
    ) -> Result<impl Future<Output = Result<Value, CallError>> + use<>, CallError> {
        let (reply, answer) = oneshot::channel();
        let request = Request::Call(Box::new(CallRequest {
            object,
            method: Bytes::copy_from_slice(method.as_bytes()),
            args,
            kwargs,
            reply,
        }));
        self.tx
            .send(request)
            .await
            .map_err(|_| CallError::ConnectionLost)?;
        Ok(async move { answer.await.unwrap_or(Err(CallError::ConnectionLost)) })
    }

    /// [`call`](Self::call) with a deadline.
    pub async fn call_timeout(
        &self,
        timeout: Duration,
        object: i64,
        method: &str,
        args: Vec<Value>,
        kwargs: Vec<(Value, Value)>,
    ) -> Result<Value, CallError> {
        tokio::time::timeout(timeout, self.call(object, method, args, kwargs))
            .await
            .unwrap_or(Err(CallError::Timeout(timeout)))
    }

    /// `print(message=...)` on the worker's bot: its log, and buildbot's liveness probe.
    pub async fn print(
        &self,
        mind: i64,
        message: &str,
        timeout: Duration,
    ) -> Result<(), CallError> {
        let kwargs = vec![(Value::text("message"), Value::text(message))];
        self.call_timeout(timeout, mind, "print", vec![], kwargs)
            .await
            .map(|_| ())
    }

    /// Hands out a new object whose calls go to `sink`.
    pub async fn export(&self, sink: mpsc::Sender<ObjectCall>) -> Result<i64, CallError> {
        let (reply, id) = oneshot::channel();
        self.tx
            .send(Request::Export { sink, reply })
            .await
            .map_err(|_| CallError::ConnectionLost)?;
        id.await.ok().flatten().ok_or(CallError::ConnectionLost)
    }

    /// Hands out an object that answers the peer's calls itself.
    pub async fn export_object(
        &self,
        object: Box<dyn super::LocalObject>,
    ) -> Result<i64, CallError> {
        let (reply, id) = oneshot::channel();
        self.tx
            .send(Request::ExportObject { object, reply })
            .await
            .map_err(|_| CallError::ConnectionLost)?;
        id.await.ok().flatten().ok_or(CallError::ConnectionLost)
    }

    /// Forgets an exported object; later calls to it get an error.
    pub async fn unexport(&self, id: i64) {
        let _ = self.tx.send(Request::Unexport(id)).await;
    }

    /// Answers a call the peer made.
    pub async fn answer(&self, request_id: i64, result: Result<Value, Failure>) {
        let result = Box::new(result);
        let _ = self.tx.send(Request::Answer { request_id, result }).await;
    }

    /// Accepts the worker's login once it is attached: answers its `respond` with its
    /// perspective, and starts the keepalives.
    pub async fn accept_login(&self) {
        let _ = self.tx.send(Request::AcceptLogin).await;
    }

    /// Refuses the worker's login with `failure`.
    pub async fn refuse_login(&self, failure: Failure) {
        let _ = self.tx.send(Request::RefuseLogin(Box::new(failure))).await;
    }

    /// Shapes the failures this connection sends for the peer's Python generation.
    pub async fn set_failure_style(&self, style: FailureStyle) {
        let _ = self.tx.send(Request::SetFailureStyle(style)).await;
    }

    /// Closes the connection.
    pub async fn close(&self, why: &str) {
        let _ = self.tx.send(Request::Close(why.to_owned())).await;
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

#[cfg(test)]
mod tests {
    /// The channel's slots are allocated per connection at this size.
    #[test]
    fn requests_stay_small() {
        assert!(std::mem::size_of::<super::Request>() <= 32);
    }
}
