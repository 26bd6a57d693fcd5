//! Several processes on one database: on the embedded SQLite database only
//! one process may use a data directory (invariant 3 on a single node).

use crate::{helpers::*, process::*};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_one_sqlite_data_directory_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ProcessConfig::new(dir.path(), None);
    let first = ServerProcess::start(config.clone()).await;

    let mut second = ServerProcess::spawn(config);
    let status = second.wait_exit(START).await;
    assert!(!status.success(), "the second process must fail to start");
    let log = second.log();
    assert!(
        log.contains("another switchboard process is using the data directory"),
        "the refusal says why: {log}"
    );

    // The first one is unharmed and still the only one serving.
    let ready = http_client()
        .get(first.url("/ready"))
        .send()
        .await
        .expect("ready request");
    assert_eq!(ready.status(), 200);
    first.stop().await;

    // Once it is gone, the directory is free again.
    let again = ServerProcess::start(ProcessConfig::new(dir.path(), None)).await;
    assert!(again.stop().await.success());
}
