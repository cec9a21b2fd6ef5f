//! The attach handshake, after a worker's password checked out and before its login
//! call is answered: what buildbot's master does, with the fallbacks each worker
//! generation needs.

use super::values::value_to_json;
use crate::conn::{CallError, ConnHandle};
use pbwire::jelly::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Command name → protocol version. Workers of one generation report the same
/// table, so the master shares one copy among them (see [`CommandTables`]).
pub type Commands = Arc<BTreeMap<String, String>>;

/// What the master knows about an attached worker.
#[derive(Debug, Clone)]
pub struct Attached {
    pub conn: ConnHandle,
    /// The worker's bot object (calls: print, getWorkerInfo, setBuilderList, shutdown).
    pub mind: i64,
    /// Builder name → the worker's object for it (startBuild, startCommand, ...).
    pub builders: BTreeMap<String, i64>,
    /// Command name → protocol version (`"3.3"` on 4.x, `"2.16"` on 0.8.14).
    pub commands: Commands,
    /// The worker's own version string, as reported (not parsed).
    pub version: Option<String>,
    /// Everything it reported, for the API: taken (left `Null`) once the master has
    /// recorded it, so an attached worker does not carry it in memory.
    pub info: serde_json::Value,
    /// A Python 2 worker: it sent byte-string keys.
    pub python2: bool,
}

/// Runs the handshake. Each call has `timeout`; any failure other than a missing
/// legacy method aborts the attach.
pub async fn attach(
    conn: &ConnHandle,
    mind: i64,
    builders: &[(String, String)],
    timeout: Duration,
) -> Result<Attached, CallError> {
    conn.print(mind, "attached", timeout).await?;
    let call = |method: &'static str| conn.call_timeout(timeout, mind, method, vec![], vec![]);
    let mut info = Value::Dict(vec![]);
    let mut commands = None;
    let mut version = None;
    match call("getWorkerInfo").await {
        Ok(v) => info = v,
        Err(e) if e.is_no_such_method() => {
            // A buildslave (0.8.x or early 0.9): the deprecated methods, each optional.
            let note = "buildbot-slave detected, falling back to the deprecated buildslave API";
            conn.print(mind, note, timeout).await?;
            match call("getSlaveInfo").await {
                Ok(v) => info = v,
                Err(e) if e.is_no_such_method() => {}
                Err(e) => return Err(e),
            }
            if info.get("slave_commands").is_none() {
                commands = optional(call("getCommands").await)?;
                version = optional(call("getVersion").await)?
                    .and_then(|v| v.as_str_lossy().map(|s| s.into_owned()));
            }
        }
        Err(e) => return Err(e),
    }
    let python2 = matches!(&info, Value::Dict(pairs) if pairs.iter().any(|(k, _)| matches!(k, Value::Bytes(_))));
    let commands: Commands = commands
        .as_ref()
        .or_else(|| info.get("worker_commands"))
        .or_else(|| info.get("slave_commands"))
        .map(string_map)
        .unwrap_or_default()
        .into();
    let version = version.or_else(|| {
        info.get("version")
            .and_then(|v| v.as_str_lossy())
            .map(|s| s.into_owned())
    });

    let attached_builders = set_builder_list(conn, mind, builders, timeout).await?;
    for _ in &attached_builders {
        conn.print(mind, "attached", timeout).await?;
    }
    Ok(Attached {
        conn: conn.clone(),
        mind,
        builders: attached_builders,
        commands,
        version,
        info: value_to_json(&info),
        python2,
    })
}

/// Sends the worker its (builder, directory) list: it creates the builders it lacks,
/// moves those whose directory changed, and drops those not listed. Returns the
/// worker's object for each builder listed.
pub async fn set_builder_list(
    conn: &ConnHandle,
    mind: i64,
    builders: &[(String, String)],
    timeout: Duration,
) -> Result<BTreeMap<String, i64>, CallError> {
    let list = builders
        .iter()
        .map(|(name, dir)| {
            Value::Tuple(vec![Value::text(name.as_str()), Value::text(dir.as_str())])
        })
        .collect();
    let refs = conn
        .call_timeout(
            timeout,
            mind,
            "setBuilderList",
            vec![Value::List(list)],
            vec![],
        )
        .await?;
    let mut objects = BTreeMap::new();
    if let Value::Dict(pairs) = &refs {
        for (k, v) in pairs {
            if let (Some(name), Value::Remote(id)) = (k.as_str_lossy(), v) {
                objects.insert(name.into_owned(), *id);
            }
        }
    }
    Ok(objects)
}

/// The distinct command tables of attached workers, so that workers reporting the
/// same table share one copy. Bounded: past [`CommandTables::KEPT`] distinct tables
/// (only odd or hostile workers differ this much) a table is kept unshared.
#[derive(Debug, Default)]
pub struct CommandTables(Vec<Commands>);

impl CommandTables {
    const KEPT: usize = 16;

    /// `table`, or an equal one already shared.
    pub fn share(&mut self, table: Commands) -> Commands {
        self.0.retain(|t| Arc::strong_count(t) > 1);
        if let Some(t) = self.0.iter().find(|t| **t == table) {
            return t.clone();
        }
        if self.0.len() < Self::KEPT {
            self.0.push(table.clone());
        }
        table
    }
}

fn optional(result: Result<Value, CallError>) -> Result<Option<Value>, CallError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_no_such_method() => Ok(None),
        Err(e) => Err(e),
    }
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    match v {
        Value::Dict(pairs) => pairs
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.as_str_lossy()?.into_owned(),
                    v.as_str_lossy()?.into_owned(),
                ))
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(names: &[&str]) -> Commands {
        Arc::new(
            names
                .iter()
                .map(|n| (n.to_string(), "3.3".to_string()))
                .collect(),
        )
    }

    #[test]
    fn equal_tables_share_one_copy_and_unused_ones_are_forgotten() {
        let mut tables = CommandTables::default();
        let first = tables.share(table(&["shell", "stat"]));
        let second = tables.share(table(&["shell", "stat"]));
        assert!(Arc::ptr_eq(&first, &second));
        let other = tables.share(table(&["shell"]));
        assert!(!Arc::ptr_eq(&first, &other));
        drop((first, second));
        let again = tables.share(table(&["shell", "stat"]));
        assert_eq!(
            Arc::strong_count(&again),
            2,
            "the old copy was forgotten: {again:?}"
        );
    }

    #[test]
    fn distinct_tables_past_the_bound_are_not_kept() {
        let mut tables = CommandTables::default();
        let held: Vec<Commands> = (0..40)
            .map(|i| tables.share(table(&[&format!("c{i}")])))
            .collect();
        assert_eq!(tables.0.len(), CommandTables::KEPT);
        assert_eq!(held.len(), 40);
    }
}
