//! Whether the store can take writes, for `/readyz`.

use super::{Store, StoreResult};
use std::sync::atomic::{AtomicU64, Ordering};

impl Store {
    /// Writes, syncs and removes a small file beside the database (a full or
    /// read-only disk fails here), then asks the database for a row. Cheap, and it
    /// takes none of the database's locks, so a busy coordinator does not slow it.
    pub fn check_writable(&self) -> StoreResult<()> {
        static PROBES: AtomicU64 = AtomicU64::new(0);
        let n = PROBES.fetch_add(1, Ordering::Relaxed);
        let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
        let probe = dir.join(format!(".ready-{}-{n}", std::process::id()));
        let written = std::fs::write(&probe, b"ready\n")
            .and_then(|()| std::fs::File::open(&probe)?.sync_data());
        let _ = std::fs::remove_file(&probe);
        written?;
        let reader = self
            .reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        reader.query_row("SELECT 1", super::sql::args![], |_| Ok(()))?;
        Ok(())
    }
}
