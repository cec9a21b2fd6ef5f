//! The cred login over PB, both ways.
//!
//! Listener: `root.login(name)` answers `(challenge, challenger)`; the peer then calls
//! `challenger.respond(response, mind)`, the application checks the response against
//! the password ([`LoginAttempt::verify`]) and accepts, which answers `(remote avatar)`,
//! or refuses, which answers `UnauthorizedLogin`. Connector: the same calls, made.

use super::{Broker, BrokerError, CloseReason, Event, Limit, LoginAttempt, LoginId, Phase, Side};
use crate::jelly::{Failure, Value};
use crate::login;
use crate::pb::failures::pb_error;
use crate::pb::{Call, ObjectId};
use bytes::Bytes;
use std::collections::HashMap;
use std::time::Instant;

/// Requests the broker made itself, whose answers it consumes.
#[derive(Debug)]
pub(super) enum Internal {
    /// A keepalive probe: any answer (or failure) is a sign of life, nothing more.
    Probe,
    /// `root.login(name)`; the password's MD5 answers the challenge.
    Challenge {
        password_md5: [u8; login::DIGEST_LEN],
        mind: Option<i64>,
    },
    /// `challenger.respond(...)`; its answer is the avatar.
    Respond,
}

/// The login as this side sees it.
#[derive(Debug, Default)]
pub(super) struct LoginState {
    /// (Listener) challenger object id → what it was issued for.
    challenges: HashMap<i64, Challenge>,
    /// (Listener) the `respond` call whose verdict the application owes.
    deciding: Option<Deciding>,
    failures: u32,
    /// (Connector) a login asked for before the dialect was chosen.
    queued: Option<Queued>,
}

#[derive(Debug)]
struct Challenge {
    challenge: [u8; login::DIGEST_LEN],
    name: Bytes,
}

#[derive(Debug)]
struct Deciding {
    request_id: i64,
    answer_required: bool,
    mind: Option<i64>,
}

#[derive(Debug)]
struct Queued {
    name: Bytes,
    password_md5: [u8; login::DIGEST_LEN],
    mind: Option<i64>,
}

impl Broker {
    /// (Listener) accepts the login `id` reported by [`Event::Login`]: exports the
    /// avatar, answers the peer with it and starts the keepalive probes. Returns the
    /// avatar's object id.
    pub fn accept_login(&mut self, id: LoginId, now: Instant) -> Result<i64, BrokerError> {
        self.check_open()?;
        let deciding = self.take_deciding(id)?;
        let avatar = self.export()?;
        if deciding.answer_required {
            self.answer(deciding.request_id, Ok(Value::Remote(avatar)))?;
        }
        self.phase = Phase::LoggedIn;
        self.timers.login_deadline = None;
        self.timers.mind = deciding.mind;
        if let Some(k) = &self.config.keepalive {
            self.timers.next_probe = Some(now + k.interval);
        }
        Ok(avatar)
    }

    /// (Listener) refuses the login `id` with `failure` (send
    /// [`unauthorized`](crate::pb::failures::unauthorized) so that the peer retries).
    /// Too many refusals close the connection.
    pub fn refuse_login(&mut self, id: LoginId, failure: Failure) -> Result<(), BrokerError> {
        self.check_open()?;
        let deciding = self.take_deciding(id)?;
        if deciding.answer_required {
            self.answer(deciding.request_id, Err(failure))?;
        }
        self.login.failures += 1;
        if self.login.failures >= self.config.max_login_failures {
            self.close_with(CloseReason::Limit(Limit::LoginFailures(
                self.login.failures,
            )));
        }
        Ok(())
    }

    /// (Connector) logs in as `name`, passing `mind` (an object exported with
    /// [`export`](Self::export)) for the listener to call. Ends in
    /// [`Event::LoggedIn`] or [`Event::LoginRefused`]. May be called before the
    /// dialect is chosen; the login then starts right after.
    pub fn login(
        &mut self,
        name: impl Into<Bytes>,
        password: &[u8],
        mind: Option<i64>,
    ) -> Result<(), BrokerError> {
        if self.config.side != Side::Connector {
            return Err(BrokerError::Misuse("only a connector logs in"));
        }
        if self.phase == Phase::Closing {
            return Err(BrokerError::Closed);
        }
        if self.login.queued.is_some() || self.internal.values().any(|i| i.is_login()) {
            return Err(BrokerError::Misuse("a login is already under way"));
        }
        self.login.queued = Some(Queued {
            name: name.into(),
            password_md5: login::password_md5(password),
            mind,
        });
        if self.phase != Phase::Dialect {
            self.after_negotiation();
        }
        Ok(())
    }

    /// Starts a login that waited for the dialect.
    pub(super) fn after_negotiation(&mut self) {
        let Some(q) = self.login.queued.take() else {
            return;
        };
        let name = Value::Bytes(q.name);
        if let Ok(id) = self.call(
            ObjectId::Root,
            Bytes::from_static(b"login"),
            vec![name],
            vec![],
        ) {
            let (password_md5, mind) = (q.password_md5, q.mind);
            self.internal
                .insert(id, Internal::Challenge { password_md5, mind });
        }
    }

    /// Serves `login` on the root and `respond` on challengers; false for any other
    /// call, which is the application's.
    pub(super) fn serve_login(&mut self, call: &Call, _now: Instant) -> bool {
        if self.config.side != Side::Listener {
            return false;
        }
        match call.object {
            ObjectId::Root if call.method.as_ref() == b"login" => self.issue_challenge(call),
            ObjectId::Id(id) if self.login.challenges.contains_key(&id) => {
                if call.method.as_ref() == b"respond" {
                    self.on_respond(call, id);
                } else {
                    self.refuse_method(call);
                }
            }
            _ => return false,
        }
        true
    }

    /// A challenger the peer released: its challenge is void.
    pub(super) fn forget_challenge(&mut self, id: i64) -> bool {
        self.login.challenges.remove(&id).is_some()
    }

    pub(super) fn on_internal_answer(
        &mut self,
        internal: Internal,
        result: Result<Value, Failure>,
    ) {
        match (internal, result) {
            (Internal::Probe, _) => {}
            (Internal::Challenge { password_md5, mind }, Ok(value)) => {
                self.answer_challenge(&password_md5, mind, &value)
            }
            (Internal::Respond, Ok(Value::Remote(avatar))) => {
                self.phase = Phase::LoggedIn;
                self.events.push_back(Event::LoggedIn { avatar });
            }
            (Internal::Respond, Ok(_)) => {
                let f = pb_error("the login was answered without an avatar");
                self.events.push_back(Event::LoginRefused(f));
            }
            (Internal::Challenge { .. } | Internal::Respond, Err(f)) => {
                self.events.push_back(Event::LoginRefused(f));
            }
        }
    }

    fn issue_challenge(&mut self, call: &Call) {
        let Some(name) = call.args.first().and_then(Value::as_bytes) else {
            return self.refuse(call, pb_error("login needs a user name"));
        };
        if name.len() > self.config.max_login_name {
            return self.violation(call, "login name too long");
        }
        if self.login.challenges.len() >= self.config.max_challenges {
            return self.violation(call, "too many login challenges");
        }
        let mut random = [0u8; login::DIGEST_LEN];
        if !self.entropy.0.fill(&mut random) {
            return self.close_with(CloseReason::Local(
                "no randomness for a login challenge".into(),
            ));
        }
        let name = Bytes::copy_from_slice(name);
        let Ok(id) = self.session.export_unsent() else {
            return self.violation(call, "too many objects");
        };
        let challenge = login::challenge(random);
        self.login
            .challenges
            .insert(id, Challenge { challenge, name });
        let answer = Value::Tuple(vec![
            Value::Bytes(Bytes::copy_from_slice(&challenge)),
            Value::Remote(id),
        ]);
        if call.answer_required {
            let _ = self.answer(call.request_id, Ok(answer));
        }
    }

    fn on_respond(&mut self, call: &Call, challenger: i64) {
        let Some(Challenge { challenge, name }) = self.login.challenges.remove(&challenger) else {
            return;
        };
        // One respond per challenge.
        self.session.forget(challenger);
        if self.phase != Phase::LoginPending || self.login.deciding.is_some() {
            return self.refuse(call, pb_error("already logged in"));
        }
        let response = call
            .args
            .first()
            .and_then(Value::as_bytes)
            .map(Bytes::copy_from_slice)
            .unwrap_or_default();
        let mind = match call.args.get(1) {
            Some(Value::Remote(id)) => Some(*id),
            _ => None,
        };
        self.login.deciding = Some(Deciding {
            request_id: call.request_id,
            answer_required: call.answer_required,
            mind,
        });
        self.events.push_back(Event::Login(LoginAttempt {
            id: LoginId(call.request_id),
            name,
            mind,
            challenge,
            response,
        }));
    }

    fn take_deciding(&mut self, id: LoginId) -> Result<Deciding, BrokerError> {
        match &self.login.deciding {
            Some(d) if d.request_id == id.0 => {
                self.login.deciding.take().ok_or(BrokerError::UnknownLogin)
            }
            _ => Err(BrokerError::UnknownLogin),
        }
    }

    /// (Connector) `(challenge, challenger)` → `challenger.respond(response, mind)`.
    fn answer_challenge(
        &mut self,
        password_md5: &[u8; login::DIGEST_LEN],
        mind: Option<i64>,
        value: &Value,
    ) {
        let parts = value.as_seq().unwrap_or_default();
        let (Some(challenge), Some(Value::Remote(challenger))) =
            (parts.first().and_then(Value::as_bytes), parts.get(1))
        else {
            let f = pb_error("the login challenge is malformed");
            return self.events.push_back(Event::LoginRefused(f));
        };
        let response = login::response_from_hash(password_md5, challenge);
        let mind = mind.map_or(Value::None, Value::Remote);
        let args = vec![Value::Bytes(Bytes::copy_from_slice(&response)), mind];
        let respond = Bytes::from_static(b"respond");
        if let Ok(id) = self.call(ObjectId::Id(*challenger), respond, args, vec![]) {
            self.internal.insert(id, Internal::Respond);
        }
    }
}

impl LoginState {
    pub(super) fn is_deciding(&self) -> bool {
        self.deciding.is_some()
    }
}

impl Internal {
    fn is_login(&self) -> bool {
        !matches!(self, Internal::Probe)
    }
}
