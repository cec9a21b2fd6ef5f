use super::*;
use crate::store::Store;

/// A reloader over `dir/master.toml`, with the coordinator's end of its channel.
fn reloader(dir: &std::path::Path) -> (Arc<Reloader>, mpsc::Receiver<Msg>) {
    let path = dir.join("master.toml");
    std::fs::write(
        &path,
        "[master]\ndata_dir = 'data'\n[[worker]]\nname = 'w1'\npassword = 'p'\n",
    )
    .unwrap();
    let config = config::load(&path).unwrap();
    let store = Store::open(&config.master.data_dir).unwrap();
    let secrets = Arc::new(Secrets::load(&config.secrets).unwrap());
    let (tx, rx) = mpsc::channel(8);
    let reloader = Reloader {
        path,
        auth: Arc::new(ConfigAuth::from_config(&config).unwrap()),
        guard: Arc::new(Guard::from_config(&config.api).unwrap()),
        outbox: Outbox::new(store, &[], secrets.clone(), Default::default()),
        secrets,
        current: Arc::new(Current::new(Arc::new(config))),
        master: tx,
        serial: Mutex::new(()),
    };
    (Arc::new(reloader), rx)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "pbmaster-reload-{name}-{}-{}",
        std::process::id(),
        crate::store::now()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "current_thread")]
async fn reconfigurations_run_one_at_a_time() {
    let dir = temp_dir("serial");
    let (reloader, mut rx) = reloader(&dir);
    let add = "[[worker]]\nname = 'w2'\npassword = 'p'\n";
    let text = std::fs::read_to_string(&reloader.path).unwrap() + add;
    std::fs::write(&reloader.path, text).unwrap();
    let first = tokio::spawn({
        let r = reloader.clone();
        async move { r.reconfigure().await }
    });
    let second = tokio::spawn({
        let r = reloader.clone();
        async move { r.reconfigure().await }
    });
    let Some(Msg::Reconfig { diff, reply, .. }) = rx.recv().await else {
        panic!("a reconfiguration");
    };
    assert_eq!(diff.workers.added, ["w2"]);
    // Both tasks get to run while the first waits for its answer: the second
    // does not reach the coordinator meanwhile.
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(rx.try_recv().is_err(), "the second waits for the first");
    reply.send(Ok(())).unwrap();
    let Some(Msg::Reconfig { diff, reply, .. }) = rx.recv().await else {
        panic!("the second reconfiguration");
    };
    assert!(
        diff.workers.is_empty(),
        "it starts from what the first put in force"
    );
    reply.send(Ok(())).unwrap();
    assert!(first.await.unwrap().is_ok());
    assert!(second.await.unwrap().is_ok());
    assert_eq!(reloader.current.get().workers.len(), 2);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "current_thread")]
async fn a_broken_config_or_a_refusal_changes_nothing() {
    let dir = temp_dir("refused");
    let (reloader, mut rx) = reloader(&dir);
    let good = std::fs::read_to_string(&reloader.path).unwrap();
    std::fs::write(&reloader.path, good.replace("password = 'p'", "")).unwrap();
    let errors = reloader.reconfigure().await.expect_err("refused");
    assert!(
        errors[0].contains("master.toml: line 4, column 8: worker \"w1\" needs"),
        "{errors:?}"
    );
    assert!(rx.try_recv().is_err(), "the coordinator is not asked");

    // An unreadable password file is found before anything is applied.
    let missing = good.replace("password = 'p'", "password_file = 'nowhere'");
    std::fs::write(&reloader.path, missing).unwrap();
    let errors = reloader.reconfigure().await.expect_err("refused");
    assert!(errors[0].contains("nowhere"), "{errors:?}");
    assert!(rx.try_recv().is_err());

    // The coordinator's refusal leaves the logins and the config as they were.
    let renamed = good.replace("name = 'w1'", "name = 'w3'");
    std::fs::write(&reloader.path, renamed).unwrap();
    let asked = tokio::spawn({
        let r = reloader.clone();
        async move { r.reconfigure().await }
    });
    let Some(Msg::Reconfig { reply, .. }) = rx.recv().await else {
        panic!("a reconfiguration");
    };
    reply.send(Err(vec!["not now".into()])).unwrap();
    assert_eq!(asked.await.unwrap().expect_err("refused"), ["not now"]);
    use crate::conn::Auth;
    assert!(reloader.auth.lookup("w1").is_some());
    assert!(reloader.auth.lookup("w3").is_none());
    assert_eq!(reloader.current.get().workers[0].name, "w1");
    std::fs::remove_dir_all(&dir).ok();
}
