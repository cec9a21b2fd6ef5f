//! What a container is called and labelled, and what its state means to the
//! coordinator. Pure functions, so the rules are tested without a daemon.

use crate::latent::driver::{CloudState, DriverError, LaunchSpec};
use bollard::models::{ContainerState, ContainerStateStatusEnum};
use std::collections::{BTreeMap, HashMap};

/// Labels every container carries; the first two decide ownership.
pub const LABEL_MASTER: &str = "pbmaster.master";
pub const LABEL_POOL: &str = "pbmaster.pool";
pub const LABEL_INSTANCE: &str = "pbmaster.instance";
/// The launch's idempotency token: a retried launch finds its container by it.
pub const LABEL_TOKEN: &str = "pbmaster.token";

/// Longest container name the driver makes (Docker itself takes more; a name this
/// long is a misconfiguration).
const MAX_NAME: usize = 200;

/// Whether `s` is made of what Docker allows in a container name after its first
/// character: letters, digits, `_`, `.`, `-`.
fn name_chars(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `pbmaster-MASTER-INSTANCE`: unique per master on a shared daemon. Names are
/// checked, never rewritten: two different instances cannot end up with one name.
pub fn container_name(master_id: &str, instance: &str) -> Result<String, DriverError> {
    if !name_chars(master_id) || !name_chars(instance) {
        return Err(DriverError::permanent(format!(
            "cannot name a container after {master_id:?}/{instance:?}: use letters, digits, '_', '.' and '-' only"
        )));
    }
    let name = format!("pbmaster-{master_id}-{instance}");
    if name.len() > MAX_NAME {
        return Err(DriverError::permanent(format!(
            "the container name {name:?} is longer than {MAX_NAME} characters"
        )));
    }
    Ok(name)
}

/// Every label of a container: the pool's extra labels, then the master's own
/// (which the configuration check keeps out of the extra ones).
pub fn labels(
    master_id: &str,
    spec: &LaunchSpec,
    extra: &BTreeMap<String, String>,
) -> HashMap<String, String> {
    let mut all: HashMap<String, String> = extra.clone().into_iter().collect();
    for (k, v) in [
        (LABEL_MASTER, master_id),
        (LABEL_POOL, spec.pool.as_str()),
        (LABEL_INSTANCE, spec.name.as_str()),
        (LABEL_TOKEN, spec.client_token.as_str()),
    ] {
        all.insert(k.to_owned(), v.to_owned());
    }
    all
}

/// A list filter `label=KEY=VALUE` per pair.
pub fn label_filter(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    let values = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    HashMap::from([("label".to_owned(), values)])
}

/// The coordinator's view of a container's state.
pub fn cloud_state(state: Option<&ContainerState>) -> CloudState {
    use ContainerStateStatusEnum as S;
    let Some(state) = state else {
        return CloudState::Gone("the daemon gave no state".into());
    };
    match state.status {
        Some(S::CREATED) | Some(S::RESTARTING) => CloudState::Starting,
        // A paused container still holds its worker; the coordinator's heartbeat
        // decides what to do with a worker that stopped answering.
        Some(S::RUNNING) | Some(S::PAUSED) => CloudState::Running,
        Some(S::EXITED) | Some(S::DEAD) => {
            let mut why = format!(
                "container exited with code {}",
                state.exit_code.unwrap_or(-1)
            );
            if state.oom_killed == Some(true) {
                why.push_str(" (out of memory)");
            }
            if let Some(e) = state.error.as_deref().filter(|e| !e.is_empty()) {
                why.push_str(": ");
                why.push_str(e);
            }
            CloudState::Gone(why)
        }
        Some(S::REMOVING) | Some(S::STOPPING) => {
            CloudState::Gone("container is being removed".into())
        }
        Some(S::EMPTY) | None => CloudState::Gone("container has no state".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> LaunchSpec {
        LaunchSpec {
            name: name.into(),
            pool: "pool".into(),
            user_data: String::new(),
            client_token: format!("{name}-tok"),
            on_demand: false,
        }
    }

    #[test]
    fn names_are_checked_never_rewritten() {
        assert_eq!(
            container_name("0a1b", "pool-3").unwrap(),
            "pbmaster-0a1b-pool-3"
        );
        assert!(container_name("0a1b", "my_pool.x-1").is_ok());
        for bad in ["", "a b", "a/b", "../x", "a;rm", "a$(x)", "é", "a:b"] {
            assert!(container_name("0a1b", bad).is_err(), "{bad:?}");
            assert!(container_name(bad, "pool-1").is_err(), "{bad:?}");
        }
        assert!(container_name("m", &"x".repeat(300)).is_err());
    }

    #[test]
    fn the_masters_labels_win_over_extra_ones() {
        let extra = BTreeMap::from([
            ("team".to_owned(), "ci".to_owned()),
            (LABEL_MASTER.to_owned(), "someone-else".to_owned()),
        ]);
        let l = labels("m1", &spec("pool-1"), &extra);
        assert_eq!(l[LABEL_MASTER], "m1");
        assert_eq!(l[LABEL_POOL], "pool");
        assert_eq!(l[LABEL_INSTANCE], "pool-1");
        assert_eq!(l[LABEL_TOKEN], "pool-1-tok");
        assert_eq!(l["team"], "ci");
        let f = label_filter(&[(LABEL_MASTER, "m1"), (LABEL_POOL, "pool")]);
        assert_eq!(f["label"], ["pbmaster.master=m1", "pbmaster.pool=pool"]);
    }

    #[test]
    fn container_states_map_to_the_cloud_view() {
        use ContainerStateStatusEnum as S;
        let st = |status, code, oom, error: &str| ContainerState {
            status: Some(status),
            exit_code: Some(code),
            oom_killed: Some(oom),
            error: Some(error.to_owned()),
            ..Default::default()
        };
        assert_eq!(
            cloud_state(Some(&st(S::CREATED, 0, false, ""))),
            CloudState::Starting
        );
        assert_eq!(
            cloud_state(Some(&st(S::RESTARTING, 0, false, ""))),
            CloudState::Starting
        );
        assert_eq!(
            cloud_state(Some(&st(S::RUNNING, 0, false, ""))),
            CloudState::Running
        );
        assert_eq!(
            cloud_state(Some(&st(S::PAUSED, 0, false, ""))),
            CloudState::Running
        );
        assert_eq!(
            cloud_state(Some(&st(S::EXITED, 137, true, ""))),
            CloudState::Gone("container exited with code 137 (out of memory)".into())
        );
        assert_eq!(
            cloud_state(Some(&st(S::DEAD, 1, false, "mount failed"))),
            CloudState::Gone("container exited with code 1: mount failed".into())
        );
        assert!(matches!(
            cloud_state(Some(&st(S::REMOVING, 0, false, ""))),
            CloudState::Gone(_)
        ));
        assert!(matches!(cloud_state(None), CloudState::Gone(_)));
    }
}
