//! Raft snapshots between members, streamed in chunks on their own gRPC call so that a
//! large snapshot neither hits a message size limit nor holds up heartbeats and appends on
//! the regular Raft stream.

use std::time::Duration;

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::Message;
use tonic::Status;

use super::sender::SenderContext;
use crate::proto::rustcdpb::{peer_client::PeerClient, SnapshotChunk};

/// Size of one chunk of snapshot data on the wire.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// Splits a MsgSnapshot into the chunks [`reassemble`] puts back together.
pub fn split(cluster_id: u64, from: u64, mut msg: Message) -> Result<Vec<SnapshotChunk>, String> {
    let data: Bytes = std::mem::take(&mut msg.mut_snapshot().data);
    let header = msg.write_to_bytes().map_err(|e| e.to_string())?;
    let mut chunks = vec![SnapshotChunk {
        cluster_id,
        from,
        message: header,
        total_size: data.len() as u64,
        data: Vec::new(),
    }];
    for piece in data.chunks(CHUNK_BYTES) {
        chunks.push(SnapshotChunk {
            cluster_id,
            from,
            data: piece.to_vec(),
            ..Default::default()
        });
    }
    Ok(chunks)
}

/// Rebuilds the MsgSnapshot from its chunks; checks the sizes add up.
pub fn reassemble(first: SnapshotChunk, rest: Vec<Vec<u8>>) -> Result<Message, Status> {
    let mut msg = Message::parse_from_bytes(&first.message)
        .map_err(|e| Status::invalid_argument(format!("rustcd: undecodable snapshot message: {e}")))?;
    let total: usize = rest.iter().map(Vec::len).sum();
    if total as u64 != first.total_size {
        return Err(Status::data_loss(format!(
            "rustcd: snapshot stream ended after {total} of {} bytes",
            first.total_size
        )));
    }
    let mut data = Vec::with_capacity(total);
    for piece in rest {
        data.extend_from_slice(&piece);
    }
    msg.mut_snapshot().data = data.into();
    Ok(msg)
}

/// Sends one MsgSnapshot to `peer` and reports the outcome to Raft.
pub(super) async fn send(ctx: SenderContext, peer: u64, url: String, msg: Message) {
    let ok = match send_inner(&ctx, &url, msg).await {
        Ok(()) => {
            tracing::info!(peer = format!("{peer:x}"), "sent a snapshot");
            true
        }
        Err(e) => {
            tracing::warn!(peer = format!("{peer:x}"), error = %e, "sending a snapshot failed");
            false
        }
    };
    (ctx.report_snapshot)(peer, ok);
}

async fn send_inner(ctx: &SenderContext, url: &str, msg: Message) -> Result<(), String> {
    let chunks = split(ctx.cluster_id, ctx.me, msg)?;
    let channel = ctx
        .dialer
        .connect(url, |e| e.connect_timeout(Duration::from_secs(5)))
        .await
        .map_err(|e| rustcd_dial::error_chain(&e))?;
    PeerClient::new(channel)
        .max_encoding_message_size(CHUNK_BYTES * 2)
        .snapshot(futures::stream::iter(chunks))
        .await
        .map_err(|e| super::status_text(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::MessageType;

    #[test]
    fn snapshot_round_trips_through_chunks() {
        let mut msg = Message::default();
        msg.set_msg_type(MessageType::MsgSnapshot);
        msg.to = 2;
        msg.mut_snapshot().mut_metadata().index = 77;
        let data: Vec<u8> = (0..(CHUNK_BYTES * 2 + 5)).map(|i| (i % 251) as u8).collect();
        msg.mut_snapshot().data = data.clone().into();
        let chunks = split(9, 1, msg).unwrap();
        assert_eq!(chunks.len(), 4);
        let mut it = chunks.into_iter();
        let first = it.next().unwrap();
        let rest: Vec<Vec<u8>> = it.map(|c| c.data).collect();
        let back = reassemble(first.clone(), rest.clone()).unwrap();
        assert_eq!(back.get_snapshot().get_metadata().index, 77);
        assert_eq!(back.get_snapshot().data.as_ref(), &data[..]);
        // A stream cut short is refused, not installed.
        assert!(reassemble(first, rest[..2].to_vec()).is_err());
    }
}
