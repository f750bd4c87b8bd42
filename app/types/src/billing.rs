//! Metering and billing: what tenants and providers see of usage and money, and the price and
//! budget changes they ask for. Money is integer: prices in millionths of the provider's
//! currency per hour ("micros"), amounts in hundredths ("cents"); never floating point.

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::ids::{InstanceUuid, TenantUuid};

/// Millionths of the currency in a cent.
pub const MICROS_PER_CENT: i64 = 10_000;

/// How numbers are written for the reader: the provider's currency (ISO 4217 code) and the
/// separators of the reader's locale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MoneyFormat {
    pub currency: String,
    pub decimal: char,
    pub group: char,
}

impl MoneyFormat {
    /// The currency written the English way (`1,234.56`).
    pub fn english(currency: &str) -> Self {
        MoneyFormat { currency: currency.to_owned(), decimal: '.', group: ',' }
    }

    /// The separators of the first language in an `Accept-Language` header that has its own
    /// (English ones otherwise).
    pub fn for_accept_language(currency: &str, header: &str) -> Self {
        let mut format = Self::english(currency);
        for tag in header.split(',') {
            let tag = tag.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            let language = tag.split(['-', '_']).next().unwrap_or("");
            let seps = match (language, tag.as_str()) {
                (_, "de-ch") => Some(('.', '\'')),
                ("en" | "ja" | "zh" | "ko" | "he" | "th", _) => Some(('.', ',')),
                ("de" | "es" | "it" | "nl" | "pt" | "da" | "id" | "tr" | "el", _) => {
                    Some((',', '.'))
                }
                // A narrow no-break space groups digits in French and the Nordic languages.
                ("fr" | "sv" | "nb" | "no" | "fi" | "pl" | "cs" | "ru" | "uk", _) => {
                    Some((',', '\u{202f}'))
                }
                _ => None,
            };
            if let Some((decimal, group)) = seps {
                format.decimal = decimal;
                format.group = group;
                break;
            }
        }
        format
    }

    /// `1234` grouped: `1,234`.
    pub fn integer(&self, n: i64) -> String {
        let digits = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(self.group);
            }
            out.push(c);
        }
        if n < 0 { format!("-{out}") } else { out }
    }

    /// An amount in cents: `1,234.56 USD`.
    pub fn cents(&self, cents: i64) -> String {
        let sign = if cents < 0 { "-" } else { "" };
        let abs = cents.unsigned_abs();
        format!(
            "{sign}{}{}{:02} {}",
            self.integer((abs / 100) as i64),
            self.decimal,
            abs % 100,
            self.currency
        )
    }

    /// A price in micros per hour, with as many decimals as it needs (2 to 6): `2.49 USD/h`.
    pub fn price(&self, micros: i64, unit: &str) -> String {
        format!("{} {}{unit}", self.decimal_micros(micros), self.currency)
    }

    /// `2.49`, `0.000137`: micros as a decimal with 2 to 6 places.
    pub fn decimal_micros(&self, micros: i64) -> String {
        let sign = if micros < 0 { "-" } else { "" };
        let abs = micros.unsigned_abs();
        let mut fraction = format!("{:06}", abs % 1_000_000);
        while fraction.len() > 2 && fraction.ends_with('0') {
            fraction.pop();
        }
        format!("{sign}{}{}{fraction}", self.integer((abs / 1_000_000) as i64), self.decimal)
    }

    /// Seconds as hours with 2 decimals: `12.50 h`.
    pub fn hours(&self, seconds: i64) -> String {
        let hundredths = (seconds * 100 + 1800) / 3600;
        format!("{}{}{:02} h", self.integer(hundredths / 100), self.decimal, hundredths % 100)
    }
}

/// Parses a decimal amount of the currency (`2.49`, `0.000137`; a comma works as the point)
/// into micros. `what` names the field in the sentence that refuses it.
pub fn parse_micros(text: &str, what: &str) -> Result<i64, Error> {
    let refuse = || {
        Error::invalid(format!(
            "Write {what} as a number with at most 6 decimals, such as 2.49; \"{}\" is not one.",
            text.trim()
        ))
    };
    let text = text.trim().replace(',', ".");
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    if whole.is_empty() && fraction.is_empty()
        || fraction.len() > 6
        || !whole.chars().chain(fraction.chars()).all(|c| c.is_ascii_digit())
        || whole.len() > 9
    {
        return Err(refuse());
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| refuse())? };
    let fraction: i64 = format!("{fraction:0<6}").parse().map_err(|_| refuse())?;
    Ok(whole * 1_000_000 + fraction)
}

/// A labelled amount in a breakdown (an instance, a GPU model, a user, a tenant, a unit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CostLine {
    pub label: String,
    /// Billed seconds (of instance-type time: running).
    pub seconds: i64,
    pub cents: i64,
}

/// One UTC day's cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DayCost {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub cents: i64,
}

/// A tenant's monthly budget and how far the month has used it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BudgetStatus {
    pub monthly_cents: i64,
    /// Of the budget used so far this month, in whole percent.
    pub used_percent: i64,
    /// The alerts raised this month (50, 80, 100).
    pub alerts: Vec<i64>,
}

/// The tenant's usage page for one month (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageSummary {
    pub tenant_name: String,
    /// `YYYY-MM`.
    pub month: String,
    /// The month is still running (totals are to date, and there is a forecast).
    pub current: bool,
    pub format: MoneyFormat,
    /// To date, the sum of the month's invoice lines.
    pub total_cents: i64,
    /// The month's total if what runs now keeps running until its end.
    pub forecast_cents: i64,
    /// What the tenant's VMs cost per hour right now.
    pub burn_micros_per_hour: i64,
    pub days: Vec<DayCost>,
    pub by_instance: Vec<CostLine>,
    pub by_gpu_model: Vec<CostLine>,
    pub by_user: Vec<CostLine>,
    pub budget: Option<BudgetStatus>,
    /// Prepaid credit left, when the tenant has any (launches stop at zero).
    pub credit_cents: Option<i64>,
    /// Months with usage, newest first, for the invoice list.
    pub months: Vec<String>,
}

/// One line of an invoice: an instance's time on one item at one price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvoiceLine {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub instance_id: InstanceUuid,
    pub instance_name: String,
    /// `h100x8`, `stopped disk` or `public IP`.
    pub item: String,
    /// 1 for an instance type or a public IP, GiB for a stopped disk.
    pub quantity: i64,
    /// Unix seconds of the line's first and last billed second (+1).
    pub from: i64,
    pub to: i64,
    pub seconds: i64,
    pub micros_per_hour: i64,
    /// `quantity × seconds × price / 3600`, rounded half up to the cent once per line.
    pub cents: i64,
}

/// A tenant's invoice for one month (a draft while the month runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invoice {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub tenant_id: TenantUuid,
    pub tenant_name: String,
    pub month: String,
    pub draft: bool,
    pub format: MoneyFormat,
    pub lines: Vec<InvoiceLine>,
    pub total_cents: i64,
}

/// One GPU model across the fleet in a month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GpuModelUse {
    pub gpu_model: String,
    pub cents: i64,
    /// GPU-seconds billed, and the GPU-seconds the fleet's GPUs of this model had in the
    /// month so far.
    pub gpu_seconds: i64,
    pub capacity_gpu_seconds: i64,
    pub gpus: i64,
    /// Not held by any instance now.
    pub idle_gpus: i64,
}

/// A day of the provider's revenue per GPU model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProviderDay {
    pub day: String,
    /// `(GPU model or "CPU only", cents)`.
    pub by_model: Vec<(String, i64)>,
}

/// The provider's view of a month: revenue and GPU use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProviderUsage {
    pub month: String,
    pub current: bool,
    pub format: MoneyFormat,
    pub total_cents: i64,
    pub gpu_models: Vec<GpuModelUse>,
    /// Per scalable unit (`SU 0`, …) and per tenant.
    pub by_unit: Vec<CostLine>,
    pub by_tenant: Vec<CostLine>,
    pub days: Vec<ProviderDay>,
    pub months: Vec<String>,
}

/// A priced item with its versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PriceItem {
    /// `type:<name>`, `extra:stopped-disk` or `extra:public-ip`.
    pub item: String,
    /// `per hour running`, `per GiB-hour stopped` or `per hour attached`.
    pub unit: String,
    /// Oldest first.
    pub versions: Vec<PriceVersion>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PriceVersion {
    /// Unix milliseconds.
    pub effective_from: i64,
    pub micros_per_hour: i64,
    /// The version in effect now.
    pub current: bool,
}

/// The price list for provider admins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PriceList {
    pub format: MoneyFormat,
    pub items: Vec<PriceItem>,
}

/// A new price for an item, effective now or at a later time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PriceSet {
    pub item: String,
    /// A decimal amount of the currency per hour (per GiB-hour for a stopped disk).
    pub price: String,
    /// `YYYY-MM-DDTHH:MM` in UTC, or empty for now.
    #[serde(default)]
    pub effective_from: String,
}

impl PriceSet {
    /// The price in micros, and the start in unix milliseconds (none: now); a start in the
    /// past is refused (a price change never rewrites what was billed).
    pub fn parse(&self, now_ms: i64) -> Result<(i64, Option<i64>), Error> {
        let micros = parse_micros(&self.price, "the price")?;
        if micros > 1_000_000_000_000 {
            return Err(Error::invalid("A price is at most 1,000,000 per hour."));
        }
        let from = self.effective_from.trim();
        if from.is_empty() {
            return Ok((micros, None));
        }
        let format =
            time::format_description::parse_borrowed::<2>("[year]-[month]-[day]T[hour]:[minute]")
                .map_err(|e| Error::internal(format!("the price start's format: {e}")))?;
        let at = time::PrimitiveDateTime::parse(from, &format).map_err(|_| {
            Error::invalid(format!(
                "Write when the price starts as YYYY-MM-DDTHH:MM in UTC (or leave it empty for \
                 now); \"{from}\" is not that."
            ))
        })?;
        let at_ms = (at.assume_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        if at_ms < now_ms {
            return Err(Error::invalid(
                "A new price starts now or later: what was billed before stays as it was.",
            ));
        }
        Ok((micros, Some(at_ms)))
    }
}

/// A tenant's monthly budget: a decimal amount, or empty to remove it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BudgetSet {
    pub monthly: String,
}

impl BudgetSet {
    /// The budget in cents; `None` removes it.
    pub fn parse(&self) -> Result<Option<i64>, Error> {
        if self.monthly.trim().is_empty() {
            return Ok(None);
        }
        let micros = parse_micros(&self.monthly, "the monthly budget")?;
        if micros == 0 || micros % MICROS_PER_CENT != 0 {
            return Err(Error::invalid(
                "A monthly budget is more than zero and in whole cents, such as 1500.00; leave \
                 it empty for none.",
            ));
        }
        Ok(Some(micros / MICROS_PER_CENT))
    }
}

/// Prepaid credit a provider admin gives a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreditGrant {
    pub amount: String,
    #[serde(default)]
    pub note: String,
}

impl CreditGrant {
    /// The amount in cents (negative takes credit back).
    pub fn parse(&self) -> Result<i64, Error> {
        let text = self.amount.trim();
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let micros = parse_micros(digits, "the credit")?;
        if micros == 0 || micros % MICROS_PER_CENT != 0 {
            return Err(Error::invalid(
                "Credit is an amount in whole cents other than zero, such as 500.00 (or -500.00 \
                 to take it back).",
            ));
        }
        if self.note.chars().count() > 200 {
            return Err(Error::invalid("Keep the note to 200 characters."));
        }
        let cents = micros / MICROS_PER_CENT;
        Ok(if negative { -cents } else { cents })
    }
}

/// Unix seconds as `2026-12-03 12:03:04` (UTC).
pub fn utc_second(secs: i64) -> String {
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return secs.to_string();
    };
    let (year, month, day) = at.to_calendar_date();
    format!(
        "{year:04}-{:02}-{day:02} {:02}:{:02}:{:02}",
        u8::from(month),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Unix seconds as `2026-12-03 12:03` (UTC).
pub fn utc_minute(secs: i64) -> String {
    let mut text = utc_second(secs);
    text.truncate(16);
    text
}

/// `YYYY-MM`, checked.
pub fn parse_month(text: &str) -> Result<(i32, u8), Error> {
    let refuse = || {
        Error::invalid(format!("Name a month as YYYY-MM, such as 2026-12; \"{text}\" is not one."))
    };
    let (y, m) = text.split_once('-').ok_or_else(refuse)?;
    let year: i32 = y.parse().map_err(|_| refuse())?;
    let month: u8 = m.parse().map_err(|_| refuse())?;
    if y.len() != 4 || m.len() != 2 || !(2000..=2999).contains(&year) || !(1..=12).contains(&month)
    {
        return Err(refuse());
    }
    Ok((year, month))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_written_in_the_readers_locale() {
        let en = MoneyFormat::english("USD");
        assert_eq!(en.cents(123_456_789), "1,234,567.89 USD");
        assert_eq!(en.cents(-5), "-0.05 USD");
        let de = MoneyFormat::for_accept_language("EUR", "de-DE,de;q=0.9,en;q=0.8");
        assert_eq!(de.cents(123_456), "1.234,56 EUR");
        let fr = MoneyFormat::for_accept_language("EUR", "xx, fr-FR");
        assert_eq!(fr.cents(100_000), "1\u{202f}000,00 EUR");
        assert_eq!(MoneyFormat::for_accept_language("USD", "*").decimal, '.');
        assert_eq!(en.price(2_490_000, "/h"), "2.49 USD/h");
        assert_eq!(en.price(137, "/GiB-h"), "0.000137 USD/GiB-h");
        assert_eq!(en.hours(45_000), "12.50 h");
    }

    #[test]
    fn decimal_amounts_parse_exactly_or_are_refused() {
        assert_eq!(parse_micros("2.49", "x").unwrap(), 2_490_000);
        assert_eq!(parse_micros("0,000137", "x").unwrap(), 137);
        assert_eq!(parse_micros("19", "x").unwrap(), 19_000_000);
        assert_eq!(parse_micros(".5", "x").unwrap(), 500_000);
        for bad in ["", ".", "1.0000001", "-1", "1e3", "abc", "1.2.3", "9999999999"] {
            assert!(parse_micros(bad, "the price").is_err(), "{bad}");
        }
        assert_eq!(BudgetSet { monthly: "1500".into() }.parse().unwrap(), Some(150_000));
        assert_eq!(BudgetSet { monthly: " ".into() }.parse().unwrap(), None);
        assert!(BudgetSet { monthly: "0.001".into() }.parse().is_err());
        let grant = |a: &str| CreditGrant { amount: a.into(), note: String::new() }.parse();
        assert_eq!(grant("-5.00").unwrap(), -500);
        assert!(grant("0").is_err());
        assert_eq!(parse_month("2026-02").unwrap(), (2026, 2));
        assert!(parse_month("2026-13").is_err() && parse_month("26-01").is_err());
    }

    #[test]
    fn utc_times_are_written_as_dates() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00");
        assert_eq!(utc_minute(1_798_761_600), "2027-01-01 00:00");
        assert_eq!(utc_minute(1_709_210_096), "2024-02-29 12:34");
        assert_eq!(utc_second(1_709_210_096), "2024-02-29 12:34:56");
    }

    #[test]
    fn a_new_price_starts_now_or_later() {
        let set = |price: &str, from: &str| PriceSet {
            item: "type:x".into(),
            price: price.into(),
            effective_from: from.into(),
        };
        let now = 1_796_000_000_000; // 2026-12
        assert_eq!(set("2.49", "").parse(now).unwrap(), (2_490_000, None));
        let (_, at) = set("3", "2027-01-01T00:00").parse(now).unwrap();
        assert_eq!(at, Some(1_798_761_600_000));
        assert!(set("3", "2020-01-01T00:00").parse(now).is_err());
        assert!(set("3", "tomorrow").parse(now).is_err());
    }
}
