//! Never miss an event: resume with `since`, catch-up of lagging consumers,
//! and clients that come and go while events flow.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use rand::{Rng, SeedableRng};
use serde_json::Value;
use switchboard::{
    domain::InstanceName,
    event::data::{Direction, MessageData, Payload},
    store::{EventLog, Isolation, Job},
};
use tokio::sync::watch;

use crate::helpers::*;
use crate::on_both_backends;

/// Appends in the background until told to stop; returns the stop switch.
fn keep_appending(
    log: EventLog,
    instance: &'static str,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        while !flag.load(Ordering::Relaxed) {
            append_messages(&log, instance, 20, 20, 200).await;
            // pacing only: traffic while clients connect and resume; the result is decided by the ids the clients get
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    (stop, task)
}

fn ids(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect()
}

async fn head(app: &TestApp) -> i64 {
    app.read_log("")
        .await
        .last()
        .map_or(0, |e| e["id"].as_i64().expect("id"))
}

on_both_backends! {
    async fn since_replays_everything_after_the_cursor_then_goes_live_without_gap_or_duplicate(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        append_messages(&app.log, "alpha", 2000, 250, 100).await;
        let (stop, producer) = keep_appending(app.log.clone(), "alpha");
        wait_for("the producer to append", WAIT, async || app.hub.last_published() > 2000).await;

        // Resume from the middle while events keep arriving.
        let since = 700;
        let mut ws = app.ws(&format!("/ws?apikey={}&since={since}", app.admin_key)).await;
        let connected_at = app.hub.last_published();
        wait_for("20 more batches after the client connected", WAIT, async || {
            app.hub.last_published() >= connected_at + 400
        })
        .await;
        stop.store(true, Ordering::Relaxed);
        producer.await.expect("producer");
        let last = head(&app).await;
        let got = ws
            .events_until(Duration::from_secs(30), |e| {
                e.last().is_some_and(|e| e["id"].as_i64() == Some(last))
            })
            .await;
        assert_eq!(ids(&got), (since + 1..=last).collect::<Vec<_>>());
        // Nothing more (no duplicate): the next event is one appended now.
        append_messages(&app.log, "alpha", 1, 1, 10).await;
        assert_eq!(ws.event(WAIT).await["id"].as_i64(), Some(last + 1));
        let last = last + 1;

        // A cursor at the head replays nothing and then is live.
        let mut ws = app.ws(&format!("/ws?apikey={}&since={last}", app.admin_key)).await;
        append_messages(&app.log, "alpha", 3, 3, 10).await;
        let got = ws.events_until(WAIT, |e| e.len() == 3).await;
        assert_eq!(ids(&got), (last + 1..=last + 3).collect::<Vec<_>>());
        app.stop().await;
    }

    async fn a_consumer_that_pauses_is_caught_up_from_the_log_without_being_dropped(backend: Backend) {
        let db = TestDb::new(backend).await;
        let mut settings = test_settings(&db);
        let limit = 64 * 1024;
        settings.limits.connection_queue_bytes = limit;
        let app = TestApp::spawn_with(settings).await;
        let mut ws = app.ws(&format!("/ws?apikey={}", app.admin_key)).await;
        let start = head(&app).await;

        // While the client reads nothing, far more than its queue and both
        // sockets' buffers is published.
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let hub = app.hub.clone();
            let sampling = sampling.clone();
            tokio::spawn(async move {
                let mut peak = 0;
                while sampling.load(Ordering::Relaxed) {
                    peak = peak.max(hub.stats().queued_bytes.load(Ordering::Relaxed));
                    // pacing only: how often the sampler looks; the result is decided by the peak over the whole publishing
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                peak.max(hub.stats().queued_bytes.load(Ordering::Relaxed))
            })
        };
        append_messages(&app.log, "alpha", 12_000, 500, 2000).await;
        let last = head(&app).await;
        assert!(app.hub.stats().lagged_connections.load(Ordering::Relaxed) >= 1, "it fell behind");
        sampling.store(false, Ordering::Relaxed);
        let peak = sampler.await.expect("sampler");
        assert!(peak <= limit + 4096, "queued bytes peaked at {peak} with a {limit} limit");

        // Then it reads again and gets every event once, in order, still on
        // the same connection.
        let got = ws
            .events_until(Duration::from_secs(60), |e| {
                e.last().is_some_and(|e| e["id"].as_i64() == Some(last))
            })
            .await;
        assert_eq!(ids(&got), (start + 1..=last).collect::<Vec<_>>());
        // Caught up, it is live again.
        append_messages(&app.log, "alpha", 1, 1, 10).await;
        assert_eq!(ws.event(WAIT).await["id"].as_i64(), Some(last + 1));
        assert_eq!(app.hub.stats().connections.load(Ordering::Relaxed), 1);
        ws.close().await;
        app.stop().await;
    }

    async fn clients_that_disconnect_at_random_and_resume_get_every_event_exactly_once(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        let (stop, producer) = keep_appending(app.log.clone(), "alpha");
        let clients = 12;
        // Each client stops once it has seen the id it is told to reach.
        let (target, told) = watch::channel(None::<i64>);
        let mut tasks = Vec::new();
        // Per client: how often it reconnected, and the newest id it saw.
        let mut progress = Vec::new();
        for n in 0..clients {
            let url_base = app.ws_url(&format!("/ws?apikey={}&events=incoming", app.admin_key));
            let mut told = told.clone();
            let reconnects = Arc::new(AtomicUsize::new(0));
            let reached = Arc::new(AtomicI64::new(0));
            progress.push((reconnects.clone(), reached.clone()));
            tasks.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(n);
                let mut seen: Vec<i64> = Vec::new();
                let done = |seen: &[i64], target: Option<i64>| {
                    target.is_some_and(|target| seen.last().is_some_and(|last| *last >= target))
                };
                loop {
                    let since = seen.last().copied().unwrap_or(0);
                    let url = format!("{url_base}&since={since}");
                    let (stream, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
                    let mut ws = WsClient { stream };
                    // Read a random number of events, then drop the connection.
                    let quota = rng.random_range(5..200);
                    for _ in 0..quota {
                        tokio::select! {
                            event = ws.event(Duration::from_secs(30)) => {
                                let id = event["id"].as_i64().expect("id");
                                seen.push(id);
                                reached.store(id, Ordering::SeqCst);
                            }
                            changed = told.changed() => changed.expect("the test holds the target"),
                        }
                        if done(&seen, *told.borrow()) {
                            return (seen, reconnects.load(Ordering::SeqCst));
                        }
                    }
                    drop(ws);
                    reconnects.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        // The traffic stops once every client has churned a good many times.
        wait_for("every client to reconnect 10 times", Duration::from_secs(60), async || {
            let now: Vec<usize> = progress.iter().map(|(r, _)| r.load(Ordering::SeqCst)).collect();
            if now.iter().all(|r| *r >= 10) {
                Ok(())
            } else {
                Err(format!("reconnects {now:?}"))
            }
        })
        .await;
        stop.store(true, Ordering::Relaxed);
        producer.await.expect("producer");
        let log: Vec<i64> = ids(&app.read_log("&events=incoming").await);
        let last = *log.last().expect("events");
        target.send_replace(Some(last));
        wait_for(&format!("every client to reach id {last}"), Duration::from_secs(60), async || {
            let now: Vec<i64> = progress.iter().map(|(_, id)| id.load(Ordering::SeqCst)).collect();
            if now.iter().all(|id| *id >= last) {
                Ok(())
            } else {
                Err(format!("newest ids {now:?}"))
            }
        })
        .await;
        for task in tasks {
            let (seen, reconnects) = task.await.expect("client");
            assert!(reconnects >= 3, "the client churned ({reconnects})");
            assert_eq!(seen, log, "every event exactly once, in order");
        }
        app.stop().await;
    }
}

on_both_backends! {
    async fn events_committed_without_being_published_still_reach_live_clients_in_order(backend: Backend) {
        let db = TestDb::new(backend).await;
        let app = TestApp::spawn(&db).await;
        let mut ws = app.ws(&format!("/ws?apikey={}", app.admin_key)).await;
        append_messages(&app.log, "alpha", 2, 2, 10).await;
        // Commit around the writer: what a commit whose answer was lost in an
        // outage (or a second writer) looks like to this node.
        let name = InstanceName::parse("alpha").expect("valid");
        let events = (0..3)
            .map(|i| {
                MessageData {
                    id: format!("unpublished-{i}"),
                    direction: Direction::Incoming,
                    from: "+15550000001".into(),
                    to: "+15550000002".into(),
                    kind: "text".into(),
                    content: "x".into(),
                    timestamp: 0,
                    parts: 1,
                }
                .into_event(&name)
            })
            .collect();
        app.log
            .store()
            .commit(&[Job { events, changes: Vec::new(), fence: None }], Isolation::Batch)
            .await
            .expect("direct commit");
        append_messages(&app.log, "alpha", 2, 2, 10).await;
        let got = ws.events_until(WAIT, |e| e.len() == 7).await;
        assert_eq!(ids(&got), (1..=7).collect::<Vec<_>>());
        assert_eq!(got[2]["data"]["id"], "unpublished-0");
        app.stop().await;
    }
}
