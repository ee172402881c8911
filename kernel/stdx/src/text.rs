//! Text for people: durations, plain-text tables, HTML escaping. Shared
//! by the kernel's cell output and `skillctl`, so a table or an uptime
//! reads the same in a notebook and in a terminal.

/// A duration in whole seconds as `1d 2h 3m`, `1h 2m 5s` or `0m 5s`: the
/// two or three largest units, for uptimes.
pub fn dhms(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h {m}m")
    } else if h > 0 {
        format!("{h}h {m}m {s}s")
    } else {
        format!("{m}m {s}s")
    }
}

/// `rows` under `header` as plain text, each column as wide as its widest
/// cell (counted in characters), columns two spaces apart, one line per
/// row, each ending in `\n`, no trailing spaces. A row shorter than the
/// header leaves its last columns empty.
pub fn text_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cell = |row: &[String], i: usize| row.get(i).map_or("", String::as_str).to_owned();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| cell(r, i).chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let joined: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        joined.join("  ").trim_end().to_owned() + "\n"
    };
    let mut text = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        text.push_str(&line((0..header.len()).map(|i| cell(row, i)).collect()));
    }
    text
}

/// `s` safe inside HTML text and double-quoted attributes.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_reads_naturally() {
        assert_eq!(dhms(5), "0m 5s");
        assert_eq!(dhms(3725), "1h 2m 5s");
        assert_eq!(dhms(90000), "1d 1h 0m");
        assert_eq!(dhms(90061), "1d 1h 1m");
    }

    #[test]
    fn table_columns_fit_their_widest_cell_in_characters() {
        let rows = vec![
            vec!["smollm2".to_owned(), "94 MiB".to_owned()],
            vec!["é".to_owned(), String::new()],
        ];
        assert_eq!(
            text_table(&["name", "size"], &rows),
            "name     size\nsmollm2  94 MiB\né\n"
        );
    }

    #[test]
    fn html_special_characters_are_escaped() {
        assert_eq!(
            html_escape(r#"<a href="x">&</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
