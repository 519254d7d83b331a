//! Lease ID generation.
//!
//! etcd picks the ID of a lease granted with `ID: 0` on the member that
//! receives the request, before proposing it: it takes the next value of the
//! member's request-ID generator (`pkg/idutil`) masked to a positive `int64`,
//! and retries while the result is 0. The generator places the low 16 bits of
//! the member ID in the top 16 bits and a counter (seeded with the Unix time in
//! milliseconds shifted left by 8) in the low 48 bits.

/// Bits of the counter part of a generated ID.
const SUFFIX_BITS: u32 = 48;
/// Mask of the counter part.
const SUFFIX_MASK: u64 = (1 << SUFFIX_BITS) - 1;
/// Bits of the member-ID prefix.
const PREFIX_BITS: u32 = 16;

/// The lease ID etcd's generator would produce for `member_id` at `counter`:
/// `(member_id & 0xffff) << 48 | (counter & (2^48 - 1))`, masked to a
/// non-negative `i64`. May be 0 (invalid); [`LeaseIdGenerator`] skips that.
pub fn generate_id(member_id: u64, counter: u64) -> i64 {
    let prefix = (member_id & ((1 << PREFIX_BITS) - 1)) << SUFFIX_BITS;
    let raw = prefix | (counter & SUFFIX_MASK);
    // Masking to 63 bits makes the cast lossless and non-negative.
    (raw & (i64::MAX as u64)) as i64
}

/// A random positive, non-zero lease ID.
pub fn random_id() -> i64 {
    loop {
        let id = rand::random::<i64>() & i64::MAX;
        if id != 0 {
            return id;
        }
    }
}

/// etcd-style sequential lease ID generator for one member.
#[derive(Debug, Clone)]
pub struct LeaseIdGenerator {
    member_id: u64,
    counter: u64,
}

impl LeaseIdGenerator {
    /// Creates a generator seeded like etcd's: counter = `unix_millis << 8`.
    pub fn new(member_id: u64, unix_millis: u64) -> Self {
        Self {
            member_id,
            counter: unix_millis << 8,
        }
    }

    /// The next positive, non-zero lease ID.
    pub fn next_id(&mut self) -> i64 {
        loop {
            self.counter = self.counter.wrapping_add(1);
            let id = generate_id(self.member_id, self.counter);
            if id != 0 {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_carry_member_prefix_and_are_positive() {
        assert_eq!(generate_id(0x1234, 5), (0x1234_i64 << 48) | 5);
        // High member bit would make the ID negative: it is masked off.
        let id = generate_id(0xffff, SUFFIX_MASK);
        assert!(id > 0);
        assert_eq!(id, i64::MAX);
        assert_eq!(generate_id(0, 0), 0);
        let mut g = LeaseIdGenerator {
            member_id: 0,
            counter: SUFFIX_MASK,
        };
        // The next counter's low 48 bits are 0 for member 0: that ID is skipped.
        assert_eq!(g.next_id(), 1);
        assert_eq!(g.next_id(), 2);
        let mut seeded = LeaseIdGenerator::new(7, 1_000);
        assert_eq!(seeded.next_id(), (7 << 48) | ((1_000 << 8) + 1));
        for _ in 0..100 {
            assert!(random_id() > 0);
        }
    }
}
