//! mTLS connections counted in coarse time buckets, so an inbound's memory stays
//! fixed however long the window is and however long strictly runs.

use std::time::{Duration, SystemTime};

/// How many buckets cover one window. More buckets make the count at the edge of the
/// window finer, at 4 bytes each.
const BUCKETS_PER_WINDOW: u32 = 32;

/// Buckets kept: as many as can start inside one window. The width is the window
/// divided by 32 and rounded down, so a window holds the starts of 33 at most.
const SLOTS: usize = BUCKETS_PER_WINDOW as usize + 1;

/// mTLS connections by the time strictly saw them.
///
/// The count inside the window leaves out the oldest, partly covered bucket, so it
/// can only come out low: too little evidence delays a verdict, it never makes one.
///
/// Buckets are numbered by their start since the Unix epoch and kept in a ring of
/// fixed size, so an inbound's memory is the same from its first poll on, without
/// a heap allocation: a few hundred bytes for each of tens of thousands of inbounds.
#[derive(Debug, Clone)]
pub struct MtlsWindow {
    width: Duration,
    /// Number of the newest bucket that was written.
    newest: u64,
    /// Connections per bucket, at `number % SLOTS`. A bucket holds at most
    /// `u32::MAX`, billions in a fraction of a day, and saturates rather than wraps,
    /// so the count errs low.
    counts: [u32; SLOTS],
}

impl MtlsWindow {
    pub fn new(window: Duration) -> Self {
        let width = (window / BUCKETS_PER_WINDOW).max(Duration::from_millis(1));
        Self {
            width,
            newest: 0,
            counts: [0; SLOTS],
        }
    }

    /// Records `count` connections seen at `at`. A time before the newest bucket,
    /// when the clock went back, counts in the newest bucket.
    pub fn add(&mut self, at: SystemTime, count: u64) {
        if count == 0 {
            return;
        }
        let number = self.bucket_number(at).max(self.newest);
        self.advance_to(number);
        let added = u32::try_from(count).unwrap_or(u32::MAX);
        if let Some(slot) = self.counts.get_mut(slot_index(u128::from(number))) {
            *slot = slot.saturating_add(added);
        }
    }

    /// Connections in buckets that lie wholly inside `[now - window, now]`.
    pub fn count(&self, now: SystemTime, window: Duration) -> u64 {
        let from = now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
        let width = self.width.as_nanos();
        let first = nanos_since_epoch(from).div_ceil(width);
        let kept = u128::from(self.newest).saturating_sub(SLOTS as u128 - 1);

        (first.max(kept)..=u128::from(self.newest))
            .filter_map(|number| self.counts.get(slot_index(number)))
            .map(|&n| u64::from(n))
            .fold(0, u64::saturating_add)
    }

    /// Makes `number` the newest bucket, emptying the slots of the buckets it
    /// skips over, which the ring reuses.
    fn advance_to(&mut self, number: u64) {
        let skipped = number.saturating_sub(self.newest).min(SLOTS as u64);
        for step in 1..=skipped {
            let reused = u128::from(self.newest) + u128::from(step);
            if let Some(slot) = self.counts.get_mut(slot_index(reused)) {
                *slot = 0;
            }
        }
        self.newest = number;
    }

    fn bucket_number(&self, at: SystemTime) -> u64 {
        let number = nanos_since_epoch(at) / self.width.as_nanos();
        u64::try_from(number).unwrap_or(u64::MAX)
    }
}

fn slot_index(number: u128) -> usize {
    (number % SLOTS as u128) as usize
}

fn nanos_since_epoch(at: SystemTime) -> u128 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
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
    fn a_full_day_keeps_every_bucket_and_reuses_their_slots() {
        let day = Duration::from_secs(24 * 3600);
        let mut w = MtlsWindow::new(day);
        let start = at(1_800_000_000);
        for hour in 0..72 {
            w.add(start + Duration::from_secs(hour * 3600), 10);
        }
        let now = start + Duration::from_secs(71 * 3600);

        // Buckets of 45 minutes: those starting in the last 24 h hold the last 24
        // or 25 adds, depending on where the edge falls.
        let counted = w.count(now, day);
        assert!((240..=250).contains(&counted), "{counted}");
        assert_eq!(w.count(now + 2 * day, day), 0);
    }

    /// The window as a plain list of (bucket start, count), oldest first.
    fn reference_count(adds: &[(u64, u64)], width: u64, now: u64, window: u64) -> u64 {
        let mut buckets: Vec<(u64, u64)> = Vec::new();
        for &(at, n) in adds.iter().filter(|(_, n)| *n > 0) {
            let start = at / width * width;
            match buckets.last_mut() {
                Some((last, count)) if *last >= start => *count += n,
                _ => buckets.push((start, n)),
            }
        }
        let from = now.saturating_sub(window);
        buckets
            .iter()
            .filter(|(s, _)| *s >= from)
            .map(|(_, n)| n)
            .sum()
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_a_plain_list_of_buckets(
            steps in proptest::collection::vec((0u64..400, 0u64..20, 0u64..3), 1..200),
        ) {
            let window = 320;
            let mut w = MtlsWindow::new(Duration::from_secs(window));
            let (mut now, mut adds) = (1_000_000, Vec::new());
            for (advance, count, back) in steps {
                now += advance;
                // Now and then a poll is dated a little before the newest one.
                let when = now - back * 7;
                w.add(at(when), count);
                adds.push((when, count));
                proptest::prop_assert_eq!(
                    w.count(at(now), Duration::from_secs(window)),
                    reference_count(&adds, 10, now, window)
                );
            }
        }
    }

    #[test]
    fn a_clock_that_went_back_counts_in_the_newest_bucket() {
        let window = Duration::from_secs(320);
        let mut w = MtlsWindow::new(window);
        w.add(at(2000), 1);
        w.add(at(1000), 2);

        assert_eq!(w.count(at(2000), window), 3);
    }

    #[test]
    fn a_bucket_saturates_instead_of_wrapping() {
        let window = Duration::from_secs(320);
        let mut w = MtlsWindow::new(window);
        w.add(at(1000), u64::MAX);
        w.add(at(1001), 5);

        assert_eq!(w.count(at(1001), window), u64::from(u32::MAX));
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
