//! Byte counts as people read them, for health reasons and `%status`.

const KIB: f64 = 1024.0;
const MIB: f64 = KIB * 1024.0;
const GIB: f64 = MIB * 1024.0;

/// `512 B`, `3.4 KiB`, `6.2 MiB`, `5.1 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else if b >= MIB {
        format!("{:.1} MiB", b / MIB)
    } else if b >= KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{bytes} B")
    }
}

/// A threshold given in MiB, as it would be written: `1 MiB`, `4 GiB`,
/// `1.5 GiB`.
pub fn format_mib(mib: u64) -> String {
    if mib < 1024 {
        format!("{mib} MiB")
    } else if mib.is_multiple_of(1024) {
        format!("{} GiB", mib / 1024)
    } else {
        format!("{:.1} GiB", mib as f64 / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_the_largest_unit_below_the_value() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(3 * 1024 + 400), "3.4 KiB");
        assert_eq!(format_bytes(6 * 1024 * 1024 + 200 * 1024), "6.2 MiB");
        assert_eq!(format_bytes(5 * (1 << 30) + (1 << 30) / 10), "5.1 GiB");
    }

    #[test]
    fn mib_thresholds_read_as_written() {
        assert_eq!(format_mib(1), "1 MiB");
        assert_eq!(format_mib(4096), "4 GiB");
        assert_eq!(format_mib(1536), "1.5 GiB");
    }
}
