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
//! - a line whose first sixteen bytes begin none of the wanted names is dropped
//!   after one comparison per distinct beginning (a handful per sidecar), which
//!   is what nearly every line of a big dump gets;
//! - it reads the other lines from their end, since a line that can give an
//!   integer ends in digits; histograms, text readouts and junk go after one byte;
//! - a name goes to the hash table only if its length is one of the wanted lengths;
//! - it stops as soon as every wanted name has a value.
//!
//! A body can be read as it arrives, piece by piece, with a [`StatReader`]: no
//! copy of the whole body is made, and each piece is read while it is still in
//! the processor's cache.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use memchr::memmem;

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
    /// How the names in `wanted` begin, checked first of all.
    heads: HeadSet,
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
            self.heads.insert(name.as_bytes());
        }
    }

    /// The slot of `name` in the values a read returns.
    pub fn slot(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The slot and value digits of `line`, if it gives an integer to a wanted name.
    fn wanted_line<'a>(&self, line: &'a [u8]) -> Option<(usize, &'a [u8])> {
        if !self.heads.may_begin(line) {
            return None;
        }
        self.named_line(line)
    }

    /// The same for a line already known to begin like a wanted name.
    fn named_line<'a>(&self, line: &'a [u8]) -> Option<(usize, &'a [u8])> {
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
    let mut reader = StatReader::new(query);
    reader.feed(body);
    reader.finish()
}

/// Reads a `/stats` body that arrives in pieces, split anywhere; the values are
/// those [`read`] finds in the whole body.
#[derive(Debug)]
pub struct StatReader<'q> {
    query: &'q StatQuery,
    values: Vec<Option<u64>>,
    /// Wanted names still without a value; at 0 the rest of the body is skipped.
    missing: usize,
    /// The start of a line whose newline has not arrived yet.
    partial: Vec<u8>,
}

impl<'q> StatReader<'q> {
    pub fn new(query: &'q StatQuery) -> Self {
        Self {
            query,
            values: vec![None; query.len()],
            missing: query.wanted.len(),
            partial: Vec::new(),
        }
    }

    /// Reads the next piece of the body.
    pub fn feed(&mut self, piece: &[u8]) {
        if self.missing == 0 {
            return;
        }
        let mut rest = piece;
        if !self.partial.is_empty() {
            let Some(end) = memchr::memchr(b'\n', piece) else {
                self.partial.extend_from_slice(piece);
                return;
            };
            let (head, tail) = piece.split_at(end);
            self.partial.extend_from_slice(head);
            let line = std::mem::take(&mut self.partial);
            self.take_line(&line);
            self.partial = line;
            self.partial.clear();
            rest = tail.get(1..).unwrap_or_default();
        }

        let Some(last) = memchr::memrchr(b'\n', rest) else {
            self.partial.extend_from_slice(rest);
            return;
        };
        let (lines, tail) = rest.split_at(last + 1);
        self.take_lines(lines);
        self.partial.extend_from_slice(tail);
    }

    /// Reads a run of whole lines, each ending in a newline.
    ///
    /// When searching, the lines are taken one beginning after the other, not in
    /// the order of the body. Every line of a name begins with that name's own
    /// beginning, so each name still sees its lines in order, and the first line
    /// giving it an integer still wins.
    fn take_lines(&mut self, lines: &[u8]) {
        let query = self.query;
        let Some(finders) = query.heads.finders() else {
            let mut start = 0;
            for end in memchr::memchr_iter(b'\n', lines) {
                if self.missing == 0 {
                    return;
                }
                self.take_line(lines.get(start..end).unwrap_or_default());
                start = end + 1;
            }
            return;
        };
        for finder in finders {
            for at in finder.find_iter(lines) {
                if self.missing == 0 {
                    return;
                }
                if at == 0 || lines.get(at - 1) == Some(&b'\n') {
                    let line = lines.get(at..).unwrap_or_default();
                    let end = memchr::memchr(b'\n', line).unwrap_or(line.len());
                    self.take_begun_line(line.get(..end).unwrap_or_default());
                }
            }
        }
    }

    /// The values found. A last line that never got its newline is ignored.
    pub fn finish(self) -> StatValues {
        StatValues {
            values: self.values,
        }
    }

    fn take_line(&mut self, line: &[u8]) {
        if let Some((slot, digits)) = self.query.wanted_line(line) {
            self.store(slot, digits);
        }
    }

    /// Takes a line the search found by its beginning, which needs no second look.
    fn take_begun_line(&mut self, line: &[u8]) {
        if let Some((slot, digits)) = self.query.named_line(line) {
            self.store(slot, digits);
        }
    }

    /// Keeps the first valid value of a slot.
    fn store(&mut self, slot: usize, digits: &[u8]) {
        let Some(value) = self.values.get_mut(slot).filter(|v| v.is_none()) else {
            return;
        };

        // An overflowing number leaves the slot open for a later, valid line.
        *value = parse_u64(digits);
        if value.is_some() {
            self.missing -= 1;
        }
    }
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

/// How the wanted names begin: the first sixteen bytes of each (fewer for a
/// shorter name). A sidecar's names share a few beginnings (`listener.10.42.0`,
/// `cluster.localhos`, `server.uptime`), so the set stays small.
///
/// A line is tested by comparing its first bytes, as one masked 128-bit number,
/// with each beginning. A run of lines can instead be searched for each
/// beginning with `memmem`, which skips many bytes at a time; that is how most
/// of a big dump, whose lines begin with none of them, goes by.
#[derive(Debug, Clone, Default)]
struct HeadSet {
    heads: Vec<Head>,
}

/// One distinct beginning of wanted names.
#[derive(Debug, Clone)]
struct Head {
    /// The first bytes as a little-endian number, masked to their count.
    value: u128,
    mask: u128,
    finder: memmem::Finder<'static>,
}

/// How many leading bytes [`HeadSet`] compares.
const HEAD_BYTES: usize = 16;

/// Searching pays when the beginnings are long enough to be rare in a dump and
/// few enough that a pass per beginning stays cheaper than a look at every line.
/// Other queries (short test names, dozens of inbounds) read line by line.
const SEARCHED_HEAD_BYTES: usize = 8;
const SEARCHED_HEADS: usize = 8;

impl HeadSet {
    fn insert(&mut self, name: &[u8]) {
        let bytes = name.get(..HEAD_BYTES).unwrap_or(name);
        let mask = match bytes.len() {
            HEAD_BYTES => u128::MAX,
            n => (1u128 << (8 * n)) - 1,
        };
        let value = head_of(bytes) & mask;
        if self
            .heads
            .iter()
            .any(|h| (h.value, h.mask) == (value, mask))
        {
            return;
        }
        self.heads.push(Head {
            value,
            mask,
            finder: memmem::Finder::new(bytes).into_owned(),
        });
    }

    /// Whether `line` may begin with one of the names.
    fn may_begin(&self, line: &[u8]) -> bool {
        let head = head_of(line);
        self.heads.iter().any(|h| head & h.mask == h.value)
    }

    /// The searchers of every beginning, when searching pays.
    fn finders(&self) -> Option<impl Iterator<Item = &memmem::Finder<'static>>> {
        let searchable = self.heads.len() <= SEARCHED_HEADS
            && self
                .heads
                .iter()
                .all(|h| h.finder.needle().len() >= SEARCHED_HEAD_BYTES);
        searchable.then(|| self.heads.iter().map(|h| &h.finder))
    }
}

/// The first sixteen bytes as a little-endian number, zero-padded when shorter.
fn head_of(bytes: &[u8]) -> u128 {
    if let Some(first) = bytes.first_chunk::<HEAD_BYTES>() {
        return u128::from_le_bytes(*first);
    }
    let mut padded = [0u8; HEAD_BYTES];
    for (to, from) in padded.iter_mut().zip(bytes) {
        *to = *from;
    }
    u128::from_le_bytes(padded)
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
    fn head_set_compares_up_to_sixteen_bytes() {
        let mut heads = HeadSet::default();
        heads.insert(b"listener.10.42.0.13_6379.ssl.handshake");
        heads.insert(b"listener.10.42.0.13_6379.downstream_cx_total");
        heads.insert(b"server.live");
        assert_eq!(heads.heads.len(), 2, "one entry per distinct beginning");
        assert!(heads.finders().is_some());

        assert!(heads.may_begin(b"listener.10.42.0.99_80.anything: 1"));
        assert!(heads.may_begin(b"server.live: 1"));
        assert!(heads.may_begin(b"server.live"));
        assert!(!heads.may_begin(b"server.liv"));
        assert!(!heads.may_begin(b"listener.10.42.1.13_6379.ssl.handshake: 1"));
        assert!(!heads.may_begin(b""));

        heads.insert(b"");
        assert!(heads.may_begin(b""), "the empty name begins every line");
        assert!(heads.finders().is_none(), "too short to search for");
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
