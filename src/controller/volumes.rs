//! Data-loss evidence from the API server alone.
//!
//! A member's data lives on its pod's volume: the PersistentVolumeClaim `data-<pod>` when
//! `spec.storage` is set, otherwise the pod's emptyDir, which lives exactly as long as the pod (its
//! UID). The first time the operator sees a member that has started (it has a name in MemberList) on
//! ordinal `k`, it records `(k, member ID, volume UID)` in `status.memberVolumes`. Later, if the member
//! with that same ID is still listed for `k` but the volume of `k` now has a different UID (the PVC
//! was deleted and recreated, or the emptyDir pod was replaced), the volume is fresh and the member's
//! data is gone: [`data_lost`] is true and the planner replaces the member.
//!
//! A record is kept while its member is listed on its ordinal, even after the volume changed (the
//! evidence must survive until the replacement happened), and dropped once the ordinal's member is a
//! different one (after a replacement or a scale-down and up); the new member gets a new record as soon
//! as it has started. The window in which a member could lose its volume before its first record is
//! the time between its start and the next reconcile (seconds); a loss in that window is not detected
//! by this rule, and shows up as an unhealthy member instead.

use std::collections::BTreeMap;

use super::cluster_status::{MemberStatus, VolumeRecord};

/// A listed member, as far as volume records are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListedMember {
    /// Ordinal the member maps to.
    pub ordinal: u32,
    /// Member ID.
    pub id: u64,
    /// Whether it has started (published its name).
    pub started: bool,
}

/// Whether the member `id` on `ordinal` lost its data: its record names another volume than
/// `current_volume` (the UID of the ordinal's volume now; `None` when there is no volume to look at).
pub fn data_lost(records: &[VolumeRecord], ordinal: u32, id: u64, current_volume: Option<&str>) -> bool {
    let Some(current) = current_volume else {
        return false;
    };
    records
        .iter()
        .any(|r| r.ordinal == ordinal && r.member_id == MemberStatus::format_id(id) && r.volume_uid != current)
}

/// The records to store after observing `members` on volumes `current` (ordinal -> volume UID).
pub fn updated_records(
    previous: &[VolumeRecord],
    members: &[ListedMember],
    current: &BTreeMap<u32, String>,
) -> Vec<VolumeRecord> {
    let mut records = Vec::new();
    for member in members {
        let id = MemberStatus::format_id(member.id);
        let kept = previous
            .iter()
            .find(|r| r.ordinal == member.ordinal && r.member_id == id);
        match (kept, current.get(&member.ordinal)) {
            (Some(record), _) => records.push(record.clone()),
            (None, Some(volume)) if member.started => records.push(VolumeRecord {
                ordinal: member.ordinal,
                member_id: id,
                volume_uid: volume.clone(),
            }),
            (None, _) => {}
        }
    }
    records.sort_by_key(|r| r.ordinal);
    records.dedup_by_key(|r| r.ordinal);
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ordinal: u32, id: u64, volume: &str) -> VolumeRecord {
        VolumeRecord {
            ordinal,
            member_id: MemberStatus::format_id(id),
            volume_uid: volume.into(),
        }
    }

    fn member(ordinal: u32, id: u64, started: bool) -> ListedMember {
        ListedMember { ordinal, id, started }
    }

    #[test]
    fn loss_needs_the_same_member_on_a_different_volume() {
        let records = [record(0, 0xa, "v1"), record(1, 0xb, "v2")];
        assert!(!data_lost(&records, 0, 0xa, Some("v1")));
        assert!(data_lost(&records, 0, 0xa, Some("v9")));
        assert!(!data_lost(&records, 0, 0xa, None), "no volume: no evidence");
        assert!(
            !data_lost(&records, 0, 0xc, Some("v9")),
            "a different member has its own volume"
        );
        assert!(!data_lost(&records, 2, 0xa, Some("v9")), "no record for the ordinal");
    }

    #[test]
    fn records_follow_the_members() {
        let volumes = BTreeMap::from([(0, "v1".to_string()), (1, "v2".to_string())]);
        // Only started members get a record.
        let first = updated_records(&[], &[member(0, 0xa, true), member(1, 0xb, false)], &volumes);
        assert_eq!(first, [record(0, 0xa, "v1")]);
        // Kept (with its old volume) after the volume changed: the evidence of the loss.
        let changed = BTreeMap::from([(0, "v9".to_string()), (1, "v2".to_string())]);
        let kept = updated_records(&first, &[member(0, 0xa, true), member(1, 0xb, true)], &changed);
        assert_eq!(kept, [record(0, 0xa, "v1"), record(1, 0xb, "v2")]);
        assert!(data_lost(&kept, 0, 0xa, Some("v9")));
        // Replaced: the new member is not started yet, so the ordinal has no record until it is.
        let replaced = updated_records(&kept, &[member(0, 0xc, false), member(1, 0xb, true)], &changed);
        assert_eq!(replaced, [record(1, 0xb, "v2")]);
        let started = updated_records(&replaced, &[member(0, 0xc, true), member(1, 0xb, true)], &changed);
        assert_eq!(started, [record(0, 0xc, "v9"), record(1, 0xb, "v2")]);
        // Removed members lose their records.
        assert_eq!(
            updated_records(&started, &[member(0, 0xc, true)], &changed),
            [record(0, 0xc, "v9")]
        );
    }
}
