//! Pages of a list: which page a caller asks for ([`PageQuery`]) and what it gets ([`Page`]).
//! The REST API's lists take them, and so do control-plane lists paginated in the database
//! (the audit log), where `page_token` is a cursor the list gave.

use serde::{Deserialize, Serialize};

use crate::Error;

/// The most a page holds, and how many when the caller does not say.
pub const MAX_LIMIT: u32 = 1000;
pub const DEFAULT_LIMIT: u32 = 100;

/// Which page of a list: at most `limit` items after the one `page_token` names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct PageQuery {
    /// How many items at most (1–1000, default 100).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 1000))]
    pub limit: Option<u32>,
    /// `next_page_token` of the previous page; none: the first page.
    pub page_token: Option<String>,
}

impl PageQuery {
    /// The first page of at most `limit` items.
    pub fn first(limit: u32) -> Self {
        PageQuery { limit: Some(limit), page_token: None }
    }

    /// How many items the page holds at most, once checked (1–[`MAX_LIMIT`]).
    pub fn limit(&self) -> Result<u32, Error> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::invalid(format!("limit must be between 1 and {MAX_LIMIT}.")));
        }
        Ok(limit)
    }
}

/// One page of a list, in a stable order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `page_token` for the next page; none on the last page.
    pub next_page_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_and_out_of_range_are_refused() {
        assert_eq!(PageQuery::default().limit().unwrap(), DEFAULT_LIMIT);
        assert_eq!(PageQuery::first(MAX_LIMIT).limit().unwrap(), MAX_LIMIT);
        assert!(PageQuery::first(0).limit().is_err());
        assert!(PageQuery::first(MAX_LIMIT + 1).limit().is_err());
    }
}
