//! The access log's timestamps, exactly as `tracing_subscriber`'s `SystemTime` timer writes
//! them: RFC 3339 in UTC with microseconds, `2026-11-29T19:40:12.123456Z`.
//!
//! The timer formats the whole date through `core::fmt` for every line, which was about 1.4%
//! of jessy-core's CPU time per `GET` (`perf record`, docs/BENCHMARKS.md `## HTTP`). Here each
//! thread formats the date and time of day once a second and writes the six digits of the
//! microseconds by hand.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// The first second of the year 10000, past which the timer writes the year differently
/// (`+10000`); such times are left to it.
const YEAR_10000: u64 = 253_402_300_800;

/// `YYYY-MM-DDTHH:MM:SS.`, the part of a timestamp that a second shares.
type SecondText = [u8; 20];

thread_local! {
    /// The second formatted last on this thread, and its text.
    static LAST: Cell<(u64, SecondText)> = const { Cell::new((u64::MAX, [0; 20])) };
}

/// Appends `time` as a JSON string, or returns false (writing nothing) when it is before 1970
/// or after 9999, which the caller then formats the slow way.
pub(crate) fn push_json(out: &mut Vec<u8>, time: SystemTime) -> bool {
    let Ok(since) = time.duration_since(UNIX_EPOCH) else { return false };
    let secs = since.as_secs();
    if secs >= YEAR_10000 {
        return false;
    }
    let text = LAST.with(|last| match last.get() {
        (cached, text) if cached == secs => text,
        _ => {
            let text = second_text(secs);
            last.set((secs, text));
            text
        }
    });
    out.push(b'"');
    out.extend_from_slice(&text);
    let mut micros = since.subsec_micros();
    let mut digits = [0u8; 6];
    for d in digits.iter_mut().rev() {
        *d = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    out.extend_from_slice(&digits);
    out.extend_from_slice(b"Z\"");
    true
}

/// `YYYY-MM-DDTHH:MM:SS.` for `secs` seconds after 1970 (before the year 10000).
fn second_text(secs: u64) -> SecondText {
    let (year, month, day) = civil_date(secs / 86_400);
    let of_day = secs % 86_400;
    let mut text = *b"0000-00-00T00:00:00.";
    let mut put = |at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, of_day / 3600);
    put(14, 2, of_day / 60 % 60);
    put(17, 2, of_day % 60);
    text
}

/// The year, month and day of the `days`th day after 1970-01-01, in the proleptic Gregorian
/// calendar. Counted in eras of 400 years (146,097 days, which always hold the same leap
/// days), with years starting on March 1 so that February's leap day ends a year.
fn civil_date(days: u64) -> (u64, u64, u64) {
    // Days since 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March: 0 = March, ..., 11 = February.
    let m = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * m + 2) / 5 + 1;
    let month = if m < 10 { m + 3 } else { m - 9 };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::FormatTime;

    use super::*;

    fn text(time: SystemTime) -> Option<String> {
        let mut out = Vec::new();
        push_json(&mut out, time).then(|| String::from_utf8(out).unwrap())
    }

    fn at(secs: u64, micros: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, micros * 1000 + 999)
    }

    #[test]
    fn known_instants() {
        for (secs, micros, want) in [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_825_600, 7, "2000-02-29T12:00:00.000007Z"),
            (951_868_799, 999_999, "2000-02-29T23:59:59.999999Z"),
            (4_107_542_399, 123_456, "2100-02-28T23:59:59.123456Z"),
            (4_107_542_400, 0, "2100-03-01T00:00:00.000000Z"),
            (1_795_981_155, 500_000, "2026-11-29T19:39:15.500000Z"),
            (YEAR_10000 - 1, 1, "9999-12-31T23:59:59.000001Z"),
        ] {
            assert_eq!(text(at(secs, micros)).as_deref(), Some(&*format!("\"{want}\"")), "{secs}");
        }
        assert_eq!(text(at(YEAR_10000, 0)), None);
        assert_eq!(text(UNIX_EPOCH - Duration::from_secs(1)), None);
    }

    #[test]
    fn same_shape_as_the_timer_writes_now() {
        // The stock timer reads the clock itself: ours, taken between two of its readings,
        // sorts between them, which it can only do if every field is where the timer puts it.
        let stock = || {
            let mut s = String::new();
            tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut s)).unwrap();
            format!("\"{s}\"")
        };
        let before = stock();
        let ours = text(SystemTime::now()).unwrap();
        let after = stock();
        assert_eq!(ours.len(), before.len());
        assert!(before <= ours && ours <= after, "{before} {ours} {after}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]

        /// The date and time of day agree with `httpdate`'s own calendar (hyper's `Date`).
        #[test]
        fn dates_agree_with_httpdate(secs in 0..YEAR_10000, micros in 0..1_000_000u32) {
            let ours = text(at(secs, micros)).unwrap();
            // "Sun, 29 Nov 2026 19:39:15 GMT"
            let http = httpdate::fmt_http_date(at(secs, 0));
            let parts: Vec<&str> = http.split(' ').collect();
            let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
                .iter()
                .position(|m| *m == parts[2])
                .unwrap() + 1;
            let want = format!("\"{}-{month:02}-{}T{}.{micros:06}Z\"", parts[3], parts[1], parts[4]);
            prop_assert_eq!(ours, want);
        }
    }
}
