//! What schedulers decide, in the form the store commits it.

use serde_json::{Map, Value};

/// Requests a scheduler wants made: one per builder, all alike.
#[derive(Debug, Clone, PartialEq)]
pub struct Fire {
    pub scheduler: String,
    pub builders: Vec<String>,
    pub reason: String,
    pub properties: Map<String, Value>,
    /// The changes behind it, oldest first (empty for timed schedulers).
    pub changes: Vec<i64>,
    /// For a timed scheduler, its new `since` to store.
    pub since: Option<f64>,
    /// For a timed scheduler, the `since` it fired from: the firing is stored only
    /// if the database still has that one, so of several masters running the same
    /// scheduler only the first makes the requests.
    pub fired_from: Option<f64>,
    /// Its changes were held by a tree-stable timer: stored only if their held rows
    /// are still there (no other master released them first).
    pub held: bool,
}

/// What a new change causes, decided before it is stored so both commit together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangePlan {
    /// Schedulers whose tree-stable timer holds the change.
    pub hold: Vec<String>,
    /// Requests to make at once (schedulers without a timer).
    pub fires: Vec<Fire>,
}
