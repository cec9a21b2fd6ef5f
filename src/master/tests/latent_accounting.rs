//! Latent instances across restarts and in the books: builds run kept for
//! `max_uses`, launches whose id was never recorded ended by their token, placement
//! and price recorded for the cost of builds.

use super::latent_pools::{bring_up, build_done};
use super::*;

const RECYCLED: (&str, &str) = ("max_instances = 2", "max_instances = 2\nmax_uses = 2");

fn row(f: &Fixture, name: &str) -> crate::store::latent::InstanceRow {
    f.store
        .instances(10)
        .unwrap()
        .into_iter()
        .find(|i| i.name == name)
        .expect("recorded")
}

#[test]
fn an_adopted_instance_keeps_its_builds_toward_max_uses() {
    let (dir, name) = {
        let mut f = Fixture::with(&[RECYCLED]);
        let (id, name) = launch_one(&mut f);
        let effects = bring_up(&mut f, id, &name, "i-1");
        let request = builds_started(&effects)[0].0;
        build_done(&mut f, request, &name);
        assert_eq!(row(&f, &name).uses, 1);
        let dir = f.dir.clone();
        std::mem::forget(f);
        (dir, name)
    };
    let mut f = Fixture::on_with(dir, &[RECYCLED]);
    let cloud = vec![OwnedInstance {
        cloud_id: "i-1".into(),
        name: Some(name.clone()),
    }];
    f.start(vec![("pool".into(), Some(cloud))]);
    assert_eq!(row(&f, &name).uses, 1, "kept through the adoption");
    let id = row(&f, &name).id;
    latent(
        &mut f,
        LatentMsg::Running {
            pool: "pool".into(),
            id,
        },
    );
    f.attach(&name, &["cloudy"]);
    let (effects, _) = f.force("cloudy");
    assert_eq!(builds_started(&effects).len(), 1, "{effects:?}");
    // Its second build in all is its last.
    assert_eq!(f.instance_phase(&name), Some(Phase::Draining));
    assert_eq!(row(&f, &name).uses, 2);
}

#[test]
fn a_restart_ends_a_launch_whose_id_was_never_recorded_by_its_token() {
    let dir = {
        let mut f = Fixture::new();
        launch_one(&mut f);
        let dir = f.dir.clone();
        std::mem::forget(f);
        dir
    };
    let mut f = Fixture::on(dir);
    let token = row(&f, "pool-1").client_token;
    // The local driver cannot list its instances.
    let effects = f.start(vec![("pool".into(), None)]);
    let ending = effects.iter().find_map(|e| match e {
        Effect::EndLaunch {
            client_token,
            report,
            ..
        } => Some((client_token.clone(), report.clone())),
        _ => None,
    });
    let Some((ended, (pool, id))) = ending else {
        panic!("the launch is looked for: {effects:?}");
    };
    assert_eq!(ended, token);
    assert!(token.starts_with("pool-1-"), "{token}");
    assert_eq!(f.instance_phase("pool-1"), Some(Phase::Stopping));
    latent(&mut f, LatentMsg::Terminated { pool, id });
    assert_eq!(f.instance_phase("pool-1"), Some(Phase::Stopped));
}

#[test]
fn a_launch_records_where_it_was_placed_and_its_price() {
    let mut f = Fixture::with(&[(
        "max_instances = 2",
        "max_instances = 2\nprice_per_hour = 0.36",
    )]);
    let (id, name) = launch_one(&mut f);
    latent(
        &mut f,
        LatentMsg::Launched {
            pool: "pool".into(),
            id,
            cloud_id: "i-1".into(),
            placement: Some("subnet-b/t3.small".into()),
            market: Some("spot".into()),
        },
    );
    let r = row(&f, &name);
    assert_eq!(r.placement.as_deref(), Some("subnet-b/t3.small"));
    assert_eq!(r.market.as_deref(), Some("spot"));
    assert_eq!(r.accounting.price_per_hour, Some(0.36));
    assert!(r.accounting.launched_at.is_some());
    assert!(r.accounting.cost.is_some_and(|c| c >= 0.0), "{r:?}");
}
