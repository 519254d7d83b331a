//! End-to-end tests: the service served by tonic, driven by the `etcd_client` crate.

use etcd_client::{Client, WatchOptions};

/// Prints raw watch responses of a real etcd (set `RUSTCD_REAL_ETCD=host:port`);
/// used to check the behaviours this module copies. Ignored by default.
#[tokio::test]
#[ignore]
async fn probe_real_etcd() {
    let Ok(ep) = std::env::var("RUSTCD_REAL_ETCD") else {
        return;
    };
    let mut c = Client::connect([ep.as_str()], None).await.unwrap();
    let cur = c
        .get("k1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    println!("current revision {cur}");
    let mut ws = c
        .watch(
            "k",
            Some(WatchOptions::new().with_prefix().with_start_revision(2)),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        println!("compacted watch: {:?}", ws.message().await.unwrap());
    }
    ws.watch(
        "k",
        Some(WatchOptions::new().with_prefix().with_watch_id(7)),
    )
    .await
    .unwrap();
    println!("id 7: {:?}", ws.message().await.unwrap());
    ws.watch(
        "k",
        Some(WatchOptions::new().with_prefix().with_watch_id(7)),
    )
    .await
    .unwrap();
    println!("dup id 7: {:?}", ws.message().await.unwrap());
    ws.watch("b", Some(WatchOptions::new().with_range("a")))
        .await
        .unwrap();
    println!("empty range: {:?}", ws.message().await.unwrap());
    ws.watch("k", Some(WatchOptions::new().with_start_revision(-3)))
        .await
        .unwrap();
    println!("negative rev: {:?}", ws.message().await.unwrap());
    ws.cancel(12345).await.unwrap();
    ws.request_progress().await.unwrap();
    println!(
        "after cancel unknown + progress: {:?}",
        ws.message().await.unwrap()
    );
    ws.cancel(7).await.unwrap();
    println!("cancel 7: {:?}", ws.message().await.unwrap());
    ws.watch("k", Some(WatchOptions::new().with_start_revision(cur + 5)))
        .await
        .unwrap();
    println!("future: {:?}", ws.message().await.unwrap());
    ws.watch("k", Some(WatchOptions::new())).await.unwrap();
    println!("auto id: {:?}", ws.message().await.unwrap());
}
