//! mTLS connections counted in coarse time buckets, so an inbound's memory stays
//! fixed however long the window is.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

/// How many buckets cover one window. More buckets make the count at the edge of the
/// window finer, at 16 bytes each.
const BUCKETS_PER_WINDOW: u32 = 32;

/// mTLS connections by the time strictly saw them.
///
/// The count inside the window leaves out the oldest, partly covered bucket, so it
/// can only come out low: too little evidence delays a verdict, it never makes one.
#[derive(Debug, Clone)]
pub struct MtlsWindow {
    width: Duration,
    /// (bucket start, connections), oldest first.
    buckets: VecDeque<(SystemTime, u64)>,
}

impl MtlsWindow {
    pub fn new(window: Duration) -> Self {
        let width = (window / BUCKETS_PER_WINDOW).max(Duration::from_millis(1));
        Self {
            width,
            buckets: VecDeque::new(),
        }
    }

    /// Records `count` connections seen at `at`.
    pub fn add(&mut self, at: SystemTime, count: u64) {
        if count == 0 {
            return;
        }
        let start = self.bucket_start(at);
        match self.buckets.back_mut() {
            Some((last, n)) if *last >= start => *n = n.saturating_add(count),
            _ => self.buckets.push_back((start, count)),
        }
    }

    /// Connections in buckets that lie wholly inside `[now - window, now]`; drops the
    /// buckets that fell out of it.
    pub fn count(&mut self, now: SystemTime, window: Duration) -> u64 {
        let from = now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
        while self.buckets.front().is_some_and(|(start, _)| *start < from) {
            self.buckets.pop_front();
        }
        self.buckets
            .iter()
            .map(|(_, n)| *n)
            .fold(0, u64::saturating_add)
    }

    fn bucket_start(&self, at: SystemTime) -> SystemTime {
        let since_epoch = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let width = self.width.as_nanos();
        let floored = since_epoch.as_nanos() / width * width;
        let floored = u64::try_from(floored).unwrap_or(u64::MAX);
        SystemTime::UNIX_EPOCH + Duration::from_nanos(floored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn counts_what_lies_inside_the_window() {
        let window = Duration::from_secs(320);
        let mut w = MtlsWindow::new(window);
        w.add(at(1000), 5);
        w.add(at(1005), 2);
        w.add(at(1200), 1);

        assert_eq!(w.count(at(1300), window), 8);
        assert_eq!(w.count(at(1400), window), 1);
        assert_eq!(w.count(at(2000), window), 0);
    }

    #[test]
    fn the_edge_bucket_is_left_out_so_the_count_never_runs_high() {
        let window = Duration::from_secs(320);
        let mut w = MtlsWindow::new(window);
        w.add(at(1009), 4);

        // The bucket starts at 1000, before 1329 - 320 = 1009.
        assert_eq!(w.count(at(1329), window), 0);
    }
}
