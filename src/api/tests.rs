//! Handlers called directly, with a store in states the master would not leave it in.

use super::*;
use axum::response::IntoResponse;

/// An API state over a fresh store in its own folder; the coordinator's channel goes
/// nowhere (these handlers only read).
fn state(name: &str) -> (ApiState, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "pbmaster-api-{name}-{}-{}",
        std::process::id(),
        crate::store::now()
    ));
    let config =
        crate::config::parse("[master]\ndata_dir = 'd'\n[[worker]]\nname = 'w1'\npassword = 'p'\n")
            .expect("config");
    let (master, _) = mpsc::channel(1);
    let state = ApiState {
        store: Store::open(&dir).expect("store"),
        master,
        guard: Arc::new(Guard::from_config(&config.api).expect("guard")),
        config: Arc::new(crate::config::Current::new(Arc::new(config))),
        health: Arc::default(),
        events: Default::default(),
        reloader: None,
    };
    (state, dir)
}

async fn answer(result: ApiResult) -> (StatusCode, String) {
    let response = result.into_response();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_store_failure_is_a_500_without_sql_text() {
    let (s, dir) = state("sql");
    s.store.execute_for_test("DROP TABLE workers");
    let (status, body) = answer(workers(State(s.clone()), None).await).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let lower = body.to_lowercase();
    for leak in ["no such table", "workers", "select", "sqlite"] {
        assert!(!lower.contains(leak), "{leak:?} in {body}");
    }
    assert!(body.contains("\"error\""), "{body}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn store_errors_map_to_statuses_by_kind() {
    let status = |e: StoreError| ApiError::from(e).0;
    assert_eq!(
        status(StoreError::NotFound("build 1".into())),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(StoreError::Io(std::io::Error::other("disk"))),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let ApiError(_, text) = ApiError::from(StoreError::NotFound("build 1".into()));
    assert!(!text.contains("build 1"), "{text}");
}

#[tokio::test]
async fn an_unknown_worker_state_is_a_500_that_does_not_echo_it() {
    let (s, dir) = state("state");
    s.store
        .execute_for_test("INSERT INTO workers (name, state) VALUES ('w1', 'half-attached')");
    let (status, body) = answer(workers(State(s.clone()), None).await).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!body.contains("half-attached"), "{body}");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_worker_s_environment_is_shown_to_admins_only() {
    use crate::config::{Role, Roles};
    let (s, dir) = state("environ");
    s.store.execute_for_test(
        r#"INSERT INTO workers (name, state, info) VALUES ('w1', 'disconnected',
           '{"host": "h1", "environ": {"AWS_SECRET_ACCESS_KEY": "k3y"}}')"#,
    );
    let admin = Caller(Some(Roles::default().with(Role::Admin)));
    let reader = Caller(Some(Roles::default().with(Role::Read)));
    for (caller, shown) in [(None, false), (Some(reader), false), (Some(admin), true)] {
        let (status, body) = answer(workers(State(s.clone()), caller.map(Extension)).await).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("h1"), "{body}");
        assert_eq!(body.contains("k3y"), shown, "{body}");
    }
    std::fs::remove_dir_all(dir).ok();
}
