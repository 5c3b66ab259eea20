//! PostgreSQL row-level security (migration 0007): the application runs as `agentidp_app`, a
//! role without `BYPASSRLS` that owns nothing, and every tenant table admits a row only to a
//! transaction that set that row's organization (`agentidp.org_id`) or declared platform scope
//! (`agentidp.scope`). PostgreSQL only (SQLite has no roles): skipped without
//! `AGENTIDP_TEST_DATABASE_URL`.

use std::collections::BTreeMap;

use agentidp::model::{AgentId, AgentStatus, Alg, AuthMethod, OrgId, PartnerId};
use agentidp::storage::{AgentRecord, Db, Event, KeyRecord, OrgRecord, PartnerRecord, Stores};
use serde_json::json;
use sqlx::{Connection, PgConnection};

use crate::support::*;

/// The tables of the schema with an `org_id` column, and `orgs` (keyed on `id`): every table
/// that holds one organization's data. Read from the catalog, so a table added later is in it.
async fn tenant_tables(conn: &mut PgConnection) -> Vec<(String, &'static str)> {
    let with_org_id: Vec<String> = sqlx::query_scalar(
        "SELECT c.table_name::text FROM information_schema.columns c \
         JOIN information_schema.tables t \
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = current_schema() AND c.column_name = 'org_id' \
           AND t.table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let mut tables: Vec<(String, &'static str)> =
        with_org_id.into_iter().map(|t| (t, "org_id")).collect();
    tables.push(("orgs".into(), "id"));
    tables
}

async fn count(conn: &mut PgConnection, sql: String, org: Option<&str>) -> i64 {
    let q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
    let q = match org {
        Some(o) => q.bind(o.to_owned()),
        None => q,
    };
    q.fetch_one(&mut *conn).await.unwrap()
}

fn org(slug: &str) -> OrgRecord {
    let id = OrgId::from(uuid::Uuid::now_v7().to_string());
    OrgRecord {
        id: id.clone(),
        slug: slug.to_owned(),
        name: slug.to_owned(),
        issuer: format!("https://idp.example.com/orgs/{slug}"),
        did: format!("did:web:idp.example.com:orgs:{slug}"),
        dek_wrapped: vec![1, 2, 3],
        dek_mk_version: 1,
        created_at: 1_700_000_000,
        updated_at: 1_700_000_000,
    }
}

fn ev(org_id: &OrgId, kind: &'static str) -> Event {
    Event {
        org_id: Some(org_id.clone()),
        kind,
        subject: org_id.to_string(),
        data: json!({}),
        at: 1_700_000_000,
    }
}

/// One organization with a row in every tenant table: keys, an agent with a card, a partner, a
/// revocation, and the events of all that.
async fn populate(stores: &Stores, slug: &str) -> OrgId {
    let o = org(slug);
    let key = KeyRecord {
        org_id: o.id.clone(),
        kid: format!("{slug}-k1"),
        alg: Alg::ES256,
        public_jwk: "{}".into(),
        private_enc: vec![0],
        created_at: 1,
        activates_at: 1,
        retires_at: None,
        removed_at: None,
    };
    stores
        .orgs
        .create(&o, &[key], &ev(&o.id, "org.created"))
        .await
        .unwrap();
    let agent = AgentRecord::new(
        o.id.clone(),
        AgentId::from(uuid::Uuid::now_v7().to_string()),
        format!("did:web:idp.example.com:orgs:{slug}:agents:a"),
        "a".into(),
        AuthMethod::ClientSecretBasic,
        1_700_000_000,
    );
    assert_eq!(agent.status, AgentStatus::Active);
    stores
        .agents
        .create(&agent, &ev(&o.id, "agent.created"))
        .await
        .unwrap();
    stores
        .agents
        .set_card(&o.id, &agent.id, "{}", 2, &ev(&o.id, "agent.card_updated"))
        .await
        .unwrap();
    let partner = PartnerRecord {
        org_id: o.id.clone(),
        id: PartnerId::from(uuid::Uuid::now_v7().to_string()),
        issuer: format!("https://partner.example/{slug}"),
        name: None,
        jwks_uri: None,
        jwks: Some(json!({"keys": []})),
        did: None,
        allowed_scopes: vec![],
        allowed_audiences: vec![],
        max_assertion_lifetime: 300,
        claim_mapping: BTreeMap::new(),
        enabled: true,
        created_at: 1,
        updated_at: 1,
        version: 1,
    };
    stores
        .partners
        .create(&partner, &ev(&o.id, "partner.created"))
        .await
        .unwrap();
    stores
        .replay
        .revoke(&o.id, "jti-1", i64::MAX)
        .await
        .unwrap();
    let key = agentidp::storage::ApiKeyRecord {
        org_id: o.id.clone(),
        id: uuid::Uuid::new_v4().simple().to_string(),
        name: "k".into(),
        role: agentidp::model::Role::Admin,
        digest: vec![1],
        digest_version: 1,
        prev_digest: None,
        prev_digest_version: None,
        prev_expires_at: None,
        allowed_cidrs: vec![],
        expires_at: None,
        created_at: 1,
        created_by: "platform".into(),
        rotated_at: None,
        last_used_at: None,
        last_used_ip: None,
        revoked_at: None,
    };
    stores
        .principals
        .create_api_key(&key, &ev(&o.id, "api_key.created"))
        .await
        .unwrap();
    stores
        .policies
        .put(&o.id, "{}", 0, 1, &ev(&o.id, "policy.updated"))
        .await
        .unwrap();
    let user = agentidp::storage::UserRecord {
        org_id: o.id.clone(),
        id: uuid::Uuid::new_v4().to_string(),
        email: format!("a@{slug}.example"),
        email_normalized: format!("a@{slug}.example"),
        name: "A".into(),
        role: agentidp::model::Role::Owner,
        status: agentidp::model::UserStatus::Active,
        password_hash: None,
        email_verified: false,
        created_at: 1,
        updated_at: 1,
        password_changed_at: None,
    };
    stores
        .users
        .create_user(&user, &ev(&o.id, "user.created"))
        .await
        .unwrap();
    let member = agentidp::storage::UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        email: format!("m@{slug}.example"),
        email_normalized: format!("m@{slug}.example"),
        role: agentidp::model::Role::Member,
        ..user.clone()
    };
    stores
        .users
        .create_user(&member, &ev(&o.id, "user.created"))
        .await
        .unwrap();
    let link = agentidp::storage::LinkRecord {
        org_id: o.id.clone(),
        id: uuid::Uuid::new_v4().simple().to_string(),
        user_id: user.id.clone(),
        purpose: agentidp::storage::LinkPurpose::VerifyEmail,
        email_normalized: user.email_normalized.clone(),
        digest: vec![1],
        digest_version: 1,
        created_at: 1,
        expires_at: i64::MAX,
        used_at: None,
    };
    stores.links.create_link(&link).await.unwrap();
    let transfer = agentidp::storage::TransferRecord {
        org_id: o.id.clone(),
        id: uuid::Uuid::new_v4().simple().to_string(),
        user_id: member.id.clone(),
        from_user_id: Some(user.id.clone()),
        initiated_by: "platform".into(),
        digest: vec![1],
        digest_version: 1,
        created_at: 1,
        expires_at: i64::MAX,
        state: agentidp::storage::TransferState::Pending,
        closed_at: None,
    };
    stores
        .transfers
        .create_transfer(&transfer, &ev(&o.id, "ownership_transfer.started"))
        .await
        .unwrap();
    let invite = agentidp::storage::InviteRecord {
        org_id: o.id.clone(),
        id: uuid::Uuid::new_v4().simple().to_string(),
        email: format!("b@{slug}.example"),
        email_normalized: format!("b@{slug}.example"),
        role: agentidp::model::Role::Member,
        digest: vec![1],
        digest_version: 1,
        created_at: 1,
        created_by: "platform".into(),
        expires_at: i64::MAX,
        state: agentidp::storage::InviteState::Pending,
        closed_at: None,
        user_id: None,
    };
    stores.users.create_invite(&invite, 1).await.unwrap();
    let enrollment = agentidp::storage::EnrollmentRecord {
        org_id: o.id.clone(),
        id: uuid::Uuid::new_v4().simple().to_string(),
        name: "fleet-".into(),
        digest: vec![1],
        digest_version: 1,
        scopes: vec![],
        max_uses: 1,
        uses: 0,
        expires_at: i64::MAX,
        created_at: 1,
        created_by: "platform".into(),
        revoked_at: None,
    };
    stores
        .enrollments
        .create_enrollment(&enrollment, &ev(&o.id, "enrollment_token.created"))
        .await
        .unwrap();
    // Sign-in: a session, a code, a consent, a refresh token.
    stores
        .sessions
        .create_session(&agentidp::storage::SessionRecord {
            org_id: o.id.clone(),
            id: "s1".into(),
            digest: vec![1],
            digest_version: 1,
            user_id: user.id.clone(),
            auth_time: 1,
            amr: vec!["pwd".into()],
            created_at: 1,
            last_seen_at: 1,
            expires_at: i64::MAX,
            ip: "127.0.0.1".into(),
            user_agent: "t".into(),
            ended_at: None,
        })
        .await
        .unwrap();
    stores
        .grants
        .create_code(&agentidp::storage::CodeRecord {
            org_id: o.id.clone(),
            id: "c1".into(),
            digest: vec![1],
            digest_version: 1,
            client_id: "x".into(),
            user_id: user.id.clone(),
            session_id: "s1".into(),
            redirect_uri: String::new(),
            code_challenge: "c".into(),
            scopes: vec![],
            nonce: None,
            resource: vec![],
            auth_time: 1,
            amr: vec![],
            created_at: 1,
            expires_at: i64::MAX,
            used_at: None,
            access_jti: None,
            access_exp: None,
            refresh_family: None,
        })
        .await
        .unwrap();
    stores
        .grants
        .put_consent(&agentidp::storage::ConsentRecord {
            org_id: o.id.clone(),
            user_id: user.id.clone(),
            client_id: "x".into(),
            scopes: vec!["openid".into()],
            created_at: 1,
            updated_at: 1,
        })
        .await
        .unwrap();
    stores
        .grants
        .create_refresh(&agentidp::storage::RefreshRecord {
            org_id: o.id.clone(),
            id: "r1".into(),
            family_id: "f1".into(),
            digest: vec![1],
            digest_version: 1,
            client_id: "x".into(),
            user_id: user.id.clone(),
            session_id: "s1".into(),
            scopes: vec![],
            resource: vec![],
            auth_time: 1,
            amr: vec![],
            created_at: 1,
            expires_at: i64::MAX,
            family_expires_at: i64::MAX,
            access_jti: "j".into(),
            access_exp: i64::MAX,
            used_at: None,
            revoked_at: None,
        })
        .await
        .unwrap();
    stores
        .delegations
        .create_delegation(
            &agentidp::storage::DelegationRecord {
                org_id: o.id.clone(),
                id: "d1".into(),
                user_id: user.id.clone(),
                agent_id: "x".into(),
                scopes: vec![],
                created_at: 1,
                created_by: "consent".into(),
                expires_at: None,
                revoked_at: None,
            },
            &ev(&o.id, "delegation.created"),
        )
        .await
        .unwrap();
    o.id
}

/// A connection as the application role, outside any scope, sees no row of any organization
/// even though two organizations have rows in every tenant table; with organization A's setting
/// it sees exactly A's rows, and the setting does not outlive its transaction; platform scope
/// sees both. The application's own pool runs as that role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_without_the_setting_sees_no_rows() {
    let Some(Backend::Postgres { admin_url, .. }) = Backend::postgres() else {
        return;
    };
    let pg = PgDatabase::create(&admin_url).await;
    let db = agentidp::storage::open(&pg.url).await.unwrap();
    db.migrate().await.unwrap();
    let stores = Stores::new(db.clone());
    let a = populate(&stores, "rls-a").await;
    let b = populate(&stores, "rls-b").await;

    // The pool's connections are the application role, which cannot bypass RLS.
    let Db::Postgres(pool) = &db else {
        unreachable!("a PostgreSQL URL")
    };
    let (user, bypass, superuser): (String, bool, bool) = sqlx::query_as(
        "SELECT current_user::text, rolbypassrls, rolsuper FROM pg_roles \
         WHERE rolname = current_user",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        (user.as_str(), bypass, superuser),
        ("agentidp_app", false, false)
    );
    let through_pool: i64 = sqlx::query_scalar("SELECT count(*) FROM agents")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(
        through_pool, 0,
        "a pooled query outside a scope sees nothing"
    );

    // An organization id that cannot be written into the BEGIN statement as a literal is bound
    // as a parameter instead: the same scope, no injection.
    let odd = "o'; RESET ROLE; --";
    stores.replay.revoke(odd, "j", i64::MAX).await.unwrap();
    assert!(stores.replay.is_revoked(odd, "j").await.unwrap());
    assert!(!stores.replay.is_revoked(&a, "j").await.unwrap());

    let mut conn = PgConnection::connect(&pg.url).await.unwrap();
    let tables = tenant_tables(&mut conn).await;
    assert!(tables.len() >= 7, "{tables:?}");
    // As the (superuser) owner: both organizations have rows everywhere.
    for (t, col) in &tables {
        for o in [&a, &b] {
            let n = count(
                &mut conn,
                format!("SELECT count(*) FROM {t} WHERE {col} = $1"),
                Some(o),
            )
            .await;
            assert!(n > 0, "{t} has no row of {o}: the test would prove nothing");
        }
    }

    sqlx::query("SET ROLE agentidp_app")
        .execute(&mut conn)
        .await
        .unwrap();
    for (t, _) in &tables {
        let n = count(&mut conn, format!("SELECT count(*) FROM {t}"), None).await;
        assert_eq!(n, 0, "{t}: rows visible without the setting");
    }
    // Nor can anything be written without it.
    let e = sqlx::query("INSERT INTO revoked_tokens (org_id, jti, expires_at) VALUES ($1, 'x', 1)")
        .bind(a.as_str())
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("row-level security"), "{e}");
    let n = sqlx::query("UPDATE agents SET name = 'taken'")
        .execute(&mut conn)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n, 0);

    // Organization A's setting: A's rows, none of B's.
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('agentidp.org_id', $1, true)")
        .bind(a.as_str())
        .execute(&mut *tx)
        .await
        .unwrap();
    for (t, col) in &tables {
        let all = count(&mut tx, format!("SELECT count(*) FROM {t}"), None).await;
        let own = count(
            &mut tx,
            format!("SELECT count(*) FROM {t} WHERE {col} = $1"),
            Some(&a),
        )
        .await;
        assert!(own > 0, "{t}: A's rows are not visible to A");
        assert_eq!(all, own, "{t}: A sees rows of another organization");
    }
    let e = sqlx::query("INSERT INTO revoked_tokens (org_id, jti, expires_at) VALUES ($1, 'x', 1)")
        .bind(b.as_str())
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("row-level security"),
        "A wrote B's row: {e}"
    );
    tx.rollback().await.unwrap();
    // The setting was the transaction's only.
    let n = count(&mut conn, "SELECT count(*) FROM agents".into(), None).await;
    assert_eq!(n, 0, "the setting outlived its transaction");

    // Platform scope: every organization's rows.
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('agentidp.scope', 'platform', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let n = count(&mut tx, "SELECT count(*) FROM orgs".into(), None).await;
    assert_eq!(n, 2);
    tx.rollback().await.unwrap();
    drop(conn);
}

/// Every table with an `org_id` column (read from `information_schema`, so a new tenant table
/// is included without editing this test), and `orgs`, has row-level security enabled and
/// forced, and a policy keyed on `agentidp.org_id`; the application role owns none of them and
/// cannot bypass RLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tenant_table_has_row_level_security() {
    let Some(Backend::Postgres { admin_url, .. }) = Backend::postgres() else {
        return;
    };
    let pg = PgDatabase::create(&admin_url).await;
    let db = agentidp::storage::open(&pg.url).await.unwrap();
    db.migrate().await.unwrap();
    let mut conn = PgConnection::connect(&pg.url).await.unwrap();
    let tables = tenant_tables(&mut conn).await;
    let names: Vec<&str> = tables.iter().map(|(t, _)| t.as_str()).collect();
    for known in [
        "agent_cards",
        "agents",
        "events",
        "orgs",
        "partners",
        "revoked_tokens",
        "signing_keys",
    ] {
        assert!(names.contains(&known), "{known} missing from {names:?}");
    }
    let mut missing = Vec::new();
    for (t, _) in &tables {
        let (enabled, forced, owner): (bool, bool, String) = sqlx::query_as(
            "SELECT relrowsecurity, relforcerowsecurity, pg_get_userbyid(relowner)::text \
             FROM pg_class WHERE oid = to_regclass($1)",
        )
        .bind(t)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        let keyed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_policies WHERE schemaname = current_schema() \
             AND tablename = $1 AND qual LIKE '%agentidp.org_id%' \
             AND with_check LIKE '%agentidp.org_id%'",
        )
        .bind(t)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if !enabled || !forced || keyed == 0 {
            missing.push(format!(
                "{t} (enabled {enabled}, forced {forced}, policies on agentidp.org_id {keyed})"
            ));
        }
        assert_ne!(
            owner, "agentidp_app",
            "{t} is owned by the application role"
        );
    }
    assert!(
        missing.is_empty(),
        "tenant tables without row-level security (add ENABLE, FORCE and the org_scope and \
         platform_scope policies in a migration, as 0007_rls.sql does): {missing:?}"
    );
    let (bypass, superuser, login): (bool, bool, bool) = sqlx::query_as(
        "SELECT rolbypassrls, rolsuper, rolcanlogin FROM pg_roles WHERE rolname = 'agentidp_app'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((bypass, superuser, login), (false, false, false));
}

/// A login role and a database it owns, both dropped when this value is dropped (also when the
/// test panics).
struct OwnRole {
    admin_url: String,
    user: String,
    dbname: String,
}

impl Drop for OwnRole {
    fn drop(&mut self) {
        let (admin_url, user, dbname) = (
            self.admin_url.clone(),
            self.user.clone(),
            self.dbname.clone(),
        );
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                    for sql in [
                        format!("DROP DATABASE IF EXISTS {dbname} WITH (FORCE)"),
                        format!("DROP ROLE IF EXISTS {user}"),
                    ] {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                            .execute(&mut conn)
                            .await;
                    }
                }
            });
        })
        .join();
    }
}

/// A connecting user that is neither a superuser nor a member of `agentidp_app` is refused at
/// start-up with what a superuser must run; once granted, it migrates (owning the tables, still
/// under the policies thanks to FORCE) and serves through the application role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_that_may_not_take_the_role_is_told_what_to_run() {
    let Some(Backend::Postgres { admin_url, .. }) = Backend::postgres() else {
        return;
    };
    // Some database opened first makes sure the role exists in this cluster.
    let first = PgDatabase::create(&admin_url).await;
    agentidp::storage::open(&first.url).await.unwrap();
    let user = format!("agentidp_t_{}", uuid::Uuid::new_v4().simple());
    let own = OwnRole {
        admin_url: admin_url.clone(),
        user: user.clone(),
        dbname: format!("{user}_db"),
    };
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    for sql in [
        format!("CREATE ROLE {user} LOGIN NOSUPERUSER NOCREATEROLE"),
        format!("CREATE DATABASE {} OWNER {user}", own.dbname),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_username(&user).unwrap();
    url.set_path(&format!("/{}", own.dbname));

    let refused = agentidp::storage::open(url.as_str())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("may not SET ROLE agentidp_app"),
        "{refused}"
    );
    assert!(
        refused.contains(&format!("GRANT agentidp_app TO \"{user}\"")),
        "{refused}"
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("GRANT agentidp_app TO {user}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let db = agentidp::storage::open(url.as_str()).await.unwrap();
    db.migrate().await.unwrap();
    let stores = Stores::new(db.clone());
    let a = populate(&stores, "owned").await;
    let got = stores.orgs.by_slug("owned").await.unwrap().unwrap();
    assert_eq!(got.id, a);
    assert!(stores.replay.is_revoked(&a, "jti-1").await.unwrap());
    // The owner itself is subject to the policies (FORCE): no setting, no rows.
    let mut owner = PgConnection::connect(url.as_str()).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM agents")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(n, 0, "the tables' owner sees rows without the setting");
    let _ = owner.close().await;
    if let Db::Postgres(pool) = db {
        pool.close().await;
    }
    drop(stores);
    drop(own);
    drop(first);
}

/// Not a check: the cost of the scope on a read (a cache miss), printed. The same agent read
/// through the store (BEGIN + set_config in one round trip, the SELECT; the ROLLBACK rides on the
/// pool's release ping) and as the single pooled statement it was before (as the connecting
/// user, no RLS). `cargo test --test it rls::measure -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement"]
async fn measure_scoped_reads() {
    let Some(Backend::Postgres { admin_url, .. }) = Backend::postgres() else {
        return;
    };
    let pg = PgDatabase::create(&admin_url).await;
    let db = agentidp::storage::open(&pg.url).await.unwrap();
    db.migrate().await.unwrap();
    let stores = Stores::new(db.clone());
    let a = populate(&stores, "measure").await;
    let agent = stores.agents.list(&a, None, 1).await.unwrap().remove(0);
    let plain = sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .connect(&pg.url)
        .await
        .unwrap();
    const N: u32 = 3000;
    for round in 0..2 {
        let started = std::time::Instant::now();
        for _ in 0..N {
            let got = stores.agents.get(&a, &agent.id).await.unwrap();
            assert!(got.is_some());
        }
        let scoped = started.elapsed() / N;
        let started = std::time::Instant::now();
        for _ in 0..N {
            let row = sqlx::query(
                "SELECT * FROM agents WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL",
            )
            .bind(a.as_str())
            .bind(agent.id.as_str())
            .fetch_optional(&plain)
            .await
            .unwrap();
            assert!(row.is_some());
        }
        let unscoped = started.elapsed() / N;
        let started = std::time::Instant::now();
        for _ in 0..N {
            assert!(stores.orgs.by_slug("measure").await.unwrap().is_some());
        }
        let by_slug = started.elapsed() / N;
        eprintln!(
            "round {round}: agents.get scoped {scoped:?}/call, the same SELECT unscoped {unscoped:?}/call, orgs.by_slug (platform scope) {by_slug:?}/call"
        );
    }
    plain.close().await;
}
