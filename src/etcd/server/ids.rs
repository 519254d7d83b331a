//! Unique IDs for proposals and server-chosen lease IDs, like etcd's idutil.Generator:
//! the low 2 bytes of the member ID as prefix, then a counter seeded from the clock so
//! IDs do not repeat across restarts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const SUFFIX_BITS: u32 = 48;

pub struct IdGenerator {
    prefix: u64,
    suffix: AtomicU64,
}

impl IdGenerator {
    pub fn new(member_id: u64) -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        IdGenerator {
            prefix: (member_id & 0xffff) << SUFFIX_BITS,
            // etcd shifts the millisecond clock left by 8 bits within the suffix.
            suffix: AtomicU64::new((millis << 8) & ((1 << SUFFIX_BITS) - 1)),
        }
    }

    /// The next ID; never zero.
    pub fn next(&self) -> u64 {
        let s = self.suffix.fetch_add(1, Ordering::Relaxed) + 1;
        let id = self.prefix | (s & ((1 << SUFFIX_BITS) - 1));
        if id == 0 {
            1
        } else {
            id
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_carry_the_member_prefix() {
        let g = IdGenerator::new(0x8e9e_05c5_2164_694d);
        let a = g.next();
        let b = g.next();
        assert_ne!(a, b);
        assert_eq!(a >> SUFFIX_BITS, 0x694d);
        assert_ne!(a, 0);
    }
}
