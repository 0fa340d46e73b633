//! The Envoy `/stats` text parser.
//!
//! Interface only; the parser itself is being written.

use std::collections::HashMap;

/// The stat names a caller wants, resolved once and reused across polls.
#[derive(Debug, Clone, Default)]
pub struct StatQuery {
    index: HashMap<Box<str>, usize>,
}

impl StatQuery {
    /// Builds a query; duplicate names share one slot.
    pub fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut index = HashMap::new();
        for name in names {
            let next = index.len();
            index.entry(name.as_ref().into()).or_insert(next);
        }
        Self { index }
    }

    /// The slot of `name` in the values a read returns.
    pub fn slot(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

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
    pub fn get(&self, slot: usize) -> Option<u64> {
        self.values.get(slot).copied().flatten()
    }
}

/// Reads the wanted integer stats out of a `/stats` body.
pub fn read(_body: &[u8], query: &StatQuery) -> StatValues {
    StatValues {
        values: vec![None; query.len()],
    }
}
