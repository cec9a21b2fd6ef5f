//! `[changes]`: the PB login `buildbot sendchange --auth USER:PASS` uses.

use super::error::Problems;
use super::file::ChangesTable;
use super::password::PasswordSource;
use std::collections::HashSet;

/// The change source's login.
#[derive(Debug, Clone)]
pub struct ChangeLogin {
    pub user: String,
    pub password: PasswordSource,
}

/// The login of `[changes]`, if it names a user; `workers` are the names it must not
/// take. `None` also when it is wrong (the problems say why).
pub(super) fn login(
    c: &ChangesTable,
    workers: &HashSet<&str>,
    problems: &mut Problems,
) -> Option<ChangeLogin> {
    let user = c.pb_user.as_ref()?;
    let password = PasswordSource::one_of(&c.pb_password, &c.pb_password_env, &c.pb_password_file);
    if password.is_none() {
        problems.at(
            user.span(),
            "[changes] needs exactly one of pb_password, pb_password_env, pb_password_file",
        );
    }
    if workers.contains(user.get_ref().as_str()) {
        problems.at(
            user.span(),
            format!(
                "[changes]: pb_user {:?} is also a worker's name",
                user.get_ref()
            ),
        );
    }
    if user.get_ref().is_empty() {
        problems.at(user.span(), "[changes]: pb_user is empty");
    }
    Some(ChangeLogin {
        user: user.get_ref().clone(),
        password: password?,
    })
}
