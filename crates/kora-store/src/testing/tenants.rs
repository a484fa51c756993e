//! Tenants and the directory: runs, dead letters, audit entries and triggers belong to a
//! tenant and filter by it; API keys, registered workflows and the API audit trail.

#![allow(clippy::unwrap_used)]

use kora_model::Map;
use serde_json::json;

use crate::{
    ApiAuditEntry, ApiAuditFilter, ApiKey, AttemptStatus, AuditFilter, Batch, DeadLetterFilter,
    Error, NewRun, RunFilter, RunStatus, RunUpdate, Store, TriggerRecord,
};

use super::{attempt, new_run, outcome, spec};

fn run_of(id: &str, tenant: &str, at_ms: u64) -> NewRun {
    NewRun {
        tenant: tenant.into(),
        at_ms,
        ..new_run(id, None)
    }
}

/// Runs list by tenant, workflow and time, newest first, a page at a time; a tenant's dead
/// letters and audit entries are its runs' only, and a purge in one tenant leaves the other's.
pub async fn runs_and_dead_letters_belong_to_tenants(s: &dyn Store, ns: &str) {
    let (ta, tb) = (format!("{ns}-ta"), format!("{ns}-tb"));
    let runs: Vec<(String, &str, u64)> = (0..5)
        .map(|k| {
            let t = if k % 2 == 0 { ta.as_str() } else { tb.as_str() };
            (format!("{ns}-tr{k}"), t, 100 + k)
        })
        .collect();
    for (id, t, at) in &runs {
        let mut failed = outcome(id, "a", 1, 0);
        failed.status = AttemptStatus::Failed;
        failed.output = None;
        failed.error = Some("boom".into());
        failed.dead_letter = Some(("permanent_error".into(), Map::new()));
        failed.at_ms = *at;
        s.commit(Batch {
            new_runs: vec![run_of(id, t, *at)],
            new_attempts: vec![attempt(id, "a", 1)],
            audit: vec![crate::AuditEntry {
                run_id: id.clone(),
                node_id: "a".into(),
                iteration: 0,
                attempt: 1,
                idx: 0,
                at_ms: *at,
                entry: json!({"event_type": "t", "message": id}),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
        s.commit(Batch {
            outcomes: vec![failed],
            run_updates: vec![RunUpdate {
                run_id: id.clone(),
                status: RunStatus::Failed,
                error: Some("boom".into()),
                error_node: Some("a".into()),
                at_ms: *at,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let ids = |rs: Vec<crate::RunRecord>| rs.into_iter().map(|r| r.run_id).collect::<Vec<_>>();
    let of_a = RunFilter {
        tenant: Some(ta.clone()),
        ..Default::default()
    };
    let all_a = ids(s.runs(&of_a).await.unwrap());
    assert_eq!(
        all_a,
        [4, 2, 0].map(|k| format!("{ns}-tr{k}")),
        "tenant a's, newest first"
    );
    let got = s.run(&format!("{ns}-tr1")).await.unwrap().unwrap();
    assert_eq!(got.tenant, tb);
    // Pages of 2 through tenant a's runs, each after the last row of the one before.
    let page1 = s
        .runs(&RunFilter {
            limit: 2,
            ..of_a.clone()
        })
        .await
        .unwrap();
    let last = page1.last().unwrap();
    let page2 = s
        .runs(&RunFilter {
            limit: 2,
            before: Some((last.created_ms, last.run_id.clone())),
            ..of_a.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        [ids(page1), ids(page2)].concat(),
        all_a,
        "pages cover every run once"
    );
    let window = s
        .runs(&RunFilter {
            since_ms: Some(101),
            until_ms: Some(104),
            ..of_a.clone()
        })
        .await
        .unwrap();
    assert_eq!(ids(window), [format!("{ns}-tr2")]);
    let by_workflow = s
        .runs(&RunFilter {
            workflow: Some("demo".into()),
            ..of_a.clone()
        })
        .await
        .unwrap();
    assert_eq!(by_workflow.len(), 3);
    let other_workflow = RunFilter {
        workflow: Some("other".into()),
        ..of_a.clone()
    };
    assert!(s.runs(&other_workflow).await.unwrap().is_empty());

    let dls = |t: &str| DeadLetterFilter {
        tenant: Some(t.to_string()),
        ..Default::default()
    };
    assert_eq!(s.dead_letters(&dls(&ta)).await.unwrap().len(), 3);
    assert_eq!(s.dead_letters(&dls(&tb)).await.unwrap().len(), 2);
    let audit_b = s
        .audit_log(&AuditFilter {
            tenant: Some(tb.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit_b.len(), 2, "{audit_b:?}");
    assert!(
        audit_b
            .iter()
            .all(|e| ["1", "3"].iter().any(|k| e.run_id == format!("{ns}-tr{k}")))
    );

    assert_eq!(s.purge_dead_letters(&dls(&tb)).await.unwrap(), 2);
    assert!(s.dead_letters(&dls(&tb)).await.unwrap().is_empty());
    assert_eq!(
        s.dead_letters(&dls(&ta)).await.unwrap().len(),
        3,
        "the other tenant's stay open"
    );

    assert_eq!(s.tenant_active_runs(&ta).await.unwrap(), 0, "all ended");
    s.commit(Batch {
        new_runs: vec![
            run_of(&format!("{ns}-live1"), &ta, 200),
            NewRun {
                status: RunStatus::Queued,
                ..run_of(&format!("{ns}-live2"), &ta, 201)
            },
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(s.tenant_active_runs(&ta).await.unwrap(), 2);
    assert_eq!(s.tenant_active_runs(&tb).await.unwrap(), 0);
    let live: Vec<(String, &str, u64)> = s
        .live_runs(10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.tenant == ta || l.tenant == tb)
        .map(|l| (l.workflow, l.status.as_str(), l.runs))
        .collect();
    assert_eq!(
        live,
        [
            ("demo".to_string(), "queued", 1),
            ("demo".to_string(), "running", 1)
        ],
        "live runs by tenant, workflow and status"
    );
}

/// A trigger name is one tenant's: another tenant cannot take it over. Deleting removes it.
pub async fn triggers_belong_to_tenants(s: &dyn Store, ns: &str) {
    let name = format!("{ns}-hook");
    let t = TriggerRecord {
        name: name.clone(),
        subject: String::new(),
        schedule: None,
        spec: spec(),
        params: Map::new(),
        paused: false,
        created_ms: 1,
        updated_ms: 1,
        tenant: format!("{ns}-ta"),
        webhook_salt: Some("salt-1".into()),
    };
    s.put_trigger(&t).await.unwrap();
    let theirs = TriggerRecord {
        tenant: format!("{ns}-tb"),
        webhook_salt: None,
        subject: "x.y".into(),
        ..t.clone()
    };
    assert!(
        matches!(s.put_trigger(&theirs).await, Err(Error::Taken(_))),
        "another tenant's name"
    );
    let got = s.triggers().await.unwrap();
    let got = got.iter().find(|x| x.name == name).unwrap();
    assert_eq!(got, &t, "unchanged");
    assert!(s.delete_trigger(&name).await.unwrap());
    assert!(!s.delete_trigger(&name).await.unwrap());
    assert!(!s.triggers().await.unwrap().iter().any(|x| x.name == name));
    s.put_trigger(&theirs).await.unwrap();
    assert!(
        s.delete_trigger(&name).await.unwrap(),
        "free again once deleted"
    );
}

/// API keys: stored once (a second key with the id is refused), read by id, listed per tenant,
/// revoked once (the first revocation time stays), and only within the tenant given.
pub async fn api_keys_create_list_and_revoke(s: &dyn Store, ns: &str) {
    let key = |id: &str, tenant: &str, at: u64| ApiKey {
        key_id: format!("{ns}{id}"),
        tenant: tenant.into(),
        name: "ci".into(),
        role: "operator".into(),
        scopes: vec!["audit:read".into()],
        secret_hash: vec![1, 2, 3, 255],
        created_ms: at,
        created_by: "admin".into(),
        expires_ms: Some(9_000),
        revoked_ms: None,
    };
    let (ta, tb) = (format!("{ns}-ta"), format!("{ns}-tb"));
    let k1 = key("k1", &ta, 10);
    s.create_api_key(&k1).await.unwrap();
    s.create_api_key(&key("k2", &tb, 11)).await.unwrap();
    s.create_api_key(&key("k3", &ta, 12)).await.unwrap();
    assert!(matches!(
        s.create_api_key(&key("k1", &tb, 13)).await,
        Err(Error::Taken(_))
    ));
    assert_eq!(s.api_key(&k1.key_id).await.unwrap().as_ref(), Some(&k1));
    assert_eq!(s.api_key(&format!("{ns}none")).await.unwrap(), None);
    let listed: Vec<String> = s
        .api_keys(Some(&ta))
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.key_id)
        .collect();
    assert_eq!(listed, [format!("{ns}k1"), format!("{ns}k3")]);
    assert!(
        !s.revoke_api_key(&k1.key_id, Some(&tb), 20).await.unwrap(),
        "not another tenant's"
    );
    assert!(s.revoke_api_key(&k1.key_id, Some(&ta), 20).await.unwrap());
    assert!(s.revoke_api_key(&k1.key_id, None, 30).await.unwrap());
    assert_eq!(
        s.api_key(&k1.key_id).await.unwrap().unwrap().revoked_ms,
        Some(20),
        "revoked when first revoked"
    );
    assert!(
        !s.revoke_api_key(&format!("{ns}none"), None, 1)
            .await
            .unwrap()
    );
}

/// Registered workflows: versions 1, 2, ... per tenant and name; the latest or a given one is
/// read; a deleted name is gone (every version) and registering it again continues the count.
pub async fn workflows_register_version_and_delete(s: &dyn Store, ns: &str) {
    let (ta, tb) = (format!("{ns}-ta"), format!("{ns}-tb"));
    let name = "orders";
    let mut v2 = spec();
    v2.name = "orders-v2".into();
    assert_eq!(
        s.register_workflow(&ta, name, &spec(), "u", 1)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.register_workflow(&ta, name, &v2, "u", 2).await.unwrap(),
        2
    );
    assert_eq!(
        s.register_workflow(&tb, name, &spec(), "u", 3)
            .await
            .unwrap(),
        1,
        "per tenant"
    );
    assert_eq!(
        s.register_workflow(&ta, "billing", &spec(), "u", 4)
            .await
            .unwrap(),
        1
    );
    let latest = s.workflow(&ta, name, None).await.unwrap().unwrap();
    assert_eq!(
        (latest.version, latest.spec.name.as_str()),
        (2, "orders-v2")
    );
    assert_eq!(latest.created_by, "u");
    let first = s.workflow(&ta, name, Some(1)).await.unwrap().unwrap();
    assert_eq!(first.spec, spec());
    assert_eq!(s.workflow(&ta, name, Some(3)).await.unwrap(), None);
    let listed: Vec<(String, u32)> = s
        .workflows(&ta)
        .await
        .unwrap()
        .into_iter()
        .map(|w| (w.name, w.version))
        .collect();
    assert_eq!(listed, [("billing".into(), 1), ("orders".into(), 2)]);
    assert!(s.delete_workflow(&ta, name, 5).await.unwrap());
    assert!(!s.delete_workflow(&ta, name, 6).await.unwrap());
    assert_eq!(s.workflow(&ta, name, None).await.unwrap(), None);
    assert_eq!(s.workflow(&ta, name, Some(1)).await.unwrap(), None);
    assert!(
        s.workflow(&tb, name, None).await.unwrap().is_some(),
        "the other tenant's stays"
    );
    assert_eq!(
        s.register_workflow(&ta, name, &spec(), "u", 7)
            .await
            .unwrap(),
        3
    );
}

/// The API audit trail: entries numbered in order, listed newest first, filtered by tenant,
/// actor, action and time, a page at a time.
pub async fn api_audit_lists_and_pages(s: &dyn Store, ns: &str) {
    let (ta, tb) = (format!("{ns}-ta"), format!("{ns}-tb"));
    let entries: Vec<ApiAuditEntry> = (0..5u64)
        .map(|k| ApiAuditEntry {
            id: 0,
            at_ms: 1000 + k,
            tenant: if k == 2 { tb.clone() } else { ta.clone() },
            actor: format!("key:{}", k % 2),
            action: if k == 4 { "runs.cancel" } else { "runs.submit" }.into(),
            target: format!("r{k}"),
            outcome: "ok".into(),
            status: 202,
            client_addr: "127.0.0.1".into(),
            request_id: format!("req-{k}"),
            detail: (k == 0).then(|| json!({"workflow": "demo"})),
        })
        .collect();
    s.record_api_calls(&entries[..2]).await.unwrap();
    s.record_api_calls(&entries[2..]).await.unwrap();
    s.record_api_calls(&[]).await.unwrap();
    let of_a = ApiAuditFilter {
        tenant: Some(ta.clone()),
        ..Default::default()
    };
    let all = s.api_audit(&of_a).await.unwrap();
    let targets: Vec<&str> = all.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(
        targets,
        ["r4", "r3", "r1", "r0"],
        "newest first, tenant a only"
    );
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(all[3].detail, Some(json!({"workflow": "demo"})));
    assert_eq!((all[3].status, all[3].request_id.as_str()), (202, "req-0"));
    let page = s
        .api_audit(&ApiAuditFilter {
            before_id: Some(all[1].id),
            limit: 1,
            ..of_a.clone()
        })
        .await
        .unwrap();
    assert_eq!(page[0].target, "r1");
    let filtered = s
        .api_audit(&ApiAuditFilter {
            actor: Some("key:0".into()),
            action: Some("runs.submit".into()),
            since_ms: Some(1001),
            ..of_a
        })
        .await
        .unwrap();
    assert!(filtered.is_empty(), "{filtered:?}");
    let b = s
        .api_audit(&ApiAuditFilter {
            tenant: Some(tb),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
}
