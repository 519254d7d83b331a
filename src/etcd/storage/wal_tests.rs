//! WAL tests: round trips, overwrite rule, rollover/release, torn tails and
//! corruption detection.

use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use raft::eraftpb::{Entry, HardState};

use super::record::{SEGMENT_HEADER_LEN, SEGMENT_VERSION};
use super::wal::list_segments;
use super::{StorageError, Wal, WalContents};

const BIG: u64 = 1 << 30;

fn ent(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        data: data.to_vec().into(),
        ..Default::default()
    }
}

fn ents(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range
        .map(|i| ent(i, term, format!("data-{i}-{term}").as_bytes()))
        .collect()
}

fn hs(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

fn indexes_terms(c: &WalContents) -> Vec<(u64, u64)> {
    c.entries.iter().map(|e| (e.index, e.term)).collect()
}

fn only_segment(dir: &Path) -> PathBuf {
    let segs = list_segments(dir).unwrap();
    assert_eq!(segs.len(), 1);
    segs[0].path.clone()
}

#[test]
fn fresh_open_is_empty_and_creates_dir() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("member/wal");
    let (_w, c) = Wal::open(&dir, BIG).unwrap();
    assert!(c.entries.is_empty() && c.metadata.is_none() && !c.torn_tail_truncated);
    assert_eq!(c.hard_state, HardState::default());
    assert_eq!(list_segments(&dir).unwrap().len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let seg = only_segment(&dir);
        let mode = fs::metadata(seg).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(Wal::open(&dir, 0).is_err());
}

#[test]
fn round_trip_across_reopen() {
    let d = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = Wal::open(d.path(), BIG).unwrap();
        w.set_metadata(b"member=1,cluster=2").unwrap();
        w.append(&ents(1..=5, 1), Some(&hs(1, 1, 3))).unwrap();
        w.append(&[], Some(&hs(1, 1, 5))).unwrap();
        w.sync().unwrap();
    }
    let (mut w, c) = Wal::open(d.path(), BIG).unwrap();
    assert_eq!(c.hard_state, hs(1, 1, 5));
    assert_eq!(c.metadata.as_deref(), Some(&b"member=1,cluster=2"[..]));
    assert_eq!(c.entries, ents(1..=5, 1));
    assert!(!c.torn_tail_truncated);
    assert_eq!(w.last_index(), Some(5));
    w.append(&ents(6..=7, 2), Some(&hs(2, 0, 6))).unwrap();
    w.set_metadata(b"v2").unwrap();
    w.sync().unwrap();
    drop(w);
    let (_w, c) = Wal::open(d.path(), BIG).unwrap();
    assert_eq!(c.entries.len(), 7);
    assert_eq!(c.entries[6], ents(7..=7, 2)[0]);
    assert_eq!(c.hard_state, hs(2, 0, 6));
    assert_eq!(c.metadata.as_deref(), Some(&b"v2"[..]));
}

#[test]
fn overwrite_rule() {
    let d = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = Wal::open(d.path(), BIG).unwrap();
        w.append(&ents(1..=10, 1), None).unwrap();
        w.append(&ents(6..=8, 2), None).unwrap();
        assert_eq!(w.last_index(), Some(8));
        // A gap is refused by the writer.
        let err = w.append(&ents(10..=10, 2), None).unwrap_err();
        assert!(matches!(err, StorageError::InvalidArgument(_)), "{err}");
        w.sync().unwrap();
    }
    let (mut w, c) = Wal::open(d.path(), BIG).unwrap();
    let mut want: Vec<(u64, u64)> = (1..=5).map(|i| (i, 1)).collect();
    want.extend((6..=8).map(|i| (i, 2)));
    assert_eq!(indexes_terms(&c), want);
    assert_eq!(c.entries[5].data.as_ref(), b"data-6-2");
    // Overwriting below the first entry replaces everything.
    w.append(&ents(1..=2, 3), None).unwrap();
    drop(w);
    let (_w, c) = Wal::open(d.path(), BIG).unwrap();
    assert_eq!(indexes_terms(&c), vec![(1, 3), (2, 3)]);
}

#[test]
fn snapshot_marker_lets_entries_resume_after_it() {
    let d = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = Wal::open(d.path(), BIG).unwrap();
        w.append(&ents(1..=3, 1), None).unwrap();
        assert!(w.append(&ents(101..=101, 2), None).is_err());
        w.mark_snapshot(100, 2).unwrap();
        assert!(w.append(&ents(102..=102, 2), None).is_err());
        w.append(&ents(101..=105, 2), None).unwrap();
        w.sync().unwrap();
    }
    let (_w, c) = Wal::open(d.path(), BIG).unwrap();
    assert!(c.has_snapshot_marker(100, 2));
    assert_eq!(c.entries, ents(101..=105, 2));
    assert_eq!(c.entries_after_snapshot(100, 2).unwrap(), &ents(101..=105, 2)[..]);
    assert_eq!(c.entries_after_snapshot(103, 2).unwrap(), &ents(104..=105, 2)[..]);
    assert!(c.entries_after_snapshot(103, 1).is_err()); // term mismatch
    assert!(c.entries_after_snapshot(0, 0).is_err()); // gap before 101
    assert!(c.entries_after_snapshot(200, 3).unwrap().is_empty());
}

#[test]
fn writer_and_replay_agree_on_gaps_after_markers() {
    let d = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = Wal::open(d.path(), BIG).unwrap();
        w.append(&ents(1..=3, 1), None).unwrap();
        w.mark_snapshot(100, 2).unwrap();
    }
    {
        let (mut w, c) = Wal::open(d.path(), BIG).unwrap();
        assert!(c.entries.is_empty());
        assert_eq!(w.last_index(), Some(100));
        assert!(w.append(&ents(150..=150, 2), None).is_err());
        w.mark_snapshot(200, 3).unwrap();
        assert!(w.append(&ents(150..=150, 2), None).is_ok());
        w.mark_snapshot(300, 3).unwrap();
        w.mark_snapshot(400, 3).unwrap();
        w.append(&ents(401..=402, 3), None).unwrap();
        w.sync().unwrap();
    }
    let (_w, c) = Wal::open(d.path(), BIG).unwrap();
    assert_eq!(c.entries, ents(401..=402, 3));
    assert_eq!(c.snapshots.len(), 4);
}

#[test]
fn rollover_and_release() {
    let d = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = Wal::open(d.path(), 256).unwrap();
        w.set_metadata(b"ids").unwrap();
        for i in 1..=60 {
            w.append(&ents(i..=i, 1), Some(&hs(1, 1, i))).unwrap();
        }
        w.sync().unwrap();
        let before = w.segment_paths().len();
        assert!(before > 5, "expected many segments, got {before}");
        w.mark_snapshot(40, 1).unwrap();
        let released = w.release_to(40).unwrap();
        assert!(released > 0);
        let after = w.segment_paths();
        assert_eq!(after.len(), before - released);
        for p in &after {
            assert!(p.exists());
        }
        // The segments that were released are gone from disk too.
        assert_eq!(list_segments(d.path()).unwrap().len(), after.len());
        w.append(&ents(61..=61, 1), Some(&hs(1, 1, 61))).unwrap();
        w.sync().unwrap();
    }
    let (_w, c) = Wal::open(d.path(), 256).unwrap();
    assert_eq!(c.hard_state, hs(1, 1, 61));
    assert_eq!(c.metadata.as_deref(), Some(&b"ids"[..]));
    assert!(c.has_snapshot_marker(40, 1));
    let after = c.entries_after_snapshot(40, 1).unwrap();
    assert_eq!(after, &ents(41..=61, 1)[..]);
}

#[test]
fn release_keeps_segments_with_newer_entries() {
    let d = tempfile::tempdir().unwrap();
    let (mut w, _) = Wal::open(d.path(), 256).unwrap();
    for i in 1..=30 {
        w.append(&ents(i..=i, 1), None).unwrap();
    }
    w.sync().unwrap();
    let n = w.segment_paths().len();
    assert_eq!(w.release_to(0).unwrap(), 0);
    let released = w.release_to(10).unwrap();
    assert!(released > 0 && released < n);
    drop(w);
    let (mut w, c) = Wal::open(d.path(), 256).unwrap();
    let first = c.entries[0].index;
    assert!(first <= 11, "entry 11 must survive, first is {first}");
    assert_eq!(c.entries.last().map(|e| e.index), Some(30));
    // The current segment is never released.
    w.release_to(u64::MAX).unwrap();
    assert_eq!(w.segment_paths().len(), 1);
    assert_eq!(list_segments(d.path()).unwrap().len(), 1);
}

/// Writes a WAL with some records, returns (segment bytes, offset of the
/// final record).
fn wal_with_final_record(final_is_entry: bool) -> (Vec<u8>, usize) {
    let d = tempfile::tempdir().unwrap();
    let (mut w, _) = Wal::open(d.path(), BIG).unwrap();
    w.set_metadata(b"meta").unwrap();
    w.append(&ents(1..=4, 1), Some(&hs(1, 1, 2))).unwrap();
    let before = w.current_segment_len() as usize;
    if final_is_entry {
        w.append(&[ent(5, 1, &[7u8; 40])], None).unwrap();
    } else {
        w.append(&[], Some(&hs(2, 3, 4))).unwrap();
    }
    w.sync().unwrap();
    drop(w);
    (fs::read(only_segment(d.path())).unwrap(), before)
}

#[test]
fn torn_tail_at_every_offset_of_the_final_record() {
    for final_is_entry in [true, false] {
        let (bytes, before) = wal_with_final_record(final_is_entry);
        for cut in before..bytes.len() {
            let d = tempfile::tempdir().unwrap();
            let seg = d.path().join(super::segment_file_name(0, 0));
            fs::write(&seg, &bytes[..cut]).unwrap();
            let (mut w, c) = Wal::open(d.path(), BIG).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(c.torn_tail_truncated, cut != before, "cut at {cut}");
            assert_eq!(c.entries, ents(1..=4, 1), "cut at {cut}");
            assert_eq!(c.hard_state, hs(1, 1, 2), "cut at {cut}");
            assert_eq!(c.metadata.as_deref(), Some(&b"meta"[..]));
            assert_eq!(fs::metadata(&seg).unwrap().len(), before as u64);
            // Still writable afterwards.
            w.append(&ents(5..=6, 2), Some(&hs(2, 0, 6))).unwrap();
            w.sync().unwrap();
            drop(w);
            let (_w, c) = Wal::open(d.path(), BIG).unwrap();
            assert!(!c.torn_tail_truncated);
            assert_eq!(c.entries.len(), 6);
            assert_eq!(c.hard_state, hs(2, 0, 6));
        }
    }
}

#[test]
fn zero_filled_tail_is_torn() {
    let (bytes, before) = wal_with_final_record(true);
    for (keep, zeros) in [(bytes.len(), 4096), (before + 3, 100), (before, 9), (before + 12, 1)] {
        let d = tempfile::tempdir().unwrap();
        let seg = d.path().join(super::segment_file_name(0, 0));
        let mut b = bytes[..keep].to_vec();
        b.extend(std::iter::repeat_n(0u8, zeros));
        fs::write(&seg, &b).unwrap();
        let (_w, c) = Wal::open(d.path(), BIG).unwrap();
        assert!(c.torn_tail_truncated);
        let want = if keep == bytes.len() { 5 } else { 4 };
        assert_eq!(c.entries.len(), want, "keep {keep} zeros {zeros}");
        let want_len = if want == 5 { bytes.len() } else { before };
        assert_eq!(fs::metadata(&seg).unwrap().len() as usize, want_len);
    }
}

#[test]
fn flipped_byte_before_valid_records_is_corruption() {
    let (bytes, before) = wal_with_final_record(true);
    // Inside the first entry record (after the preamble), followed by valid ones.
    let d = tempfile::tempdir().unwrap();
    let seg = d.path().join(super::segment_file_name(0, 0));
    let mut b = bytes.clone();
    let mid = SEGMENT_HEADER_LEN + (before - SEGMENT_HEADER_LEN) / 2;
    b[mid] ^= 0x40;
    fs::write(&seg, &b).unwrap();
    let err = Wal::open(d.path(), BIG).unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&super::segment_file_name(0, 0)), "{msg}");
    assert!(msg.contains("offset"), "{msg}");
    // The file was not modified.
    assert_eq!(fs::read(&seg).unwrap(), b);

    // A flipped byte in the final record is a torn write.
    let mut b = bytes.clone();
    let last = b.len() - 1;
    b[last] ^= 0x40;
    fs::write(&seg, &b).unwrap();
    let (_w, c) = Wal::open(d.path(), BIG).unwrap();
    assert!(c.torn_tail_truncated);
    assert_eq!(c.entries.len(), 4);
}

#[test]
fn damage_in_an_older_segment_is_corruption() {
    let d = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = Wal::open(d.path(), 200).unwrap();
        for i in 1..=20 {
            w.append(&ents(i..=i, 1), None).unwrap();
        }
        w.sync().unwrap();
    }
    let segs = list_segments(d.path()).unwrap();
    assert!(segs.len() >= 3);
    // Truncating an older segment (even at its tail) is corruption.
    let first = &segs[0].path;
    let orig = fs::read(first).unwrap();
    fs::write(first, &orig[..orig.len() - 3]).unwrap();
    let msg = Wal::open(d.path(), 200).unwrap_err().to_string();
    assert!(msg.contains(&segs[0].path.file_name().unwrap().to_string_lossy().to_string()));
    assert!(msg.contains("non-final"), "{msg}");
    fs::write(first, &orig).unwrap();
    Wal::open(d.path(), 200).unwrap();

    // A torn tail in the last of several segments is still just torn.
    let last = &segs[segs.len() - 1].path;
    let orig_last = fs::read(last).unwrap();
    let mut torn = orig_last.clone();
    torn.extend_from_slice(&[1, 0, 0]);
    fs::write(last, &torn).unwrap();
    let (_w, c) = Wal::open(d.path(), 200).unwrap();
    assert!(c.torn_tail_truncated);
    assert_eq!(c.entries, ents(1..=20, 1));
    assert_eq!(fs::read(last).unwrap(), orig_last);

    // A missing middle segment is corruption.
    let mid = fs::read(&segs[1].path).unwrap();
    fs::remove_file(&segs[1].path).unwrap();
    let msg = Wal::open(d.path(), 200).unwrap_err().to_string();
    assert!(msg.contains("missing WAL segment"), "{msg}");
    fs::write(&segs[1].path, mid).unwrap();
    Wal::open(d.path(), 200).unwrap();
}

#[test]
fn bad_header_magic_and_version() {
    let (bytes, _) = wal_with_final_record(true);
    let d = tempfile::tempdir().unwrap();
    let name = super::segment_file_name(0, 0);
    let seg = d.path().join(&name);

    let mut b = bytes.clone();
    b[..8].copy_from_slice(b"ETCDWAL!");
    fs::write(&seg, &b).unwrap();
    let msg = Wal::open(d.path(), BIG).unwrap_err().to_string();
    assert!(msg.contains("magic") && msg.contains(&name), "{msg}");

    let mut b = bytes.clone();
    b[8..12].copy_from_slice(&(SEGMENT_VERSION + 1).to_le_bytes());
    fs::write(&seg, &b).unwrap();
    let err = Wal::open(d.path(), BIG).unwrap_err();
    assert!(
        matches!(err, StorageError::UnsupportedVersion { found: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&name));

    let mut b = bytes.clone();
    b[14] ^= 1; // sequence number: header CRC no longer matches
    fs::write(&seg, &b).unwrap();
    assert!(Wal::open(d.path(), BIG).unwrap_err().is_corrupt());

    fs::write(&seg, &bytes[..10]).unwrap();
    assert!(Wal::open(d.path(), BIG).unwrap_err().is_corrupt());
}

#[test]
fn leftover_temp_segment_is_removed() {
    let d = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = Wal::open(d.path(), BIG).unwrap();
        w.append(&ents(1..=2, 1), None).unwrap();
        w.sync().unwrap();
    }
    let tmp = d.path().join(format!("{}.tmp", super::segment_file_name(1, 3)));
    fs::write(&tmp, b"partial").unwrap();
    let (_w, c) = Wal::open(d.path(), BIG).unwrap();
    assert!(!tmp.exists());
    assert_eq!(c.entries.len(), 2);
}

#[test]
fn sync_reports_a_duration() {
    let d = tempfile::tempdir().unwrap();
    let (mut w, _) = Wal::open(d.path(), BIG).unwrap();
    w.append(&ents(1..=100, 1), None).unwrap();
    let took = w.sync().unwrap();
    assert!(took.as_secs() < 60);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random batches, some synced, then the segment is cut at a random
    /// point: replay yields a prefix of what was written that contains
    /// every batch lying wholly before the cut.
    #[test]
    fn truncation_yields_a_prefix(
        batches in prop::collection::vec(
            (prop::collection::vec(0usize..200, 1..6), any::<bool>()), 1..12),
        cut_frac in 0.0f64..1.0,
    ) {
        let d = tempfile::tempdir().unwrap();
        let mut written = Vec::new();
        let mut ends = Vec::new(); // (segment length after batch, entries so far)
        let start;
        {
            let (mut w, _) = Wal::open(d.path(), BIG).unwrap();
            start = w.current_segment_len();
            let mut next = 1u64;
            for (sizes, sync) in &batches {
                let batch: Vec<Entry> = sizes
                    .iter()
                    .map(|&n| {
                        let e = ent(next, 1, &vec![(next % 251) as u8; n]);
                        next += 1;
                        e
                    })
                    .collect();
                w.append(&batch, Some(&hs(1, 1, next - 1))).unwrap();
                written.extend(batch);
                if *sync {
                    w.sync().unwrap();
                }
                ends.push((w.current_segment_len(), written.len()));
            }
        }
        let seg = only_segment(d.path());
        let total = fs::metadata(&seg).unwrap().len();
        let cut = start + ((total - start) as f64 * cut_frac) as u64;
        fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(cut).unwrap();

        let (mut w, c) = Wal::open(d.path(), BIG).unwrap();
        prop_assert!(c.entries.len() <= written.len());
        prop_assert_eq!(&c.entries[..], &written[..c.entries.len()]);
        let survivors = ends.iter().filter(|(end, _)| *end <= cut).map(|(_, n)| *n).max().unwrap_or(0);
        prop_assert!(c.entries.len() >= survivors, "{} < {}", c.entries.len(), survivors);
        // Truncation happens exactly when the cut is not a record boundary.
        let new_len = fs::metadata(&seg).unwrap().len();
        prop_assert!(new_len <= cut);
        prop_assert_eq!(c.torn_tail_truncated, new_len < cut);
        if cut == start || ends.iter().any(|(end, _)| *end == cut) {
            prop_assert!(!c.torn_tail_truncated);
        }
        // Writable after recovery.
        let next = c.entries.last().map_or(1, |e| e.index + 1);
        w.append(&[ent(next, 2, b"after")], None).unwrap();
        w.sync().unwrap();
        drop(w);
        let (_w, c2) = Wal::open(d.path(), BIG).unwrap();
        prop_assert_eq!(c2.entries.len(), c.entries.len() + 1);
        prop_assert!(!c2.torn_tail_truncated);
    }
}

/// One step of the model-based test.
#[derive(Debug, Clone)]
enum Op {
    /// Append `len` entries starting `back` below the next index, with
    /// a hard state.
    Append { back: u64, len: u64 },
    /// Mark a snapshot `ahead` past the last entry (0 = at the last entry).
    Mark { ahead: u64 },
    /// `release_to` the newest snapshot marker.
    Release,
    /// Set metadata.
    Meta(u8),
    /// Close and reopen the WAL.
    Reopen,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..4, 0u64..5).prop_map(|(back, len)| Op::Append { back, len }),
        1 => (0u64..30).prop_map(|ahead| Op::Mark { ahead }),
        1 => Just(Op::Release),
        1 => any::<u8>().prop_map(Op::Meta),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Raft-like sequences of appends (with overwrites), snapshot markers,
    /// releases and reopens over tiny segments: whatever the writer
    /// accepts replays, and replay matches a simple model.
    #[test]
    fn model_based_ops(ops in prop::collection::vec(op_strategy(), 1..60)) {
        let d = tempfile::tempdir().unwrap();
        let seg_bytes = 300;
        let (mut w, _) = Wal::open(d.path(), seg_bytes).unwrap();
        let mut model: Vec<Entry> = Vec::new();
        let mut snap = (0u64, 0u64);
        let mut last: Option<u64> = None; // effective last index
        let mut term = 1u64;
        let mut hard = HardState::default();
        let mut meta = None;
        for op in ops {
            match op {
                Op::Append { back, len } => {
                    let next = last.map_or(1, |l| l + 1);
                    let start = next.saturating_sub(back).max(snap.0 + 1);
                    term += 1;
                    let batch = ents(start..=start + len - 1, term);
                    hard = hs(term, 1, snap.0);
                    w.append(&batch, Some(&hard)).unwrap();
                    if len > 0 {
                        model.retain(|e| e.index < start);
                        model.extend(batch);
                        last = Some(start + len - 1);
                    }
                }
                Op::Mark { ahead } => {
                    let index = (last.unwrap_or(0) + ahead).max(snap.0);
                    let t = model.iter().find(|e| e.index == index).map_or(term, |e| e.term);
                    w.mark_snapshot(index, t).unwrap();
                    // An empty WAL stays unconstrained (as after a release).
                    if last.is_some_and(|l| l < index) {
                        model.clear();
                        last = Some(index);
                    }
                    snap = (index, t);
                }
                Op::Release => {
                    w.release_to(snap.0).unwrap();
                }
                Op::Meta(b) => {
                    w.set_metadata(&[b; 3]).unwrap();
                    meta = Some(vec![b; 3]);
                }
                Op::Reopen => {
                    drop(w);
                    let (w2, c) = Wal::open(d.path(), seg_bytes).unwrap();
                    w = w2;
                    prop_assert_eq!(w.last_index(), last);
                    prop_assert_eq!(&c.hard_state, &hard);
                    prop_assert_eq!(&c.metadata, &meta);
                }
            }
        }
        w.sync().unwrap();
        drop(w);
        let (_w, c) = Wal::open(d.path(), seg_bytes).unwrap();
        prop_assert!(!c.torn_tail_truncated);
        prop_assert_eq!(&c.hard_state, &hard);
        prop_assert_eq!(&c.metadata, &meta);
        let after = c.entries_after_snapshot(snap.0, snap.1).unwrap();
        let want: Vec<Entry> = model.into_iter().filter(|e| e.index > snap.0).collect();
        prop_assert_eq!(after, &want[..]);
        if snap != (0, 0) {
            prop_assert!(c.has_snapshot_marker(snap.0, snap.1));
        }
    }
}
