//! Metering and rating, as pure functions: an instance's state and public IP logs become
//! pieces of billed time (whole seconds, cut at UTC midnights), and pieces with the price
//! versions in effect become invoice lines rounded once per line. Storing the pieces is
//! `datastore::usage`'s; when it happens, `background::metering`'s.

use std::collections::HashMap;

use portal_types::billing::{InvoiceLine, MICROS_PER_CENT};
use portal_types::ids::{GenericUuid, InstanceUuid};
use portal_types::views::InstanceState;
use uuid::Uuid;

pub(crate) const DAY: i64 = 86_400;

/// Open intervals are stored only up to a midnight at least this long past, so that a state
/// change stamped before that midnight but committed after it still ends its piece there.
pub(crate) const RECORD_LAG_S: i64 = 600;

/// The price item of a stopped VM's disk, per GiB-hour.
pub(crate) const STOPPED_DISK: &str = "extra:stopped-disk";

/// The price item of a public IP, per hour attached to an instance (running or not).
pub(crate) const PUBLIC_IP: &str = "extra:public-ip";

/// Whether an item is an extra of an instance rather than its type (no running time).
pub(crate) fn is_extra(item: &str) -> bool {
    item.starts_with("extra:")
}

/// The price item of an instance type, per hour running.
pub(crate) fn type_item(instance_type: &str) -> String {
    format!("type:{instance_type}")
}

/// What an instance pays for: by its state, its type while its VM is up; only the disk it
/// keeps while stopped; nothing while it is being made, has failed or is going. Besides, its
/// public IP while one is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Billed {
    Type,
    StoppedDisk,
    PublicIp,
}

pub(crate) fn billed(state: &str) -> Option<Billed> {
    use InstanceState::*;
    let state = InstanceState::parse(state)?;
    match state {
        Running | Rebooting | Stopping => Some(Billed::Type),
        Stopped | Starting => Some(Billed::StoppedDisk),
        Provisioning | Deleting | Deleted | Failed => None,
    }
}

/// Every state in which an instance is billed.
pub(crate) fn billed_states() -> Vec<&'static str> {
    InstanceState::ALL
        .into_iter()
        .map(InstanceState::as_str)
        .filter(|s| billed(s).is_some())
        .collect()
}

/// A piece of billed time: `[start, end)` in unix seconds, within one UTC day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Piece {
    pub billed: Billed,
    pub start: i64,
    pub end: i64,
}

/// The start of the UTC day holding `s`.
pub(crate) fn day_start(s: i64) -> i64 {
    s - s.rem_euclid(DAY)
}

/// The first second of the UTC month holding `s`.
pub(crate) fn month_start(s: i64) -> i64 {
    let date = time::OffsetDateTime::from_unix_timestamp(day_start(s))
        .map(|t| t.date())
        .unwrap_or(time::Date::MIN);
    let first = date.replace_day(1).unwrap_or(date);
    first.midnight().assume_utc().unix_timestamp()
}

/// The billed pieces of an instance's state log (`(state, unix seconds)`, in the order the
/// states were entered) and public IP log (`(attached, unix seconds)`): each billed state,
/// and each attachment, from when it began until the next change; the last one, still
/// open, until `open_until` if that is later. Cut at every UTC midnight.
pub(crate) fn pieces(log: &[(String, i64)], ip_log: &[(bool, i64)], open_until: i64) -> Vec<Piece> {
    let states: Vec<_> = log.iter().map(|(state, at)| (billed(state), *at)).collect();
    let ips: Vec<_> =
        ip_log.iter().map(|(attached, at)| (attached.then_some(Billed::PublicIp), *at)).collect();
    let mut out = spans(&states, open_until);
    out.extend(spans(&ips, open_until));
    out
}

/// The pieces of a log of what is billed from each time on (see [`pieces`]).
fn spans(log: &[(Option<Billed>, i64)], open_until: i64) -> Vec<Piece> {
    let mut out = Vec::new();
    for (i, (billed, entered)) in log.iter().enumerate() {
        let Some(billed) = *billed else { continue };
        let end = log.get(i + 1).map_or(open_until, |(_, next)| *next);
        let mut start = *entered;
        while start < end {
            let cut = (day_start(start) + DAY).min(end);
            out.push(Piece { billed, start, end: cut });
            start = cut;
        }
    }
    out
}

/// A usage record: a piece of billed time at one price, with what the views group it by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Usage {
    pub instance_id: Uuid,
    pub tenant_id: Uuid,
    pub instance_name: String,
    pub item: String,
    /// 1 for an instance type or a public IP; GiB for a stopped disk.
    pub quantity: i64,
    pub gpu_model: String,
    pub gpu_count: i32,
    pub scalable_unit: Option<i32>,
    pub launched_by: Uuid,
    pub start: i64,
    pub end: i64,
    pub micros_per_hour: i64,
}

/// Price versions per item: `(effective from, unix seconds; micros per hour)`, oldest first.
#[derive(Clone, Debug, Default)]
pub(crate) struct Prices(pub HashMap<String, Vec<(i64, i64)>>);

impl Prices {
    /// The item's price at `s` (0 before its first version).
    pub fn at(&self, item: &str, s: i64) -> i64 {
        self.0
            .get(item)
            .and_then(|v| v.iter().take_while(|(from, _)| *from <= s).last())
            .map_or(0, |(_, micros)| *micros)
    }

    /// The piece cut where its item's price changes, each part at its price. (A stored record
    /// never spans a change: prices change now or later, never in the past.)
    pub fn cut(&self, usage: Usage) -> Vec<Usage> {
        let changes = self.0.get(&usage.item).map(Vec::as_slice).unwrap_or_default();
        let mut parts = Vec::new();
        let mut from = usage.start;
        for (at, _) in changes.iter().filter(|(at, _)| *at > usage.start && *at < usage.end) {
            parts.push(Usage {
                start: from,
                end: *at,
                micros_per_hour: self.at(&usage.item, from),
                ..usage.clone()
            });
            from = *at;
        }
        parts.push(Usage { start: from, micros_per_hour: self.at(&usage.item, from), ..usage });
        parts
    }
}

/// An exact amount: micros × quantity × seconds, that is 3,600 times the amount in micros
/// (kept exact until a line or a total is rounded).
pub(crate) type Exact = i128;

pub(crate) fn exact(micros_per_hour: i64, quantity: i64, seconds: i64) -> Exact {
    i128::from(micros_per_hour) * i128::from(quantity) * i128::from(seconds)
}

/// An exact amount in cents, rounded half up.
pub(crate) fn cents(exact: Exact) -> i64 {
    let per_cent = 3_600 * i128::from(MICROS_PER_CENT);
    ((exact + per_cent / 2).div_euclid(per_cent)) as i64
}

/// Usage summed per instance, item, quantity and price: an invoice line before rounding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Line {
    /// Who and what (every record summed into it has the same).
    pub usage: Usage,
    pub seconds: i64,
    pub from: i64,
    pub to: i64,
}

impl Line {
    pub fn exact(&self) -> Exact {
        exact(self.usage.micros_per_hour, self.usage.quantity, self.seconds)
    }

    fn key(&self) -> (Uuid, String, i64, i64) {
        let u = &self.usage;
        (u.instance_id, u.item.clone(), u.quantity, u.micros_per_hour)
    }

    /// The invoice line, rounded once.
    pub fn invoice_line(&self) -> InvoiceLine {
        let u = &self.usage;
        InvoiceLine {
            instance_id: InstanceUuid::from_untyped_uuid(u.instance_id),
            instance_name: u.instance_name.clone(),
            item: item_label(&u.item),
            quantity: u.quantity,
            from: self.from,
            to: self.to,
            seconds: self.seconds,
            micros_per_hour: u.micros_per_hour,
            cents: cents(self.exact()),
        }
    }
}

/// The stored lines with the records not stored yet (`live`) added in: one line per
/// instance, item, quantity and price, in instance name order.
pub(crate) fn merge_lines(stored: Vec<Line>, live: Vec<Usage>) -> Vec<Line> {
    let mut lines = stored;
    let mut index: HashMap<(Uuid, String, i64, i64), usize> =
        lines.iter().enumerate().map(|(i, l)| (l.key(), i)).collect();
    for u in live {
        let seconds = u.end - u.start;
        let key = (u.instance_id, u.item.clone(), u.quantity, u.micros_per_hour);
        match index.get(&key) {
            Some(&i) => {
                let line = &mut lines[i];
                line.seconds += seconds;
                line.from = line.from.min(u.start);
                line.to = line.to.max(u.end);
            }
            None => {
                index.insert(key, lines.len());
                lines.push(Line { from: u.start, to: u.end, seconds, usage: u });
            }
        }
    }
    // Per instance its type first, then extras; each item's lines in time order.
    let order = |l: &Line| {
        let u = &l.usage;
        (u.instance_name.clone(), u.instance_id, is_extra(&u.item), u.item.clone(), l.from)
    };
    lines.sort_by_cached_key(order);
    lines
}

/// How an item reads on an invoice: the type's name, `stopped disk` or `public IP`.
pub(crate) fn item_label(item: &str) -> String {
    match item.strip_prefix("type:") {
        Some(name) => name.to_owned(),
        None if item == STOPPED_DISK => "stopped disk".to_owned(),
        None if item == PUBLIC_IP => "public IP".to_owned(),
        None => item.to_owned(),
    }
}

/// Usage of one UTC day at one price and quantity (for the daily charts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DayUse {
    pub day: i64,
    pub gpu_model: String,
    pub micros_per_hour: i64,
    pub quantity: i64,
    pub seconds: i64,
}

impl DayUse {
    pub fn of(u: &Usage) -> DayUse {
        DayUse {
            day: day_start(u.start),
            gpu_model: u.gpu_model.clone(),
            micros_per_hour: u.micros_per_hour,
            quantity: u.quantity,
            seconds: u.end - u.start,
        }
    }

    pub fn exact(&self) -> Exact {
        exact(self.micros_per_hour, self.quantity, self.seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(entries: &[(&str, i64)]) -> Vec<(String, i64)> {
        entries.iter().map(|(s, t)| ((*s).to_owned(), *t)).collect()
    }

    const D: i64 = 20_000 * DAY; // a UTC midnight

    #[test]
    fn billed_time_runs_from_entering_a_billed_state_to_leaving_it() {
        let log = log(&[
            ("provisioning", D + 10),
            ("running", D + 20),
            ("stopping", D + 100),
            ("stopped", D + 130),
            ("starting", D + 200),
            ("running", D + 210),
            ("deleting", D + 300),
            ("deleted", D + 305),
        ]);
        let p = pieces(&log, &[], D + 10_000);
        let typed: i64 =
            p.iter().filter(|p| p.billed == Billed::Type).map(|p| p.end - p.start).sum();
        let disk: i64 =
            p.iter().filter(|p| p.billed == Billed::StoppedDisk).map(|p| p.end - p.start).sum();
        assert_eq!(typed, 110 + 90);
        assert_eq!(disk, 80);
    }

    #[test]
    fn open_time_is_cut_at_each_utc_midnight() {
        let p = pieces(&log(&[("running", D - 100)]), &[], D + DAY + 50);
        assert_eq!(
            p,
            vec![
                Piece { billed: Billed::Type, start: D - 100, end: D },
                Piece { billed: Billed::Type, start: D, end: D + DAY },
                Piece { billed: Billed::Type, start: D + DAY, end: D + DAY + 50 },
            ]
        );
        // Nothing past the open end, and nothing for a log that ends unbilled.
        assert!(pieces(&log(&[("running", D)]), &[], D - 5).is_empty());
        assert!(pieces(&log(&[("running", D), ("deleted", D)]), &[], D + 99).is_empty());
    }

    #[test]
    fn a_public_ip_is_billed_while_attached_whatever_the_state() {
        let states = log(&[("running", D + 10), ("stopped", D + 100), ("deleted", D + 500)]);
        let ips = [(true, D + 50), (false, D + 200), (true, D + 300), (false, D + 300)];
        let ip: Vec<_> = pieces(&states, &ips, D + 1_000)
            .into_iter()
            .filter(|p| p.billed == Billed::PublicIp)
            .map(|p| (p.start, p.end))
            .collect();
        assert_eq!(ip, vec![(D + 50, D + 200)], "a detach in the same second bills nothing");
        // Still attached: open until the end given, cut at midnight like a state.
        let open = pieces(&[], &[(true, D - 10)], D + 20);
        assert_eq!(
            open,
            vec![
                Piece { billed: Billed::PublicIp, start: D - 10, end: D },
                Piece { billed: Billed::PublicIp, start: D, end: D + 20 },
            ]
        );
    }

    #[test]
    fn months_start_on_the_first_at_midnight_utc() {
        // D is 2024-10-04; the month began 3 days before.
        assert_eq!(month_start(D + 5_000), D - 3 * DAY);
        assert_eq!(month_start(D - 3 * DAY), D - 3 * DAY);
        assert_eq!(month_start(D - 3 * DAY - 1), D - 33 * DAY);
    }

    fn usage(item: &str, quantity: i64, start: i64, end: i64) -> Usage {
        Usage {
            instance_id: Uuid::nil(),
            tenant_id: Uuid::nil(),
            instance_name: "vm".into(),
            item: item.into(),
            quantity,
            gpu_model: String::new(),
            gpu_count: 0,
            scalable_unit: None,
            launched_by: Uuid::nil(),
            start,
            end,
            micros_per_hour: 0,
        }
    }

    #[test]
    fn a_price_change_cuts_the_record_and_splits_the_line() {
        let mut prices = Prices::default();
        prices.0.insert("type:t".into(), vec![(0, 2_490_000), (D + 3_600, 3_000_000)]);
        let mut live = prices.cut(usage("type:t", 1, D, D + 1_800));
        live.extend(prices.cut(usage("type:t", 1, D + 1_800, D + 7_200)));
        assert_eq!(live.len(), 3, "the second piece is cut at the change: {live:?}");
        let lines = merge_lines(Vec::new(), live);
        let got: Vec<_> = lines
            .iter()
            .map(|l| (l.seconds, l.usage.micros_per_hour, l.invoice_line().cents))
            .collect();
        assert_eq!(got, vec![(3_600, 2_490_000, 249), (3_600, 3_000_000, 300)]);
    }

    #[test]
    fn rounding_is_half_up_on_the_exact_amount_of_a_line() {
        // 1 second at 0.018 per hour is 0.000005: no cent.
        assert_eq!(cents(18_000), 0);
        // 0.005 exactly rounds up to 0.01.
        assert_eq!(cents(50 * 3_600 * 100), 1);
        assert_eq!(cents(49 * 3_600 * 100), 0);
        // A stopped 1,600 GiB disk for a day at 137 micros per GiB-hour: 5.2608 → 5.26.
        assert_eq!(cents(exact(137, 1_600, DAY)), 526);
    }
}
