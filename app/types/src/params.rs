//! What the browser sends. Validation lives next to each type so the browser can show the
//! same message before the round trip; the server always validates again.

use serde::{Deserialize, Serialize};

use crate::Error;

/// GPU counts a VM can have: exactly the sizes of Fabric Manager partitions.
pub const GPU_COUNTS: [u32; 4] = [1, 2, 4, 8];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceCreate {
    pub name: String,
    pub gpu_count: u32,
}

impl InstanceCreate {
    pub fn validate(&self) -> Result<(), Error> {
        validate_name(&self.name)?;
        if !GPU_COUNTS.contains(&self.gpu_count) {
            return Err(Error::invalid(format!(
                "A VM has 1, 2, 4 or 8 GPUs, not {}; pick one of those.",
                self.gpu_count
            )));
        }
        Ok(())
    }
}

/// Names are DNS labels so they can become host names: 1–63 of `a-z0-9-`, starting with a
/// letter, not ending with `-`.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let ok_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let starts = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if name.is_empty() || name.len() > 63 || !ok_chars || !starts || name.ends_with('-') {
        return Err(Error::invalid(format!(
            "The name \"{name}\" is not valid: use 1 to 63 lowercase letters, digits and \
             hyphens, starting with a letter and not ending with a hyphen."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        for good in ["a", "train-01", "x9"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "9lives", "Upper", "trailing-", "has space", &"a".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn gpu_counts_are_partition_sizes() {
        for n in [0, 3, 5, 16] {
            let err = InstanceCreate { name: "a".into(), gpu_count: n }.validate().unwrap_err();
            assert!(err.to_string().contains("1, 2, 4 or 8"));
        }
        assert!(InstanceCreate { name: "a".into(), gpu_count: 8 }.validate().is_ok());
    }
}
