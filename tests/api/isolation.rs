//! One bad request fails that request alone: a job the database refuses is
//! answered with its error while the jobs batched with it commit, with no id
//! or seq skipped; text no database should be asked to store is refused at
//! the edge with a 400. (An outage failing every job is covered by the
//! crash and durability tests.)

use std::str::FromStr;

use chrono::Utc;
use reqwest::Method;
use serde_json::{json, Value};
use switchboard::{
    domain::InstanceName,
    event::data::{Direction, MessageData, Payload},
    store::{Change, Committed, Job, OutboxRow, StoreError},
};
use tokio::sync::oneshot;

use crate::helpers::*;
use crate::on_both_backends;

/// What the test's trigger refuses in an event's data.
const REFUSED: &str = "refuse-me";

/// Holds the database's write lock from outside the server. While it is
/// held the writer cannot finish a batch, so every job submitted meanwhile
/// shares a batch with another: the one the writer is blocked on, or the
/// next, which takes everything queued.
enum WriterHold {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl WriterHold {
    async fn take(backend: Backend, db: &TestDb) -> WriterHold {
        use sqlx::Connection;
        match backend {
            Backend::Postgres => {
                let url = db.url.as_deref().expect("a PostgreSQL URL");
                let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
                sqlx::raw_sql("BEGIN; SELECT last_id FROM log_head WHERE singleton FOR UPDATE")
                    .execute(&mut conn)
                    .await
                    .expect("lock the log head");
                WriterHold::Postgres(conn)
            }
            Backend::Sqlite => {
                let mut conn = sqlite_connection(db).await;
                sqlx::raw_sql("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .expect("take the write lock");
                WriterHold::Sqlite(conn)
            }
        }
    }

    async fn release(self) {
        match self {
            WriterHold::Postgres(mut conn) => {
                sqlx::raw_sql("COMMIT")
                    .execute(&mut conn)
                    .await
                    .expect("commit");
            }
            WriterHold::Sqlite(mut conn) => {
                sqlx::raw_sql("COMMIT")
                    .execute(&mut conn)
                    .await
                    .expect("commit");
            }
        }
    }
}

async fn sqlite_connection(db: &TestDb) -> sqlx::SqliteConnection {
    use sqlx::ConnectOptions;
    let path = db.dir.path().join("switchboard.db");
    sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .expect("a SQLite URL")
        .connect()
        .await
        .expect("open the server's SQLite file")
}

/// Makes the database refuse any event whose data holds [`REFUSED`]. No
/// event the server builds holds a value PostgreSQL refuses today (event
/// data is escaped JSON), but the store must isolate one however it comes,
/// so a trigger stands in for it: on PostgreSQL with a data exception
/// (SQLSTATE 22023), on SQLite with an abort.
async fn refuse_marked_events(backend: Backend, db: &TestDb) {
    use sqlx::Connection;
    match backend {
        Backend::Postgres => {
            let url = db.url.as_deref().expect("a PostgreSQL URL");
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            sqlx::raw_sql(
                "CREATE FUNCTION refuse_marked_events() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN \
                   IF NEW.data LIKE '%refuse-me%' THEN \
                     RAISE EXCEPTION 'this test refuses the event' USING ERRCODE = '22023'; \
                   END IF; \
                   RETURN NEW; \
                 END $$; \
                 CREATE TRIGGER refuse_marked_events BEFORE INSERT ON events \
                 FOR EACH ROW EXECUTE FUNCTION refuse_marked_events();",
            )
            .execute(&mut conn)
            .await
            .expect("create the trigger");
        }
        Backend::Sqlite => {
            let mut conn = sqlite_connection(db).await;
            sqlx::raw_sql(
                "CREATE TRIGGER refuse_marked_events BEFORE INSERT ON events \
                 WHEN NEW.data LIKE '%refuse-me%' \
                 BEGIN SELECT RAISE(ABORT, 'this test refuses the event'); END;",
            )
            .execute(&mut conn)
            .await
            .expect("create the trigger");
        }
    }
}

/// `count` incoming messages of one instance saying `content`.
fn messages(instance: &str, content: &str, count: usize) -> Job {
    let name = InstanceName::parse(instance).expect("valid");
    let events = (0..count)
        .map(|i| {
            MessageData {
                id: format!("{instance}-{content}-{i}"),
                direction: Direction::Incoming,
                from: "+15550000001".into(),
                to: "+15550000002".into(),
                kind: "text".into(),
                content: content.into(),
                timestamp: 0,
                parts: 1,
            }
            .into_event(&name)
        })
        .collect();
    Job {
        events,
        changes: Vec::new(),
        fence: None,
    }
}

/// A queued outgoing message with its event, as `sendText` builds it.
fn queued_message(instance: &str, body: &str) -> Job {
    let name = InstanceName::parse(instance).expect("valid");
    let id = uuid::Uuid::now_v7().to_string();
    let event = MessageData {
        id: id.clone(),
        direction: Direction::Outgoing,
        from: "+15550000002".into(),
        to: "+15550000003".into(),
        kind: "text".into(),
        content: body.into(),
        timestamp: 0,
        parts: 1,
    }
    .into_event(&name);
    Job {
        events: vec![event],
        changes: vec![Change::EnqueueMessage(OutboxRow::queued(
            id,
            name,
            "+15550000003".into(),
            body.into(),
            Utc::now(),
        ))],
        fence: None,
    }
}

type Answer = oneshot::Receiver<Result<Vec<Committed>, StoreError>>;

async fn answer(what: &str, rx: Answer) -> Result<Vec<Committed>, StoreError> {
    tokio::time::timeout(WAIT, rx)
        .await
        .unwrap_or_else(|_| panic!("{what} was not answered within {WAIT:?}"))
        .unwrap_or_else(|_| panic!("the writer dropped {what}"))
}

fn positions(committed: &[Committed]) -> Vec<(i64, i64)> {
    committed.iter().map(|c| (c.id, c.seq)).collect()
}

on_both_backends! {
    async fn an_event_the_database_refuses_fails_its_job_alone_and_the_jobs_batched_with_it_commit(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        refuse_marked_events(backend, &db).await;
        let isolated_before = metric(&app, "switchboard_log_isolated_batches_total").await;

        let hold = WriterHold::take(backend, &db).await;
        let first = app.log.submit(messages("alpha", "first", 3)).await.expect("queued");
        let refused = app.log.submit(messages("beta", REFUSED, 2)).await.expect("queued");
        let second = app.log.submit(messages("alpha", "second", 2)).await.expect("queued");
        let third = app.log.submit(messages("gamma", "third", 1)).await.expect("queued");
        hold.release().await;

        let err = answer("the refused job", refused)
            .await
            .expect_err("the database refuses this job's events");
        assert!(!err.is_outage(), "{err:?}");
        if backend == Backend::Postgres {
            assert!(matches!(err, StoreError::Rejected { .. }), "{err:?}");
        }
        // The others commit, with ids and seqs as if the refused job had never
        // been there: none skipped.
        let first = answer("the first job", first).await.expect("commits");
        let second = answer("the second job", second).await.expect("commits");
        let third = answer("the third job", third).await.expect("commits");
        assert_eq!(positions(&first), [(1, 1), (2, 2), (3, 3)]);
        assert_eq!(positions(&second), [(4, 4), (5, 5)]);
        assert_eq!(positions(&third), [(6, 1)]);
        assert_eq!(
            metric(&app, "switchboard_log_isolated_batches_total").await,
            isolated_before + 1,
            "one batch was committed again job by job"
        );

        let log = app.read_log("").await;
        let ids: Vec<i64> = log.iter().map(|e| e["id"].as_i64().expect("id")).collect();
        assert_eq!(ids, (1..=6).collect::<Vec<_>>());
        assert!(log.iter().all(|e| e["data"]["content"] != REFUSED), "{log:?}");
        // The refused job's instance starts its seqs at 1 when it next commits.
        let next = app.log.append(messages("beta", "fine", 1)).await.expect("commits");
        assert_eq!(positions(&next), [(7, 1)]);
        app.stop().await;
    }

    async fn a_text_with_u0000_is_refused_with_a_400_while_other_instances_keep_sending(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        app.create_instance("alpha", quick_simulator()).await;
        app.create_instance("beta", quick_simulator()).await;

        let send = |instance: &'static str, text: &'static str| {
            app.admin(Method::POST, &format!("/message/sendText/{instance}"))
                .json(&json!({ "number": "+15550001111", "text": text }))
                .send()
        };
        let (nul, others) = tokio::join!(
            send("alpha", "before\u{0}after"),
            futures_util::future::join_all((0..5).map(|_| send("beta", "hello")))
        );
        let nul = nul.expect("send");
        assert_eq!(nul.status(), 400);
        let body: Value = nul.json().await.expect("an error body");
        assert_eq!(body["error"]["code"], "BAD_REQUEST");
        let message = body["error"]["message"].as_str().expect("a message");
        assert!(message.contains("U+0000") && message.contains("text"), "{message}");
        for response in others {
            assert_eq!(response.expect("send").status(), 201);
        }
        // A group subject is text too.
        let group = app
            .admin(Method::POST, "/group/create/alpha")
            .json(&json!({ "subject": "a\u{0}b", "participants": ["+15551110001"] }))
            .send()
            .await
            .expect("send");
        assert_eq!(group.status(), 400);
        // Nothing of the refused text was stored.
        let log = app.read_log("&events=outgoing").await;
        assert_eq!(log.len(), 5, "{log:?}");
        assert!(log.iter().all(|e| e["instance"] == "beta"), "{log:?}");
        app.stop().await;
    }
}

/// PostgreSQL refuses U+0000 in a text column; SQLite stores it. A message
/// holding one that reaches the store by any path fails its own job with
/// the rejected-content error (a 400 for an API caller), and the jobs of
/// other instances in the same batch commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_postgres_cannot_store_fails_its_job_alone_and_its_batch_commits() {
    let db = TestDb::new(Backend::Postgres).await;
    let app = TestApp::spawn(&db).await;

    let hold = WriterHold::take(Backend::Postgres, &db).await;
    let first = app
        .log
        .submit(queued_message("alpha", "fine"))
        .await
        .expect("queued");
    let refused = app
        .log
        .submit(queued_message("beta", "before\u{0}after"))
        .await
        .expect("queued");
    let second = app
        .log
        .submit(queued_message("gamma", "also fine"))
        .await
        .expect("queued");
    hold.release().await;

    let err = answer("the refused job", refused)
        .await
        .expect_err("PostgreSQL refuses U+0000 in text");
    let StoreError::Rejected { message, .. } = &err else {
        panic!("expected the rejected-content error, got {err:?}");
    };
    assert!(message.contains("0x00"), "{message}");
    assert_eq!(
        positions(&answer("the first job", first).await.expect("commits")),
        [(1, 1)]
    );
    assert_eq!(
        positions(&answer("the second job", second).await.expect("commits")),
        [(2, 1)]
    );
    let store = app.log.store();
    let queued = |name: &str| {
        let name = InstanceName::parse(name).expect("valid");
        async move { store.queued_messages(&name, 10).await.expect("read") }
    };
    assert_eq!(queued("alpha").await.len(), 1);
    assert_eq!(queued("gamma").await.len(), 1);
    assert!(queued("beta").await.is_empty());
    app.stop().await;
}
