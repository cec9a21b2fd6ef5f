//! What one side of a connection must remember to judge the peer's messages: the
//! requests it is waiting on, the objects it has handed out, and the peer's version.
//!
//! Twisted drops the connection on an answer to an unknown request or a decref of an
//! unknown object; a caller of [`Session::receive`] can instead log and ignore those
//! (the error says which rule was broken), and close only on a version mismatch.

use super::{Message, ObjectId, PROTOCOL_VERSION};
use std::collections::HashMap;
use std::fmt;

/// Which rule of the connection's state a message broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionErrorKind {
    /// The peer speaks another PB version.
    VersionMismatch,
    /// An answer or error for a request this side is not waiting on.
    UnknownRequest,
    /// A decref, or a call, for an object this side never handed out (or freed).
    UnknownObject,
}

impl SessionErrorKind {
    /// The snake-case name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            SessionErrorKind::VersionMismatch => "version_mismatch",
            SessionErrorKind::UnknownRequest => "unknown_request",
            SessionErrorKind::UnknownObject => "unknown_object",
        }
    }
}

impl fmt::Display for SessionErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for SessionErrorKind {}

/// The state of one side of a PB connection.
#[derive(Debug)]
pub struct Session {
    /// The last request id used; Twisted starts at 1 and counts every message sent.
    last_request: i64,
    /// Requests sent with an answer required and not yet answered.
    pending: HashMap<i64, ()>,
    /// Object id → references handed out and not yet decref'd.
    exported: HashMap<i64, u32>,
    /// The last object id used; ids are never reused.
    last_object: i64,
    /// Objects the peer may call without having received them (the root).
    root_exported: bool,
    max_pending: usize,
    max_exported: usize,
}

/// Why a request or an export could not be made: a bound on local state was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionFull {
    /// `max_pending` requests await answers.
    #[error("too many requests awaiting answers")]
    Requests,
    /// `max_exported` objects are handed out.
    #[error("too many objects handed out")]
    Objects,
}

impl Session {
    /// A session that allows `max_pending` unanswered requests and `max_exported`
    /// live objects (Twisted's broker allows 1024 objects).
    pub fn new(max_pending: usize, max_exported: usize) -> Session {
        Session {
            last_request: 0,
            pending: HashMap::new(),
            exported: HashMap::new(),
            last_object: 0,
            root_exported: true,
            max_pending,
            max_exported,
        }
    }

    /// The id for the next message this side sends; when `answer_required`, the
    /// session waits for its answer.
    pub fn next_request(&mut self, answer_required: bool) -> Result<i64, SessionFull> {
        if answer_required && self.pending.len() >= self.max_pending {
            return Err(SessionFull::Requests);
        }
        self.last_request += 1;
        if answer_required {
            self.pending.insert(self.last_request, ());
        }
        Ok(self.last_request)
    }

    /// Stops waiting for the answer to `request_id`, whose message was never sent.
    pub fn abandon(&mut self, request_id: i64) -> bool {
        self.pending.remove(&request_id).is_some()
    }

    /// Registers a new object about to be sent as `(remote id)`.
    pub fn export_new(&mut self) -> Result<i64, SessionFull> {
        if self.exported.len() >= self.max_exported {
            return Err(SessionFull::Objects);
        }
        self.last_object += 1;
        self.exported.insert(self.last_object, 1);
        Ok(self.last_object)
    }

    /// Registers a new object the peer holds no reference to yet; count each
    /// `(remote id)` sent for it with [`count_sent`](Self::count_sent).
    pub fn export_unsent(&mut self) -> Result<i64, SessionFull> {
        if self.exported.len() >= self.max_exported {
            return Err(SessionFull::Objects);
        }
        self.last_object += 1;
        self.exported.insert(self.last_object, 0);
        Ok(self.last_object)
    }

    /// Counts the `(remote id)`s of a message about to be sent, one reference per
    /// occurrence: the peer releases each one on its own (Twisted makes a proxy per
    /// occurrence, and each sends its decref when collected). An object of this side's
    /// that is no longer registered (the peer released it, or it was forgotten) is
    /// registered again, as Twisted registers an object sent anew; ids this side never
    /// issued are left alone. Counts nothing if the objects would exceed the bound.
    pub fn count_sent(&mut self, ids: &[i64]) -> Result<(), SessionFull> {
        let issued = |id: &i64| (1..=self.last_object).contains(id);
        let mut revived: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| issued(id) && !self.exported.contains_key(id))
            .collect();
        revived.sort_unstable();
        revived.dedup();
        if !revived.is_empty() && self.exported.len() + revived.len() > self.max_exported {
            return Err(SessionFull::Objects);
        }
        for id in ids {
            if issued(id) {
                let n = self.exported.entry(*id).or_insert(0);
                *n = n.saturating_add(1);
            }
        }
        Ok(())
    }

    /// Counts one more `(remote id)` sent for an object already exported.
    pub fn export_again(&mut self, id: i64) -> bool {
        match self.exported.get_mut(&id) {
            Some(n) => {
                *n = n.saturating_add(1);
                true
            }
            None => false,
        }
    }

    /// Stops serving an object whatever its count: its owner is done with it. A late
    /// decref for it is then an unknown object, which callers may ignore. Peers that
    /// release references late (Python 3 at garbage collection) cannot make objects
    /// pile up this way.
    pub fn forget(&mut self, id: i64) -> bool {
        self.exported.remove(&id).is_some()
    }

    /// Whether the peer may address `object` in a call.
    pub fn is_exported(&self, object: ObjectId) -> bool {
        match object {
            ObjectId::Root => self.root_exported,
            ObjectId::Id(id) => self.exported.contains_key(&id),
        }
    }

    /// Requests still awaiting an answer.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Checks a received message against the state and applies it: answers and
    /// errors settle their request, decrefs release their object (`Ok(true)` when that
    /// was its last reference).
    pub fn receive(&mut self, message: &Message) -> Result<bool, SessionErrorKind> {
        match message {
            Message::Version(v) if *v != PROTOCOL_VERSION => Err(SessionErrorKind::VersionMismatch),
            Message::Answer { request_id, .. } | Message::Error { request_id, .. } => self
                .pending
                .remove(request_id)
                .map(|_| false)
                .ok_or(SessionErrorKind::UnknownRequest),
            Message::Decref(id) => {
                // An object the peer holds no reference to cannot be released.
                let n = self
                    .exported
                    .get_mut(id)
                    .filter(|n| **n > 0)
                    .ok_or(SessionErrorKind::UnknownObject)?;
                *n -= 1;
                if *n == 0 {
                    self.exported.remove(id);
                    return Ok(true);
                }
                Ok(false)
            }
            Message::Call(c) if !self.is_exported(c.object) => Err(SessionErrorKind::UnknownObject),
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jelly::Value;

    #[test]
    fn answers_settle_only_pending_requests() {
        let mut s = Session::new(8, 8);
        let id = s.next_request(true).unwrap();
        let fire_and_forget = s.next_request(false).unwrap();
        assert_eq!((id, fire_and_forget), (1, 2));
        let answer = |request_id| Message::Answer {
            request_id,
            value: Value::None,
        };
        assert_eq!(s.receive(&answer(2)), Err(SessionErrorKind::UnknownRequest));
        assert_eq!(s.receive(&answer(1)), Ok(false));
        assert_eq!(s.receive(&answer(1)), Err(SessionErrorKind::UnknownRequest));
    }

    #[test]
    fn decrefs_count_down_and_never_below_zero() {
        let mut s = Session::new(8, 8);
        let id = s.export_new().unwrap();
        assert!(s.export_again(id));
        assert_eq!(s.receive(&Message::Decref(id)), Ok(false));
        assert_eq!(s.receive(&Message::Decref(id)), Ok(true));
        assert_eq!(
            s.receive(&Message::Decref(id)),
            Err(SessionErrorKind::UnknownObject)
        );
        assert!(!s.is_exported(ObjectId::Id(id)));
        assert_eq!(s.export_new().unwrap(), id + 1, "ids are never reused");
    }

    #[test]
    fn forgotten_objects_free_their_place() {
        let mut s = Session::new(8, 1);
        let id = s.export_new().unwrap();
        assert!(s.forget(id));
        assert!(!s.is_exported(ObjectId::Id(id)));
        assert_eq!(
            s.receive(&Message::Decref(id)),
            Err(SessionErrorKind::UnknownObject)
        );
        assert!(s.export_new().is_ok(), "the place is free again");
    }

    #[test]
    fn counts_every_reference_sent_and_sends_released_objects_anew() {
        let mut s = Session::new(8, 2);
        let id = s.export_unsent().unwrap();
        assert!(s.is_exported(ObjectId::Id(id)));
        assert_eq!(
            s.receive(&Message::Decref(id)),
            Err(SessionErrorKind::UnknownObject),
            "not sent yet"
        );
        s.count_sent(&[id, id]).unwrap();
        assert_eq!(s.receive(&Message::Decref(id)), Ok(false));
        assert_eq!(s.receive(&Message::Decref(id)), Ok(true));
        assert!(!s.is_exported(ObjectId::Id(id)));
        // Sent again after its release: served again, with one reference.
        s.count_sent(&[id]).unwrap();
        assert!(s.is_exported(ObjectId::Id(id)));
        assert_eq!(s.receive(&Message::Decref(id)), Ok(true));
        // Ids never issued are not ours to count.
        s.count_sent(&[id + 1, -1]).unwrap();
        assert!(!s.is_exported(ObjectId::Id(id + 1)));
    }

    #[test]
    fn sending_released_objects_anew_is_bounded() {
        let mut s = Session::new(8, 2);
        let (a, b) = (s.export_unsent().unwrap(), s.export_unsent().unwrap());
        s.count_sent(&[a, b]).unwrap();
        assert_eq!(s.receive(&Message::Decref(a)), Ok(true));
        assert_eq!(s.receive(&Message::Decref(b)), Ok(true));
        let c = s.export_unsent().unwrap();
        s.count_sent(&[a, a]).unwrap();
        assert_eq!(s.count_sent(&[b, c]), Err(SessionFull::Objects));
        assert!(!s.is_exported(ObjectId::Id(b)));
        assert!(s.is_exported(ObjectId::Id(c)), "nothing counted");
        assert_eq!(
            s.receive(&Message::Decref(c)),
            Err(SessionErrorKind::UnknownObject)
        );
    }

    #[test]
    fn bounds_local_state() {
        let mut s = Session::new(1, 1);
        s.next_request(true).unwrap();
        assert_eq!(s.next_request(true), Err(SessionFull::Requests));
        s.export_new().unwrap();
        assert_eq!(s.export_new(), Err(SessionFull::Objects));
    }

    #[test]
    fn rejects_other_versions() {
        let mut s = Session::new(1, 1);
        assert_eq!(s.receive(&Message::Version(6)), Ok(false));
        assert_eq!(
            s.receive(&Message::Version(5)),
            Err(SessionErrorKind::VersionMismatch)
        );
    }
}
