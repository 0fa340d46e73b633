//! Envoy's `/stats` text, as the tests read it: `name: value` lines.

use std::collections::BTreeMap;

/// The integer stats of one `/stats` read. Histogram lines, whose values are
/// not integers, are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    values: BTreeMap<String, u64>,
}

impl Stats {
    pub fn parse(text: &str) -> Stats {
        let values = text
            .lines()
            .filter_map(|line| line.split_once(": "))
            .filter_map(|(name, value)| Some((name.to_owned(), value.trim().parse().ok()?)))
            .collect();
        Stats { values }
    }

    /// The value of a whole stat name; an absent stat reads 0, as Envoy leaves
    /// never-used stats out of `/stats?usedonly`.
    pub fn get(&self, name: &str) -> u64 {
        self.values.get(name).copied().unwrap_or(0)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// How much `name` moved since `before`; negative after a restart.
    pub fn delta(&self, before: &Stats, name: &str) -> i64 {
        self.get(name) as i64 - before.get(name) as i64
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}
