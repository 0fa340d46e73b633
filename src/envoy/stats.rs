//! The Envoy `/stats` text parser.
//!
//! Envoy's admin `/stats` answers with one `name: value` line per stat: text readouts
//! (`name: "text"`) first, then counters and gauges (`name: 42`), then histograms
//! (`name: P0(…) … P100(…)` or `name: No recorded values`). Names never contain `": "`
//! but may contain `:` and `/`, so a name ends at the first `": "` of its line.
//!
//! strictly needs about a dozen counters per inbound out of dumps that reach several
//! megabytes on big sidecars, and it reads one dump per dataplane per poll. So [`read`]
//! extracts only the names of a [`StatQuery`] and does as little as it can on every
//! other line:
//!
//! - it reads each line from its end, since a line that can give an integer ends in
//!   digits; histograms, text readouts and most junk are dropped after one byte;
//! - a name goes to the hash table only if its length is one of the wanted lengths;
//! - it stops as soon as every wanted name has a value.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// The stat names a caller wants, resolved once and reused across polls.
///
/// Each distinct name gets a slot, numbered from 0 in the order first given; a read
/// returns one value per slot.
#[derive(Debug, Clone, Default)]
pub struct StatQuery {
    /// Slot of every distinct name, as callers asked for it.
    index: HashMap<Box<str>, usize>,
    /// Slot of every name that can occur in a dump, keyed by bytes for the scan.
    wanted: HashMap<Box<[u8]>, usize, NameHash>,
    /// Lengths of the names in `wanted`, checked before any hashing.
    lengths: LengthSet,
}

impl StatQuery {
    /// Builds a query; duplicate names share one slot.
    ///
    /// A name containing `": "` or a newline can never be read from a dump, since a
    /// line splits at its first `": "`; such a name keeps its slot and reads as absent.
    pub fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut query = Self::default();
        for name in names {
            query.add(name.as_ref());
        }
        query
    }

    fn add(&mut self, name: &str) {
        if self.index.contains_key(name) {
            return;
        }
        let slot = self.index.len();
        self.index.insert(name.into(), slot);

        if !name.contains(": ") && !name.contains('\n') {
            self.wanted.insert(name.as_bytes().into(), slot);
            self.lengths.insert(name.len());
        }
    }

    /// The slot of `name` in the values a read returns.
    pub fn slot(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The slot and value digits of `line`, if it gives an integer to a wanted name.
    fn wanted_line<'a>(&self, line: &'a [u8]) -> Option<(usize, &'a [u8])> {
        let (name, digits) = split_integer_line(line)?;
        if !self.lengths.contains(name.len()) {
            return None;
        }
        let slot = self.wanted.get(name)?;
        Some((*slot, digits))
    }

    /// How many distinct names the query holds.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the query holds no name at all.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// Values found for a query, one slot per wanted name; `None` where the stat was absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatValues {
    values: Vec<Option<u64>>,
}

impl StatValues {
    /// The value in `slot`, or `None` when the dump held no integer for that name or the
    /// slot is not one of the query's.
    pub fn get(&self, slot: usize) -> Option<u64> {
        self.values.get(slot).copied().flatten()
    }
}

/// Reads the wanted integer stats out of a `/stats` body.
///
/// A wanted name reads as `None` unless a line gives it an integer that fits a `u64`;
/// spaces and tabs around the number, and a CR ending the line, are allowed. Lines
/// that are histograms, text readouts, negative or fractional numbers, or junk are
/// skipped, and the body need not be UTF-8. Names match whole: the per-worker
/// `listener.X.worker_0.downstream_cx_total` is not `listener.X.downstream_cx_total`.
///
/// When a name has an integer on more than one line, the first such line wins. Envoy
/// prints each stat once, so this only matters for damaged input; taking the first
/// is what lets the scan stop once every name has a value.
///
/// A last line without its newline is ignored: Envoy ends every line with one, so such
/// a line was cut short, possibly in the middle of its number, and a wrong counter is
/// worse than a missing one.
#[must_use]
pub fn read(body: &[u8], query: &StatQuery) -> StatValues {
    let mut values = vec![None; query.len()];
    let mut missing = query.wanted.len();
    if missing == 0 {
        return StatValues { values };
    }

    for line in complete_lines(body) {
        let Some((slot, digits)) = query.wanted_line(line) else {
            continue;
        };
        let Some(value) = values.get_mut(slot).filter(|v| v.is_none()) else {
            continue;
        };

        // An overflowing number leaves the slot open for a later, valid line.
        *value = parse_u64(digits);
        if value.is_some() {
            missing -= 1;
            if missing == 0 {
                break;
            }
        }
    }

    StatValues { values }
}

/// The lines of `body` that end in a newline, without it.
///
/// Finding newlines is most of the work of a read, and `memchr` does it many bytes at
/// a time where a plain `split` tests one byte after another.
fn complete_lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', body).map(move |end| {
        let line = body.get(start..end).unwrap_or_default();
        start = end + 1;
        line
    })
}

/// Splits a line into its name and the digits of its value, if the value is an
/// unsigned integer; `None` for every other line.
///
/// The line is read from its end. When the value is an integer, the `": "` just before
/// it is the first of the line unless the name part holds another `": "`, and names
/// holding one are never wanted, so this gives the same name as splitting at the
/// first `": "`.
fn split_integer_line(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let (line, _) = split_tail(line, |b| matches!(b, b' ' | b'\t' | b'\r'));
    let (rest, digits) = split_tail(line, u8::is_ascii_digit);
    if digits.is_empty() {
        return None;
    }

    let (head, gap) = split_tail(rest, |b| matches!(b, b' ' | b'\t'));
    if gap.first() != Some(&b' ') {
        return None;
    }
    let name = head.strip_suffix(b":")?;
    Some((name, digits))
}

/// Splits `bytes` before the longest tail whose bytes all satisfy `tail`.
fn split_tail(bytes: &[u8], tail: impl Fn(&u8) -> bool) -> (&[u8], &[u8]) {
    let start = bytes.iter().rposition(|b| !tail(b)).map_or(0, |i| i + 1);
    bytes.split_at_checked(start).unwrap_or((bytes, &[]))
}

/// Decimal digits to a `u64`; `None` on overflow.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// A set of name lengths: a line whose name has none of them costs no hashing.
#[derive(Debug, Clone, Default)]
struct LengthSet {
    short: [u64; 4],
    /// Whether any name is 256 bytes or longer; such names are not told apart.
    long: bool,
}

impl LengthSet {
    fn insert(&mut self, len: usize) {
        match self.short.get_mut(len / 64) {
            Some(word) => *word |= 1 << (len % 64),
            None => self.long = true,
        }
    }

    fn contains(&self, len: usize) -> bool {
        match self.short.get(len / 64) {
            Some(word) => word & (1 << (len % 64)) != 0,
            None => self.long,
        }
    }
}

/// A fast, unkeyed hash for the wanted-name table.
///
/// Keyed hashing guards a table against keys chosen to collide, but this table holds
/// only the names the caller asked for; a body only looks names up, so the worst it
/// can do is collide with those few names.
#[derive(Debug, Clone, Copy, Default)]
struct NameHash;

impl BuildHasher for NameHash {
    type Hasher = NameHasher;

    fn build_hasher(&self) -> NameHasher {
        NameHasher(0)
    }
}

/// Mixes eight bytes at a time, then scrambles the result once so that the low bits
/// the table uses depend on every input byte.
struct NameHasher(u64);

/// An odd constant with well-spread bits, used to multiply each word in.
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

impl NameHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(MIX);
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let (words, tail) = bytes.as_chunks::<8>();
        for word in words {
            self.mix(u64::from_le_bytes(*word));
        }
        let mut last = [0u8; 8];
        if let Some(dest) = last.get_mut(..tail.len()) {
            dest.copy_from_slice(tail);
        }
        self.mix(u64::from_le_bytes(last));
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn finish(&self) -> u64 {
        let h = self.0;
        (h ^ (h >> 32)).wrapping_mul(MIX) ^ (h >> 29)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Option<(&str, &str)> {
        let (name, digits) = split_integer_line(line.as_bytes())?;
        let text = |b| std::str::from_utf8(b).expect("test lines are UTF-8");
        Some((text(name), text(digits)))
    }

    #[test]
    fn splits_integer_lines_at_the_colon_before_the_value() {
        assert_eq!(split("a.b: 12"), Some(("a.b", "12")));
        assert_eq!(split("a.b:  12 \t\r"), Some(("a.b", "12")));
        assert_eq!(split("spiffe://x/y: 3"), Some(("spiffe://x/y", "3")));
        assert_eq!(split("a:: 3"), Some(("a:", "3")));
        assert_eq!(split(": 3"), Some(("", "3")));
    }

    #[test]
    fn gives_a_name_with_colon_space_only_when_the_line_has_two() {
        assert_eq!(split("a: b: 3"), Some(("a: b", "3")));
    }

    #[test]
    fn rejects_lines_without_an_integer_value() {
        for line in [
            "a: -3",
            "a: 1.5",
            "a: 1e5",
            "a:\t3",
            "a:3",
            "a 3",
            "3",
            "a: ",
            "a: \"3\"",
            "a: No recorded values",
            "a: P0(nan,0) P100(nan,3)",
            "",
        ] {
            assert_eq!(split(line), None, "{line:?}");
        }
    }

    #[test]
    fn parses_up_to_u64_max() {
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"0000000000000000000000042"), Some(42));
    }

    #[test]
    fn length_set_holds_short_and_long_lengths() {
        let mut set = LengthSet::default();
        set.insert(0);
        set.insert(63);
        set.insert(64);
        set.insert(255);
        assert!(set.contains(0) && set.contains(63) && set.contains(64) && set.contains(255));
        assert!(!set.contains(1) && !set.contains(256));
        set.insert(300);
        assert!(set.contains(256) && set.contains(10_000));
    }
}
