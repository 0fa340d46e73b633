//! Splitting the dataplanes of one control plane between several daemons.
//!
//! A daemon started with `--shard INDEX/COUNT` reads only the dataplanes whose
//! (mesh, name) hashes into its shard. Every daemon of a set must agree on the
//! hash, whatever build or platform it runs, so the function is written out here
//! rather than taken from the standard library, whose hasher is seeded per
//! process and may change between Rust releases:
//!
//! 1. FNV-1a (64-bit: offset basis `0xcbf29ce484222325`, prime `0x100000001b3`)
//!    over the mesh name's UTF-8 bytes, one `0xff` byte, and the dataplane name's
//!    bytes. `0xff` never occurs in UTF-8, so ("ab", "c") and ("a", "bc") differ.
//! 2. The 64-bit finaliser of MurmurHash3 (`fmix64`), because FNV-1a leaves its
//!    low bits poorly mixed; a shard count of 2 would otherwise split by the
//!    parity of the names' bytes.
//! 3. The shard is `hash × COUNT / 2⁶⁴` (the high half of a 128-bit product),
//!    which spreads evenly for any COUNT.
//!
//! The test below pins the values, so a change to any step fails it.

use std::fmt;
use std::str::FromStr;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// Separates mesh and name in the hashed bytes; never part of a UTF-8 string.
const SEPARATOR: u8 = 0xff;

/// One shard out of a set: this daemon handles shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// Why a `--shard` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("{0:?} is not INDEX/COUNT (for example 0/4)")]
    Shape(String),
    #[error("the shard count must be at least 1")]
    NoShards,
    #[error("the index {index} is not below the count {count}; shards are numbered from 0")]
    IndexTooHigh { index: u32, count: u32 },
}

impl Shard {
    /// The whole set: one daemon reads every dataplane.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`.
    ///
    /// # Errors
    ///
    /// When `count` is 0 or `index` is not below it.
    pub fn new(index: u32, count: u32) -> Result<Self, ShardError> {
        if count == 0 {
            return Err(ShardError::NoShards);
        }
        if index >= count {
            return Err(ShardError::IndexTooHigh { index, count });
        }
        Ok(Self { index, count })
    }

    pub fn index(self) -> u32 {
        self.index
    }

    pub fn count(self) -> u32 {
        self.count
    }

    /// Whether this shard handles the dataplane `name` of `mesh`.
    pub fn owns(self, mesh: &str, name: &str) -> bool {
        self.count == 1 || shard_of(mesh, name, self.count) == self.index
    }
}

impl Default for Shard {
    fn default() -> Self {
        Self::ALL
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Self, ShardError> {
        let shape = || ShardError::Shape(text.to_string());
        let (index, count) = text.trim().split_once('/').ok_or_else(shape)?;
        let number = |part: &str| part.trim().parse::<u32>().map_err(|_| shape());
        Self::new(number(index)?, number(count)?)
    }
}

/// The shard, out of `count`, that the dataplane `name` of `mesh` belongs to.
pub fn shard_of(mesh: &str, name: &str, count: u32) -> u32 {
    let hash = fmix64(dataplane_hash(mesh, name));
    ((u128::from(hash) * u128::from(count)) >> 64) as u32
}

/// FNV-1a of mesh, separator and name.
fn dataplane_hash(mesh: &str, name: &str) -> u64 {
    let bytes = mesh
        .bytes()
        .chain(std::iter::once(SEPARATOR))
        .chain(name.bytes());
    bytes.fold(FNV_OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// MurmurHash3's 64-bit finaliser: every input bit moves about half the output bits.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_index_slash_count() {
        assert_eq!("0/1".parse(), Ok(Shard::ALL));
        assert_eq!(
            "2/3".parse::<Shard>().map(|s| (s.index(), s.count())),
            Ok((2, 3))
        );
        assert_eq!(
            " 1 / 4 ".parse::<Shard>().map(|s| s.to_string()),
            Ok("1/4".into())
        );
    }

    #[test]
    fn refuses_what_names_no_shard() {
        for text in ["", "1", "1/", "/2", "a/2", "-1/2", "1/2/3", "1.0/2"] {
            assert!(
                matches!(text.parse::<Shard>(), Err(ShardError::Shape(_))),
                "{text:?}"
            );
        }
        assert_eq!("0/0".parse::<Shard>(), Err(ShardError::NoShards));
        assert_eq!(
            "4/4".parse::<Shard>(),
            Err(ShardError::IndexTooHigh { index: 4, count: 4 })
        );
    }

    /// Daemons of different builds must split alike: these values may never change.
    #[test]
    fn the_hash_is_pinned() {
        assert_eq!(dataplane_hash("", ""), 0xaf64_724c_8602_eb6e);
        assert_eq!(
            fmix64(dataplane_hash("default", "redis-0.shop")),
            0xc3a6_f376_a475_984a
        );
        let shards: Vec<u32> = (0..8)
            .map(|i| shard_of("default", &format!("fleet-{i:05}.shop"), 4))
            .collect();
        assert_eq!(shards, [2, 0, 0, 0, 2, 0, 3, 3]);
    }

    #[test]
    fn mesh_and_name_do_not_run_together() {
        assert_ne!(dataplane_hash("ab", "c"), dataplane_hash("a", "bc"));
    }
}
