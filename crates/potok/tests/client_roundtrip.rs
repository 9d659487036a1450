//! End to end: the `potok-client` crate's admin, producer and consumer against a real broker.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use client::partitioner::partition_for_key;
use client::{
    Admin, AutoOffsetReset, Compression, Consumer, ConsumerConfig, ConsumerRecord, Offset,
    Producer, ProducerConfig, ProducerRecord,
};
use common::Broker;
use kafka_protocol::error::ResponseError;

async fn producer(bootstrap: &str, compression: Compression) -> Producer {
    let mut config = ProducerConfig::new(bootstrap).expect("config");
    config.compression = compression;
    config.linger = Duration::from_millis(20);
    Producer::connect(config).await.expect("producer connects")
}

async fn consumer(bootstrap: &str, reset: AutoOffsetReset) -> Consumer {
    let mut config = ConsumerConfig::new(bootstrap).expect("config");
    config.auto_offset_reset = reset;
    config.fetch_max_wait = Duration::from_millis(100);
    Consumer::connect(config).await.expect("consumer connects")
}

/// Polls until `n` records arrived (or 20 s passed).
async fn poll_n(c: &mut Consumer, n: usize) -> Vec<ConsumerRecord> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        out.extend(c.poll(Duration::from_millis(500)).await.expect("poll"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_to_consumer_round_trip_for_every_codec() {
    let b = Broker::start();
    let admin = Admin::connect(&b.bootstrap).await.expect("admin");
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let topic = format!("codec-{codec:?}").to_lowercase();
        admin
            .create_topic(&topic, 1, 1, vec![], false)
            .await
            .expect("create topic");
        let p = producer(&b.bootstrap, codec).await;
        let n = 500;
        let mut futures = Vec::new();
        for i in 0..n {
            let rec = ProducerRecord::new(
                &topic,
                Bytes::from(format!("value-{i}-{}", "x".repeat(i % 50))),
            )
            .with_key(Bytes::from(format!("key-{i}")))
            .with_header("i", Some(Bytes::from(i.to_string())))
            .with_header("null", None)
            .with_timestamp(1_700_000_000_000 + i as i64);
            futures.push(p.send(rec).await.expect("queued"));
        }
        p.flush().await.expect("flush");
        for (i, f) in futures.into_iter().enumerate() {
            let md = f
                .await
                .unwrap_or_else(|e| panic!("{codec:?}: record {i} failed: {e}"));
            assert_eq!(
                (md.partition, md.offset),
                (0, i as i64),
                "{codec:?}: offsets are contiguous"
            );
        }
        p.close().await.expect("close");

        let mut c = consumer(&b.bootstrap, AutoOffsetReset::Earliest).await;
        c.assign(vec![(topic.clone(), 0)]);
        let got = poll_n(&mut c, n).await;
        assert_eq!(got.len(), n, "{codec:?}: every record comes back");
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.offset, i as i64);
            assert_eq!(r.key.as_deref(), Some(format!("key-{i}").as_bytes()));
            assert_eq!(
                r.value.as_deref(),
                Some(format!("value-{i}-{}", "x".repeat(i % 50)).as_bytes())
            );
            assert_eq!(r.timestamp, 1_700_000_000_000 + i as i64);
            assert_eq!(
                r.headers,
                vec![
                    ("i".to_owned(), Some(Bytes::from(i.to_string()))),
                    ("null".to_owned(), None)
                ]
            );
        }
        assert_eq!(c.position(&topic, 0), Some(n as i64));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_land_on_the_java_clients_murmur2_partition() {
    let b = Broker::start();
    let admin = Admin::connect(&b.bootstrap).await.expect("admin");
    admin
        .create_topic("keyed", 4, 1, vec![], false)
        .await
        .expect("create topic");
    let p = producer(&b.bootstrap, Compression::None).await;
    let keys: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    let mut futures = Vec::new();
    for k in &keys {
        futures.push(
            p.send(
                ProducerRecord::new("keyed", Bytes::from_static(b"v"))
                    .with_key(Bytes::from(k.clone())),
            )
            .await
            .expect("queued"),
        );
    }
    p.flush().await.expect("flush");
    let mut per_partition = [0usize; 4];
    for (k, f) in keys.iter().zip(futures) {
        let md = f.await.expect("delivered");
        assert_eq!(md.partition, partition_for_key(k.as_bytes(), 4), "key {k}");
        per_partition[md.partition as usize] += 1;
    }
    let mut c = consumer(&b.bootstrap, AutoOffsetReset::Earliest).await;
    c.assign((0..4).map(|p| ("keyed".to_owned(), p)).collect());
    let got = poll_n(&mut c, keys.len()).await;
    assert_eq!(got.len(), keys.len());
    for r in &got {
        let key = r.key.as_deref().unwrap_or_default();
        assert_eq!(r.partition, partition_for_key(key, 4));
    }
    for (p, n) in per_partition.iter().enumerate() {
        assert_eq!(got.iter().filter(|r| r.partition == p as i32).count(), *n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_seeks_to_earliest_latest_offset_and_timestamp() {
    let b = Broker::start();
    let admin = Admin::connect(&b.bootstrap).await.expect("admin");
    admin
        .create_topic("seek", 1, 1, vec![], false)
        .await
        .expect("create topic");
    let p = producer(&b.bootstrap, Compression::None).await;
    for i in 0..10i64 {
        let rec = ProducerRecord::new("seek", Bytes::from(format!("{i}")))
            .with_timestamp(1_000_000 + i * 1000);
        p.send(rec).await.expect("queued");
    }
    p.flush().await.expect("flush");

    let mut c = consumer(&b.bootstrap, AutoOffsetReset::Latest).await;
    c.assign(vec![("seek".to_owned(), 0)]);
    c.seek("seek", 0, Offset::Timestamp(1_004_500))
        .await
        .expect("seek by time");
    assert_eq!(
        c.position("seek", 0),
        Some(5),
        "first record at or after the timestamp"
    );
    c.seek("seek", 0, Offset::Latest)
        .await
        .expect("seek latest");
    assert_eq!(c.position("seek", 0), Some(10));
    assert!(c
        .poll(Duration::from_millis(300))
        .await
        .expect("poll")
        .is_empty());
    c.seek("seek", 0, Offset::At(7)).await.expect("seek to 7");
    let got = poll_n(&mut c, 3).await;
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![7, 8, 9]
    );
    c.seek("seek", 0, Offset::Earliest)
        .await
        .expect("seek earliest");
    assert_eq!(c.position("seek", 0), Some(0));
    let err = c.seek("other", 0, Offset::Earliest).await;
    assert!(matches!(err, Err(client::Error::NotAssigned { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_positions_reset_by_auto_offset_reset() {
    let b = Broker::start();
    let admin = Admin::connect(&b.bootstrap).await.expect("admin");
    admin
        .create_topic("reset", 1, 1, vec![], false)
        .await
        .expect("create topic");
    let p = producer(&b.bootstrap, Compression::None).await;
    for i in 0..5 {
        p.send(ProducerRecord::new("reset", Bytes::from(format!("{i}"))))
            .await
            .expect("queued");
    }
    p.flush().await.expect("flush");

    let mut c = consumer(&b.bootstrap, AutoOffsetReset::Earliest).await;
    c.assign(vec![("reset".to_owned(), 0)]);
    c.seek("reset", 0, Offset::At(1000)).await.expect("seek");
    let got = poll_n(&mut c, 5).await;
    assert_eq!(got.first().map(|r| r.offset), Some(0), "reset to earliest");
    assert_eq!(got.len(), 5);

    let mut strict = consumer(&b.bootstrap, AutoOffsetReset::None).await;
    strict.assign(vec![("reset".to_owned(), 0)]);
    strict
        .seek("reset", 0, Offset::At(1000))
        .await
        .expect("seek");
    let err = strict.poll(Duration::from_secs(2)).await;
    assert_eq!(
        err.err().and_then(|e| e.kafka_code()),
        Some(ResponseError::OffsetOutOfRange)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_describes_topics_and_names_kafka_errors() {
    let b = Broker::start();
    let admin = Admin::connect(&b.bootstrap).await.expect("admin");
    admin
        .create_topic(
            "admin-t",
            2,
            1,
            vec![("cleanup.policy".into(), "compact".into())],
            false,
        )
        .await
        .expect("create topic");
    let err = admin
        .create_topic("admin-t", 2, 1, vec![], false)
        .await
        .expect_err("duplicate");
    assert_eq!(err.kafka_code(), Some(ResponseError::TopicAlreadyExists));
    assert!(
        err.to_string().starts_with("TOPIC_ALREADY_EXISTS: "),
        "{err}"
    );

    let d = admin
        .describe_topics(&["admin-t".to_owned()])
        .await
        .expect("describe");
    assert_eq!(d.len(), 1);
    assert!(!d[0].id.is_nil(), "topic id");
    assert_eq!(d[0].partitions.len(), 2);
    assert!(d[0]
        .partitions
        .iter()
        .all(|p| p.leader == Some(1) && p.replicas == vec![1] && p.isr == vec![1]));

    let configs = admin
        .describe_configs("admin-t")
        .await
        .expect("describe configs");
    let policy = configs
        .iter()
        .find(|c| c.name == "cleanup.policy")
        .expect("cleanup.policy listed");
    assert_eq!(policy.value.as_deref(), Some("compact"));
    assert!(!policy.is_default());

    admin
        .create_partitions("admin-t", 3, false)
        .await
        .expect("add a partition");
    let d = admin
        .describe_topics(&["admin-t".to_owned()])
        .await
        .expect("describe");
    assert_eq!(d[0].partitions.len(), 3);

    assert!(admin
        .list_topics(false)
        .await
        .expect("list")
        .contains(&"admin-t".to_owned()));
    admin.delete_topic("admin-t").await.expect("delete");
    let err = admin
        .describe_topics(&["admin-t".to_owned()])
        .await
        .expect_err("gone");
    assert_eq!(
        err.kafka_code(),
        Some(ResponseError::UnknownTopicOrPartition)
    );
    let err = admin
        .delete_topic("admin-t")
        .await
        .expect_err("already gone");
    assert_eq!(
        err.kafka_code(),
        Some(ResponseError::UnknownTopicOrPartition)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_records_are_written_without_offsets() {
    let b = Broker::start();
    let mut config = ProducerConfig::new(&b.bootstrap).expect("config");
    config.acks = client::Acks::None;
    let p = Producer::connect(config).await.expect("producer");
    // The first send creates the topic (auto-create), like the Java producer.
    let mut futures = Vec::new();
    for i in 0..20 {
        futures.push(
            p.send(ProducerRecord::new(
                "fire-and-forget",
                Bytes::from(format!("{i}")),
            ))
            .await
            .expect("queued"),
        );
    }
    p.flush().await.expect("flush");
    for f in futures {
        assert_eq!(f.await.expect("sent").offset, -1);
    }
    let mut c = consumer(&b.bootstrap, AutoOffsetReset::Earliest).await;
    c.assign(vec![("fire-and-forget".to_owned(), 0)]);
    let got = poll_n(&mut c, 20).await;
    let values: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    assert_eq!(values, (0..20).map(|i| i.to_string()).collect::<Vec<_>>());
}
