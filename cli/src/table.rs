//! Plain aligned tables and key/value lists for people; `--output json` is for scripts.

use std::io::Write;

/// The widest a cell is shown (longer ones end in `…`).
const MAX_CELL: usize = 60;

fn cell(text: &str) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.chars().count() > MAX_CELL {
        let mut cut: String = clean.chars().take(MAX_CELL - 1).collect();
        cut.push('…');
        cut
    } else {
        clean
    }
}

/// Writes `rows` under `headers`, columns aligned and two spaces apart.
pub fn print(out: &mut dyn Write, headers: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| cell(c)).collect()).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |out: &mut dyn Write, cells: &[String]| -> std::io::Result<()> {
        let mut text = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(c);
            if i + 1 < cells.len() {
                let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(c.chars().count());
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    let head: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    line(out, &head)?;
    for row in &rows {
        line(out, row)?;
    }
    Ok(())
}

/// Writes `key: value` lines, the values aligned.
pub fn pairs(out: &mut dyn Write, pairs: &[(&str, String)]) -> std::io::Result<()> {
    let width = pairs.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    for (key, value) in pairs {
        let pad = width - key.chars().count();
        writeln!(out, "{key}:{}  {}", " ".repeat(pad), cell(value))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_long_cells_are_cut() {
        let mut out = Vec::new();
        let long = "x".repeat(100);
        print(
            &mut out,
            &["NAME", "STATE"],
            &[vec!["a".into(), "Running".into()], vec![long.clone(), "Stopped".into()]],
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0].find("STATE"), lines[1].find("Running"));
        assert!(lines[2].contains('…') && !lines[2].contains(&long));
    }
}
