//! `[[worker]]`: the workers allowed to log in.

use super::error::Problems;
use super::file::WorkerTable;
use super::password::PasswordSource;

/// A worker allowed to log in.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub name: String,
    pub password: PasswordSource,
    /// Builds this worker runs at once.
    pub max_builds: usize,
}

/// One `[[worker]]`; `None` when it is wrong (the problems say why).
pub(super) fn worker(t: &WorkerTable, problems: &mut Problems) -> Option<WorkerConfig> {
    let name = t.name.get_ref();
    let password = PasswordSource::one_of(&t.password, &t.password_env, &t.password_file);
    if password.is_none() {
        problems.at(
            t.name.span(),
            format!("worker {name:?} needs exactly one of password, password_env, password_file"),
        );
    }
    if t.max_builds == 0 {
        problems.at(
            t.name.span(),
            format!("worker {name:?}: max_builds must be at least 1"),
        );
    }
    Some(WorkerConfig {
        name: name.clone(),
        password: password?,
        max_builds: t.max_builds,
    })
}
