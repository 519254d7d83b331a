//! Connection-level tests of the `:authority` rewriter: HPACK state across header blocks,
//! CONTINUATION and padding handling, fallbacks, limits, chunking and the accept loop.

use fluke_hpack::Encoder;
use proptest::prelude::*;

use super::frame::*;
use super::hpack::encode_int;
use super::tests::*;
use super::*;

#[test]
fn dynamic_table_is_tracked_across_blocks() {
    // A bad block first (switches the connection to re-encoding), then blocks that
    // reference entries the client indexed before and after.
    let auths = [
        "http://127.0.0.1:2379",
        "127.0.0.1:2379",
        "http://127.0.0.1:2379",
        "127.0.0.1:2379",
        "http://127.0.0.1:2379",
    ];
    let input = connection(&auths);
    let out = feed_all(&input);
    let seen = server_view(&out);
    let got = blocks(&seen);
    assert_eq!(got.len(), auths.len());
    for h in got {
        assert_eq!(h, &with_authority(&grpc_headers("x"), Some("127.0.0.1:2379")));
    }
}

#[test]
fn valid_first_authority_passes_the_connection_through() {
    // gRPC clients keep one authority per connection: after a valid first one the
    // rewriter stops decoding and every later byte is copied unchanged.
    let auths = ["127.0.0.1:2379", "127.0.0.1:2379", "127.0.0.1:2379"];
    let input = connection(&auths);
    let mut rw = AuthorityRewriter::new();
    let mut out = Vec::new();
    rw.feed(&input, &mut out).unwrap();
    assert_eq!(out, input);
    assert!(rw.is_passthrough());
    assert!(!rw.has_rewritten());
}

#[test]
fn size_updates_are_replayed() {
    let mut enc = Encoder::new();
    let mut input = PREFACE.to_vec();
    let mut block = Vec::new();
    encode_int(0, 5, 0x20, &mut block);
    encode_int(1024, 5, 0x20, &mut block);
    let size_updates = block.clone();
    block.extend(encode(&mut enc, &grpc_headers("http://h:1")));
    input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, &block));
    let out = feed_all(&input);
    let payload = &out[PREFACE.len() + FRAME_HEADER_LEN..];
    assert!(payload.starts_with(&size_updates));
    let seen = server_view(&out);
    assert_eq!(blocks(&seen), vec![&with_authority(&grpc_headers("x"), Some("h:1"))]);
    assert!(matches!(seen[0], Seen::Block { end_stream: true, .. }));
}

#[test]
fn continuation_frames_are_joined_and_split() {
    // A big header value forces the output into HEADERS + CONTINUATION frames.
    let mut headers = grpc_headers("http://127.0.0.1:2379");
    headers.push((b"x-big".to_vec(), vec![b'v'; 40_000]));
    let block = encode(&mut Encoder::new(), &headers);
    let mut input = PREFACE.to_vec();
    let (a, rest) = block.split_at(10);
    let (b, c) = rest.split_at(20_000);
    input.extend(frame(TYPE_HEADERS, FLAG_END_STREAM, 3, a));
    input.extend(frame(TYPE_CONTINUATION, 0, 3, b));
    input.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, c));
    input.extend(settings());
    let seen = server_view(&feed_all(&input));
    let mut expected = with_authority(&headers, Some("127.0.0.1:2379"));
    assert_eq!(blocks(&seen), vec![&expected]);
    assert!(matches!(
        seen[0],
        Seen::Block {
            stream_id: 3,
            end_stream: true,
            frames: 3,
            ..
        }
    ));
    assert!(matches!(&seen[1], Seen::Other(h, _) if h.kind == 0x4));

    // Valid authority: the original three frames pass through unchanged.
    expected = with_authority(&headers, Some("127.0.0.1:2379"));
    let block = encode(&mut Encoder::new(), &expected);
    let mut input = PREFACE.to_vec();
    input.extend(frame(TYPE_HEADERS, 0, 3, &block[..5]));
    input.extend(frame(TYPE_CONTINUATION, 0, 3, &block[5..9]));
    input.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, &block[9..]));
    assert_eq!(feed_all(&input), input);
}

#[test]
fn padding_is_stripped_and_priority_kept() {
    let block = encode(&mut Encoder::new(), &grpc_headers("http://127.0.0.1:2379"));
    let mut payload = vec![7];
    payload.extend([0x80, 0, 0, 1, 200]);
    payload.extend(&block);
    payload.extend([0; 7]);
    let mut input = PREFACE.to_vec();
    input.extend(frame(
        TYPE_HEADERS,
        FLAG_PADDED | FLAG_PRIORITY | FLAG_END_HEADERS,
        5,
        &payload,
    ));
    let out = feed_all(&input);
    let h = FrameHeader::parse(out[PREFACE.len()..PREFACE.len() + FRAME_HEADER_LEN].try_into().unwrap());
    assert_eq!(h.flags, FLAG_PRIORITY | FLAG_END_HEADERS);
    let seen = server_view(&out);
    assert_eq!(
        seen,
        vec![Seen::Block {
            stream_id: 5,
            end_stream: false,
            priority: Some([0x80, 0, 0, 1, 200]),
            headers: with_authority(&grpc_headers("x"), Some("127.0.0.1:2379")),
            frames: 1,
        }]
    );

    // Valid authority with padding: untouched.
    let block = encode(&mut Encoder::new(), &grpc_headers("127.0.0.1:2379"));
    let mut payload = vec![3];
    payload.extend(&block);
    payload.extend([0; 3]);
    let mut input = PREFACE.to_vec();
    input.extend(frame(TYPE_HEADERS, FLAG_PADDED | FLAG_END_HEADERS, 1, &payload));
    assert_eq!(feed_all(&input), input);
}

#[test]
fn undecodable_input_falls_back_to_passthrough() {
    // Index 70 does not exist: before any rewrite the bytes go through untouched.
    let mut input = PREFACE.to_vec();
    input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &[0x80 | 70]));
    input.extend(connection(&["http://x:1"])[PREFACE.len()..].iter());
    assert_eq!(feed_all(&input), input);

    // Interleaved frame inside a header block, before any rewrite.
    let mut input = PREFACE.to_vec();
    input.extend(frame(TYPE_HEADERS, 0, 1, &[0x82]));
    input.extend(settings());
    assert_eq!(feed_all(&input), input);

    // After a rewrite the connection fails instead.
    let mut input = connection(&["http://x:1"]);
    input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 3, &[0x80 | 120]));
    assert!(matches!(
        feed_chunks(&input, [input.len()]),
        Err(RewriteError::Hpack(_))
    ));
    let mut input = connection(&["http://x:1"]);
    input.extend(frame(TYPE_HEADERS, 0, 3, &[0x82]));
    input.extend(data(3, b""));
    assert!(matches!(
        feed_chunks(&input, [input.len()]),
        Err(RewriteError::InterruptedBlock { stream_id: 3, kind: 0 })
    ));
}

#[test]
fn oversized_header_block_is_refused() {
    let mut input = PREFACE.to_vec();
    input.extend(frame(TYPE_HEADERS, 0, 1, &vec![0; (1 << 24) - 1]));
    input.extend(frame(TYPE_CONTINUATION, 0, 1, &[0; 16]));
    assert!(matches!(
        feed_chunks(&input, [1 << 20; 64]),
        Err(RewriteError::BlockTooLarge(_))
    ));
}

#[test]
fn large_data_frames_are_streamed() {
    let mut input = PREFACE.to_vec();
    input.extend(frame(0x0, 0, 1, &vec![7; 100_000]));
    let mut rw = AuthorityRewriter::new();
    let mut out = Vec::new();
    rw.feed(&input[..PREFACE.len() + FRAME_HEADER_LEN + 10], &mut out)
        .unwrap();
    assert_eq!(out.len(), PREFACE.len() + FRAME_HEADER_LEN + 10);
}

fn arb_connection() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just("127.0.0.1:2379"),
            Just("http://127.0.0.1:2379"),
            Just("#initially=[https://e:1]"),
            Just("b d")
        ],
        1..6,
    )
    .prop_map(|a| connection(&a))
}

proptest! {
    #[test]
    fn chunking_does_not_change_output(input in arb_connection(), sizes in prop::collection::vec(1usize..64, 0..200)) {
        let whole = feed_chunks(&input, [input.len()]).unwrap();
        let chunked = feed_chunks(&input, sizes).unwrap();
        prop_assert_eq!(&whole, &chunked);
        server_view(&whole);
    }
}

#[tokio::test]
async fn rewrite_stream_reads_transformed_bytes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let input = connection(&["http://127.0.0.1:2379", "127.0.0.1:2379", "http://127.0.0.1:2379"]);
    let expected = feed_all(&input);
    let (mut client, server) = tokio::io::duplex(64);
    let writer = {
        let input = input.clone();
        tokio::spawn(async move {
            for chunk in input.chunks(7) {
                client.write_all(chunk).await.unwrap();
            }
            client.shutdown().await.unwrap();
            client
        })
    };
    let mut stream = RewriteStream::new(server);
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, expected);
    assert!(stream.rewriter().has_rewritten());
    // Writes go straight to the peer.
    stream.write_all(b"pong").await.unwrap();
    let mut client = writer.await.unwrap();
    let mut pong = [0; 4];
    client.read_exact(&mut pong).await.unwrap();
    assert_eq!(&pong, b"pong");
}

#[tokio::test]
async fn rewrite_stream_reports_invalid_data() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut input = connection(&["http://x:1"]);
    input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 3, &[0x80 | 120]));
    let (mut client, server) = tokio::io::duplex(1 << 16);
    client.write_all(&input).await.unwrap();
    drop(client);
    let mut got = Vec::new();
    let err = RewriteStream::new(server).read_to_end(&mut got).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

mod serve {
    use std::net::SocketAddr;
    use std::pin::Pin;

    use futures::Stream;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tonic::{Request, Response, Status};

    use crate::proto::etcdserverpb::maintenance_server::{Maintenance, MaintenanceServer};
    use crate::proto::etcdserverpb::{self as pb};

    struct FixedStatus;

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

    #[tonic::async_trait]
    impl Maintenance for FixedStatus {
        async fn alarm(&self, _: Request<pb::AlarmRequest>) -> Result<Response<pb::AlarmResponse>, Status> {
            Err(Status::unimplemented("alarm"))
        }
        async fn status(&self, _: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
            Ok(Response::new(pb::StatusResponse {
                header: Some(pb::ResponseHeader {
                    cluster_id: 1,
                    member_id: 2,
                    revision: 3,
                    raft_term: 4,
                }),
                version: "3.5.21".into(),
                db_size: 4096,
                leader: 2,
                raft_index: 5,
                raft_term: 4,
                ..Default::default()
            }))
        }
        async fn defragment(
            &self,
            _: Request<pb::DefragmentRequest>,
        ) -> Result<Response<pb::DefragmentResponse>, Status> {
            Err(Status::unimplemented("defragment"))
        }
        async fn hash(&self, _: Request<pb::HashRequest>) -> Result<Response<pb::HashResponse>, Status> {
            Err(Status::unimplemented("hash"))
        }
        async fn hash_kv(&self, _: Request<pb::HashKvRequest>) -> Result<Response<pb::HashKvResponse>, Status> {
            Err(Status::unimplemented("hash_kv"))
        }
        type SnapshotStream = SnapshotStream;
        async fn snapshot(&self, _: Request<pb::SnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
            Err(Status::unimplemented("snapshot"))
        }
        async fn move_leader(
            &self,
            _: Request<pb::MoveLeaderRequest>,
        ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
            Err(Status::unimplemented("move_leader"))
        }
        async fn downgrade(&self, _: Request<pb::DowngradeRequest>) -> Result<Response<pb::DowngradeResponse>, Status> {
            Err(Status::unimplemented("downgrade"))
        }
    }

    fn router() -> axum::Router {
        tonic::service::Routes::new(MaintenanceServer::new(FixedStatus))
            .into_axum_router()
            .route("/health", axum::routing::get(|| async { "{\"health\":\"true\"}" }))
    }

    pub(super) async fn start(rewrite: bool) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        if rewrite {
            tokio::spawn(crate::listen::serve(listener, router()));
        } else {
            tokio::spawn(async move { axum::serve(listener, router()).await });
        }
        addr
    }

    async fn etcdctl(addr: SocketAddr) -> Option<std::process::Output> {
        let endpoint = format!("http://{addr}");
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args([
                    "--endpoints",
                    &endpoint,
                    "--command-timeout=5s",
                    "endpoint",
                    "status",
                    "-w",
                    "json",
                ])
                .output()
        })
        .await
        .unwrap();
        match out {
            Ok(out) => Some(out),
            Err(e) => {
                println!("skipping etcdctl check: cannot run etcdctl: {e}");
                None
            }
        }
    }

    #[tokio::test]
    async fn etcdctl_endpoint_status_succeeds() {
        let addr = start(true).await;
        let Some(out) = etcdctl(addr).await else { return };
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "etcdctl failed: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(json[0]["Status"]["version"], "3.5.21");
        assert_eq!(json[0]["Status"]["dbSize"], 4096);
    }

    /// Control: without the wrapper h2 rejects etcdctl 3.4's `:authority` (if this starts
    /// passing, h2 became lenient and the wrapper may be unnecessary).
    #[tokio::test]
    async fn etcdctl_fails_without_rewrite() {
        let addr = start(false).await;
        let Some(out) = etcdctl(addr).await else { return };
        assert!(
            !out.status.success(),
            "etcdctl unexpectedly succeeded without the rewriter"
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("PROTOCOL_ERROR"));
    }

    #[tokio::test]
    async fn http1_health() {
        let addr = start(true).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
        assert!(resp.ends_with("{\"health\":\"true\"}"), "{resp}");
    }

    #[tokio::test]
    async fn etcd_client_status() {
        let addr = start(true).await;
        let mut client = etcd_client::Client::connect([format!("http://{addr}")], None)
            .await
            .unwrap();
        for _ in 0..3 {
            let status = client.status().await.unwrap();
            assert_eq!(status.version(), "3.5.21");
            assert_eq!(status.db_size(), 4096);
        }
    }
}

/// Raw HTTP/2 requests with arbitrary `:authority` values (Rust clients cannot send invalid ones).
mod raw_h2 {
    use std::net::SocketAddr;

    use fluke_hpack::{Decoder, Encoder};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::super::frame::*;
    use super::{frame, grpc_headers};

    #[derive(Debug, PartialEq)]
    enum Outcome {
        /// Response headers and trailers of stream 1, decoded.
        Response(Vec<(String, String)>),
        /// RST_STREAM error code.
        Reset(u32),
    }

    /// Sends `authorities.len()` unary Maintenance/Status calls on one connection (streams
    /// 1, 3, ...; the client encoder indexes headers, so later blocks use its dynamic table)
    /// and returns each stream's outcome.
    async fn calls(addr: SocketAddr, authorities: &[&str]) -> Vec<Outcome> {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut req = PREFACE.to_vec();
        req.extend(frame(0x4, 0, 0, &[]));
        let mut enc = Encoder::new();
        for (i, a) in authorities.iter().enumerate() {
            let id = 1 + 2 * i as u32;
            let block = enc.encode(grpc_headers(a).iter().map(|(n, v)| (&n[..], &v[..])));
            req.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, id, &block));
            req.extend(frame(0x0, FLAG_END_STREAM, id, &[0, 0, 0, 0, 0]));
        }
        s.write_all(&req).await.unwrap();

        let mut outcomes: Vec<Option<Outcome>> = authorities.iter().map(|_| None).collect();
        let mut dec = Decoder::new();
        let mut buf = Vec::new();
        let mut block: Option<(u32, Vec<u8>)> = None;
        while outcomes
            .iter()
            .any(|o| !matches!(o, Some(Outcome::Reset(_)) | Some(Outcome::Response(_))))
            || outcomes
                .iter()
                .any(|o| matches!(o, Some(Outcome::Response(h)) if !h.iter().any(|(n, _)| n == "grpc-status")))
        {
            while buf.len() < FRAME_HEADER_LEN
                || buf.len() < FRAME_HEADER_LEN + FrameHeader::parse(buf[..FRAME_HEADER_LEN].try_into().unwrap()).length
            {
                let mut chunk = [0; 4096];
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "server closed the connection; outcomes so far: {outcomes:?}");
                buf.extend_from_slice(&chunk[..n]);
            }
            let h = FrameHeader::parse(buf[..FRAME_HEADER_LEN].try_into().unwrap());
            let payload = buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + h.length].to_vec();
            buf.drain(..FRAME_HEADER_LEN + h.length);
            let slot = |id: u32| ((id - 1) / 2) as usize;
            match h.kind {
                TYPE_HEADERS => {
                    block = Some((
                        h.stream_id,
                        parse_headers_payload(h.flags, &payload).unwrap().fragment.to_vec(),
                    ))
                }
                TYPE_CONTINUATION => block.as_mut().unwrap().1.extend_from_slice(&payload),
                0x3 => {
                    outcomes[slot(h.stream_id)] =
                        Some(Outcome::Reset(u32::from_be_bytes(payload[..4].try_into().unwrap())))
                }
                0x7 => panic!("GOAWAY: {payload:?}"),
                _ => {}
            }
            if matches!(h.kind, TYPE_HEADERS | TYPE_CONTINUATION) && h.has(FLAG_END_HEADERS) {
                let (id, fragment) = block.take().unwrap();
                let headers = dec
                    .decode(&fragment)
                    .unwrap()
                    .into_iter()
                    .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()));
                match &mut outcomes[slot(id)] {
                    Some(Outcome::Response(h)) => h.extend(headers),
                    o => *o = Some(Outcome::Response(headers.collect())),
                }
            }
        }
        outcomes.into_iter().map(Option::unwrap).collect()
    }

    fn assert_ok(outcome: &Outcome) {
        match outcome {
            Outcome::Response(h) => {
                assert!(h.contains(&(":status".into(), "200".into())), "{h:?}");
                assert!(h.contains(&("grpc-status".into(), "0".into())), "{h:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    const ETCD_35: &str = "#initially=[https://example.com:2379]";

    #[tokio::test]
    async fn etcd_35_resolver_authority_is_served() {
        let addr = super::serve::start(true).await;
        let outcomes = calls(
            addr,
            &[ETCD_35, "127.0.0.1:2379", ETCD_35, "bad authority", "127.0.0.1:2379"],
        )
        .await;
        assert_eq!(outcomes.len(), 5);
        outcomes.iter().for_each(assert_ok);
    }

    /// Control: without the rewriter h2 resets such streams with PROTOCOL_ERROR (0x1).
    #[tokio::test]
    async fn etcd_35_resolver_authority_is_reset_without_rewrite() {
        let addr = super::serve::start(false).await;
        let outcomes = calls(addr, &["127.0.0.1:2379", ETCD_35]).await;
        assert_ok(&outcomes[0]);
        assert_eq!(outcomes[1], Outcome::Reset(1));
    }
}
