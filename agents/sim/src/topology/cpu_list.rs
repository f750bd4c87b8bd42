//! Linux cpulist syntax (`0-55,112-167`), as in `/sys/devices/system/node/node0/cpulist`.

/// Parses a cpulist into ascending CPU ids, or says what is wrong with it.
pub fn parse(text: &str) -> Result<Vec<u32>, String> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim) {
        let number = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| format!("{part:?} is not a CPU number or range like 0-55"))
        };
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let n = number(part)?;
                (n, n)
            }
        };
        if first > last {
            return Err(format!("range {part:?} runs backwards"));
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    if let Some(pair) = cpus.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("CPU {} is listed twice", pair[0]));
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_ranges() {
        let cpus = parse("0-55,112-167").expect("valid");
        assert_eq!(cpus.len(), 112);
        assert_eq!((cpus[0], cpus[55], cpus[56], cpus[111]), (0, 55, 112, 167));
        assert_eq!(parse("3, 1").expect("valid"), [1, 3]);
    }

    #[test]
    fn test_parse_errors() {
        assert!(parse("").is_err());
        assert!(parse("0-").is_err());
        assert!(parse("5-2").expect_err("backwards").contains("backwards"));
        assert!(parse("0-3,2").expect_err("twice").contains("CPU 2 is listed twice"));
        assert!(parse("a").is_err());
    }
}
