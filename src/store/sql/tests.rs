//! The layer on SQLite: arguments and cells of every kind, savepoints.

use super::*;

fn table() -> Db {
    let db = Db::memory();
    db.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, r REAL, b BLOB)")
        .expect("schema");
    db
}

#[test]
fn values_of_every_kind_go_in_and_come_back() {
    let db = table();
    let id = db
        .insert(
            "INSERT INTO t (v, r, b) VALUES (?1, ?2, ?3)",
            args!["text", 1.5, vec![0u8, 255]],
        )
        .expect("insert");
    let none: Option<String> = None;
    let other = db
        .insert("INSERT INTO t (v, r) VALUES (?1, ?2)", args![none, 2i64])
        .expect("insert");
    assert_ne!(id, other);
    let row: (String, f64, Vec<u8>) = db
        .query_row("SELECT v, r, b FROM t WHERE id = ?1", args![id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("read");
    assert_eq!(row, ("text".into(), 1.5, vec![0, 255]));
    let (v, r): (Option<String>, f64) = db
        .query_row("SELECT v, r FROM t WHERE id = ?1", args![other], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("read");
    assert_eq!((v, r), (None, 2.0));
    let e = db
        .query_row("SELECT v FROM t WHERE id = ?1", args![-1], |r| {
            r.get::<String>(0)
        })
        .expect_err("no row");
    assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
    let e = db
        .query_row("SELECT b FROM t WHERE id = ?1", args![id], |r| {
            r.get::<i64>(0)
        })
        .expect_err("a blob is no integer");
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
}

#[test]
fn a_savepoint_rolled_back_leaves_the_transaction_going() {
    let db = table();
    db.begin().expect("begin");
    let w = write(&db).expect("savepoint");
    w.execute("INSERT INTO t (v) VALUES ('kept')", args![])
        .expect("insert");
    w.commit().expect("release");
    {
        let w = write(&db).expect("savepoint");
        w.execute("INSERT INTO t (v) VALUES ('dropped')", args![])
            .expect("insert");
        // Dropped uncommitted: rolled back to the savepoint.
    }
    db.commit().expect("commit");
    let kept: Vec<String> = db
        .query_map("SELECT v FROM t ORDER BY id", args![], |r| r.get(0))
        .expect("read");
    assert_eq!(kept, ["kept"]);
    assert!(!db.in_transaction());
    {
        let w = write(&db).expect("transaction");
        w.execute("INSERT INTO t (v) VALUES ('gone')", args![])
            .expect("insert");
    }
    assert!(!db.in_transaction(), "rolled back when dropped");
    assert_eq!(
        db.query_row("SELECT COUNT(*) FROM t", args![], |r| r.get::<i64>(0))
            .expect("count"),
        1
    );
}
