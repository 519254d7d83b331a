use fluke_hpack::{Decoder, Encoder};

use super::frame::*;
use super::hpack::{decode_int, encode_int, scan_block};
use super::*;

pub(super) type Headers = Vec<(Vec<u8>, Vec<u8>)>;

pub(super) fn grpc_headers(authority: &str) -> Headers {
    [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/etcdserverpb.Maintenance/Status"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("user-agent", "grpc-go/1.26.0"),
        ("te", "trailers"),
    ]
    .iter()
    .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect()
}

pub(super) fn with_authority(h: &Headers, authority: Option<&str>) -> Headers {
    h.iter()
        .filter_map(|(n, v)| {
            if n == b":authority" {
                authority.map(|a| (n.clone(), a.as_bytes().to_vec()))
            } else {
                Some((n.clone(), v.clone()))
            }
        })
        .collect()
}

pub(super) fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    FrameHeader {
        length: payload.len(),
        kind,
        flags,
        stream_id,
    }
    .write(&mut out);
    out.extend_from_slice(payload);
    out
}

pub(super) fn encode(enc: &mut Encoder<'static>, headers: &Headers) -> Vec<u8> {
    enc.encode(headers.iter().map(|(n, v)| (&n[..], &v[..])))
}

pub(super) fn settings() -> Vec<u8> {
    frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100])
}

pub(super) fn data(stream_id: u32, body: &[u8]) -> Vec<u8> {
    frame(0x0, FLAG_END_STREAM, stream_id, body)
}

pub(super) fn feed_chunks(input: &[u8], sizes: impl IntoIterator<Item = usize>) -> Result<Vec<u8>, RewriteError> {
    let mut rw = AuthorityRewriter::new();
    let mut out = Vec::new();
    let mut rest = input;
    let mut sizes = sizes.into_iter();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        rw.feed(&rest[..n], &mut out)?;
        rest = &rest[n..];
    }
    Ok(out)
}

pub(super) fn feed_all(input: &[u8]) -> Vec<u8> {
    let whole = feed_chunks(input, [input.len()]).unwrap();
    let bytewise = feed_chunks(input, std::iter::repeat(1)).unwrap();
    assert_eq!(whole, bytewise, "1-byte feeding must give the same output");
    whole
}

/// What a server sees: header blocks (decoded with one fresh decoder, in order) and other frames.
#[derive(Debug, PartialEq)]
pub(super) enum Seen {
    Block {
        stream_id: u32,
        end_stream: bool,
        priority: Option<[u8; PRIORITY_LEN]>,
        headers: Headers,
        frames: usize,
    },
    Other(FrameHeader, Vec<u8>),
}

/// First frame header, priority, fragment so far, frame count.
pub(super) type OpenBlock = (FrameHeader, Option<[u8; PRIORITY_LEN]>, Vec<u8>, usize);

pub(super) fn server_view(out: &[u8]) -> Vec<Seen> {
    assert!(out.starts_with(PREFACE));
    let mut rest = &out[PREFACE.len()..];
    let mut dec = Decoder::new();
    let mut seen = Vec::new();
    let mut block: Option<OpenBlock> = None;
    while !rest.is_empty() {
        let h = FrameHeader::parse(rest[..FRAME_HEADER_LEN].try_into().unwrap());
        assert!(h.length <= DEFAULT_MAX_FRAME_SIZE);
        let payload = &rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + h.length];
        rest = &rest[FRAME_HEADER_LEN + h.length..];
        match (h.kind, block.as_mut()) {
            (TYPE_HEADERS, None) => {
                let p = parse_headers_payload(h.flags, payload).unwrap();
                block = Some((h, p.priority, p.fragment.to_vec(), 1));
            }
            (TYPE_CONTINUATION, Some(b)) => {
                assert_eq!(h.stream_id, b.0.stream_id);
                b.2.extend_from_slice(payload);
                b.3 += 1;
            }
            (_, Some(_)) => panic!("interleaved frame"),
            _ => seen.push(Seen::Other(h, payload.to_vec())),
        }
        if matches!(h.kind, TYPE_HEADERS | TYPE_CONTINUATION) && h.has(FLAG_END_HEADERS) {
            let (first, priority, fragment, frames) = block.take().unwrap();
            seen.push(Seen::Block {
                stream_id: first.stream_id,
                end_stream: first.has(FLAG_END_STREAM),
                priority,
                headers: dec.decode(&fragment).unwrap(),
                frames,
            });
        }
    }
    assert!(block.is_none());
    seen
}

pub(super) fn blocks(seen: &[Seen]) -> Vec<&Headers> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Block { headers, .. } => Some(headers),
            Seen::Other(..) => None,
        })
        .collect()
}

/// A connection: preface, SETTINGS, then one request per authority (dynamic-table
/// encoded by one encoder, so later blocks reference earlier entries), each with DATA.
pub(super) fn connection(authorities: &[&str]) -> Vec<u8> {
    let mut enc = Encoder::new();
    let mut input = PREFACE.to_vec();
    input.extend(settings());
    for (i, a) in authorities.iter().enumerate() {
        let id = 1 + 2 * i as u32;
        input.extend(frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            id,
            &encode(&mut enc, &grpc_headers(a)),
        ));
        input.extend(data(id, b"\0\0\0\0\0"));
    }
    input
}

#[test]
fn http1_passes_through() {
    let req = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:2379\r\n\r\n".repeat(3);
    assert_eq!(feed_all(&req), req);
    // Diverges late in the preface.
    let almost = b"PRI * HTTP/2.0\r\n\r\nXX whatever".to_vec();
    assert_eq!(feed_all(&almost), almost);
    let mut rw = AuthorityRewriter::new();
    let mut out = Vec::new();
    rw.feed(b"GET", &mut out).unwrap();
    assert!(rw.is_passthrough());
    assert_eq!(out, b"GET");
}

#[test]
fn preface_is_emitted_as_it_arrives() {
    let mut rw = AuthorityRewriter::new();
    let mut out = Vec::new();
    rw.feed(&PREFACE[..5], &mut out).unwrap();
    assert_eq!(out, &PREFACE[..5]);
    rw.feed(&PREFACE[5..], &mut out).unwrap();
    assert_eq!(out, PREFACE);
    assert!(!rw.is_passthrough());
}

#[test]
fn frame_header_roundtrip() {
    let h = FrameHeader {
        length: 0x01_02_03,
        kind: 9,
        flags: 0x24,
        stream_id: 0x7fff_fffe,
    };
    let mut b = Vec::new();
    h.write(&mut b);
    assert_eq!(b, [1, 2, 3, 9, 0x24, 0x7f, 0xff, 0xff, 0xfe]);
    assert_eq!(FrameHeader::parse(b[..].try_into().unwrap()), h);
    // The reserved bit is ignored.
    b[5] |= 0x80;
    assert_eq!(FrameHeader::parse(b[..].try_into().unwrap()).stream_id, 0x7fff_fffe);
}

#[test]
fn headers_payload_parsing() {
    let p = parse_headers_payload(FLAG_PADDED | FLAG_PRIORITY, &[2, 0, 0, 0, 3, 16, 0xaa, 0xbb, 0, 0]).unwrap();
    assert_eq!(p.priority, Some([0, 0, 0, 3, 16]));
    assert_eq!(p.fragment, &[0xaa, 0xbb]);
    assert!(parse_headers_payload(FLAG_PADDED, &[5, 1, 2]).is_err());
    assert!(parse_headers_payload(FLAG_PADDED, &[]).is_err());
    assert!(parse_headers_payload(FLAG_PRIORITY, &[0, 0, 0]).is_err());
}

#[test]
fn hpack_integers() {
    for (v, prefix) in [(0, 5), (30, 5), (31, 5), (1337, 5), (127, 7), (128, 7), (1 << 20, 4)] {
        let mut b = Vec::new();
        encode_int(v, prefix, 0, &mut b);
        assert_eq!(decode_int(&b, prefix).unwrap(), (v, b.len()));
    }
    assert_eq!(decode_int(&[31, 154, 10], 5).unwrap(), (1337, 3));
    assert!(decode_int(&[31, 154], 5).is_err());
    assert!(decode_int(&[31, 0xff, 0xff, 0xff, 0xff, 0xff, 1], 5).is_err());
}

#[test]
fn hpack_scan() {
    // Size updates 0 then 4096, then an indexed field, then a size update (invalid, but scanned).
    let mut b = vec![0x20];
    encode_int(4096, 5, 0x20, &mut b);
    let leading = b.len();
    b.push(0x82);
    b.push(0x20);
    assert_eq!(scan_block(&b).unwrap(), leading);
    // Literal with a string running past the end.
    assert!(scan_block(&[0x00, 0x03, b'a']).is_err());
    assert!(scan_block(&[0x20 | 31]).is_err());
}

#[test]
fn authority_fixes() {
    assert_eq!(fix_authority(b"127.0.0.1:2379"), AuthorityFix::Keep);
    assert_eq!(fix_authority(b"[::1]:2379"), AuthorityFix::Keep);
    assert_eq!(fix_authority(b"localhost"), AuthorityFix::Keep);
    assert_eq!(
        fix_authority(b"http://127.0.0.1:2379"),
        AuthorityFix::Replace(b"127.0.0.1:2379".to_vec())
    );
    assert_eq!(
        fix_authority(b"https://etcd.example:2379/"),
        AuthorityFix::Replace(b"etcd.example:2379".to_vec())
    );
    assert_eq!(
        fix_authority(b"#initially=[https://example.com:2379]"),
        AuthorityFix::Replace(b"example.com:2379".to_vec())
    );
    assert_eq!(
        fix_authority(b"#initially=[https://a:2379;https://b.example.com:2379]"),
        AuthorityFix::Replace(b"b.example.com:2379".to_vec())
    );
    assert_eq!(
        fix_authority(b"#initially=[https://[::1]:2379]"),
        AuthorityFix::Replace(b"[::1]:2379".to_vec())
    );
    assert_eq!(fix_authority(b"has space"), AuthorityFix::Drop);
    assert_eq!(fix_authority(b""), AuthorityFix::Drop);
    assert_eq!(fix_authority(b"unix:///tmp/sock"), AuthorityFix::Drop);
}

#[test]
fn valid_authority_is_byte_identical() {
    let input = connection(&["127.0.0.1:2379", "127.0.0.1:2379", "localhost:2379"]);
    assert_eq!(feed_all(&input), input);
}

#[test]
fn etcdctl_34_authority_is_rewritten() {
    let input = connection(&["http://127.0.0.1:2379"]);
    let out = feed_all(&input);
    let seen = server_view(&out);
    let expected = with_authority(&grpc_headers("x"), Some("127.0.0.1:2379"));
    assert_eq!(blocks(&seen), vec![&expected]);
    assert!(matches!(&seen[0], Seen::Other(h, _) if h.kind == 0x4));
    assert!(matches!(&seen[2], Seen::Other(h, p) if h.kind == 0 && p == b"\0\0\0\0\0"));
    match &seen[1] {
        Seen::Block {
            stream_id,
            end_stream,
            priority,
            frames,
            ..
        } => {
            assert_eq!((*stream_id, *end_stream, *priority, *frames), (1, false, None, 1));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn etcd_35_resolver_authority_is_rewritten() {
    let input = connection(&["#initially=[https://example.com:2379]"]);
    let seen = server_view(&feed_all(&input));
    assert_eq!(
        blocks(&seen),
        vec![&with_authority(&grpc_headers("x"), Some("example.com:2379"))]
    );
}

#[test]
fn unfixable_authority_is_dropped() {
    let input = connection(&["not an authority"]);
    let seen = server_view(&feed_all(&input));
    assert_eq!(blocks(&seen), vec![&with_authority(&grpc_headers("x"), None)]);
}
