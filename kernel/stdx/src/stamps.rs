//! Names for rotated files: `<base>.<stamp>`, where the stamp is the UTC
//! time to the millisecond (`2026-12-07-13-05-22-123`). Stamps sort by
//! time as text, and after a day's, hour's or minute's stamp
//! (`2026-12-07`, `2026-12-07-13`) they begin with. A rotated file may
//! later be compressed to `<base>.<stamp>.lz4`; a stamp either name has is
//! taken.

use std::path::Path;

use chrono::{DateTime, Utc};

/// The stamp of `at`.
pub fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d-%H-%M-%S-%3f").to_string()
}

/// Whether `<dir>/<base>.<stamp>`, or its `.lz4`, exists (a dangling
/// symlink counts).
pub fn taken(dir: &Path, base: &str, stamp: &str) -> bool {
    [format!("{base}.{stamp}"), format!("{base}.{stamp}.lz4")]
        .iter()
        .any(|name| dir.join(name).symlink_metadata().is_ok())
}

/// The first stamp from `at` on, a millisecond later each try, that no
/// file in `dir` has.
pub fn free(dir: &Path, base: &str, at: DateTime<Utc>) -> String {
    let mut at = at;
    loop {
        let stamp = stamp(at);
        if !taken(dir, base, &stamp) {
            return stamp;
        }
        at += chrono::Duration::milliseconds(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_stamp_moves_a_millisecond_on_and_stamps_sort_by_time() {
        let dir = std::env::temp_dir().join(format!("stamps-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let at = DateTime::parse_from_rfc3339("2026-12-07T13:05:22.123Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(free(&dir, "x.log", at), "2026-12-07-13-05-22-123");
        std::fs::write(dir.join("x.log.2026-12-07-13-05-22-123.lz4"), "").unwrap();
        assert_eq!(free(&dir, "x.log", at), "2026-12-07-13-05-22-124");
        assert!("2026-12-07" < stamp(at).as_str() && stamp(at).as_str() < "2026-12-08");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
