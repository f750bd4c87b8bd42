//! Metering and rating, as pure functions: an instance's state log becomes pieces of billed
//! time (whole seconds, cut at UTC midnights), and pieces with the price versions in effect
//! become invoice lines rounded once per line. Storing the pieces is `datastore::usage`'s;
//! when it happens, `background::metering`'s.

use std::collections::{BTreeMap, HashMap};

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

/// The price item of an instance type, per hour running.
pub(crate) fn type_item(instance_type: &str) -> String {
    format!("type:{instance_type}")
}

/// What an instance pays for in a state: its type while its VM is up; only the disk it keeps
/// while stopped; nothing while it is being made, has failed or is going.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Billed {
    Type,
    StoppedDisk,
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

/// The billed pieces of an instance's state log (`(state, unix seconds)`, in the order the
/// states were entered): each billed state from when it was entered until the next change;
/// the last one, still open, until `open_until` if that is later. Cut at every UTC midnight.
pub(crate) fn pieces(log: &[(String, i64)], open_until: i64) -> Vec<Piece> {
    let mut out = Vec::new();
    for (i, (state, entered)) in log.iter().enumerate() {
        let Some(billed) = billed(state) else { continue };
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

/// A stored piece with what the views group it by (a `usage_record` row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Usage {
    pub instance_id: Uuid,
    pub tenant_id: Uuid,
    pub instance_name: String,
    pub item: String,
    /// 1 for an instance type; GiB for a stopped disk.
    pub quantity: i64,
    pub gpu_model: String,
    pub gpu_count: i32,
    pub scalable_unit: Option<i32>,
    pub launched_by: Uuid,
    pub start: i64,
    pub end: i64,
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

    /// `[start, end)` cut where the item's price changes, each part with its price.
    pub fn split(&self, item: &str, start: i64, end: i64) -> Vec<(i64, i64, i64)> {
        let mut parts = Vec::new();
        let mut from = start;
        let changes = self.0.get(item).map(Vec::as_slice).unwrap_or_default();
        for (at, _) in changes.iter().filter(|(at, _)| *at > start && *at < end) {
            parts.push((from, *at, self.at(item, from)));
            from = *at;
        }
        parts.push((from, end, self.at(item, from)));
        parts
    }
}

/// An exact amount: micros × quantity × seconds, that is 3,600 times the amount in micros
/// (kept exact until a line or a total is rounded).
pub(crate) type Exact = i128;

/// An exact amount in cents, rounded half up.
pub(crate) fn cents(exact: Exact) -> i64 {
    let per_cent = 3_600 * i128::from(MICROS_PER_CENT);
    ((exact + per_cent / 2).div_euclid(per_cent)) as i64
}

/// A piece at one price.
pub(crate) struct Rated<'a> {
    pub usage: &'a Usage,
    pub start: i64,
    pub end: i64,
    pub micros_per_hour: i64,
}

impl Rated<'_> {
    pub fn exact(&self) -> Exact {
        i128::from(self.micros_per_hour)
            * i128::from(self.usage.quantity)
            * i128::from(self.end - self.start)
    }
}

/// Every usage piece cut at price changes, each part at its price.
pub(crate) fn rate<'a>(usage: &'a [Usage], prices: &Prices) -> Vec<Rated<'a>> {
    usage
        .iter()
        .flat_map(|u| {
            prices.split(&u.item, u.start, u.end).into_iter().map(move |(start, end, micros)| {
                Rated { usage: u, start, end, micros_per_hour: micros }
            })
        })
        .collect()
}

/// How an item reads on an invoice: the type's name, or `stopped disk`.
pub(crate) fn item_label(item: &str) -> String {
    match item.strip_prefix("type:") {
        Some(name) => name.to_owned(),
        None if item == STOPPED_DISK => "stopped disk".to_owned(),
        None => item.to_owned(),
    }
}

/// Invoice lines: one per instance, item, quantity and price, each rounded once, with the
/// usage piece it came from (for grouping). In instance name, item and time order.
pub(crate) fn invoice_lines<'a>(rated: &[Rated<'a>]) -> Vec<(InvoiceLine, &'a Usage)> {
    let mut lines: BTreeMap<(String, Uuid, String, i64, i64), (InvoiceLine, Exact, &Usage)> =
        BTreeMap::new();
    for r in rated {
        let u = r.usage;
        let key =
            (u.instance_name.clone(), u.instance_id, u.item.clone(), u.quantity, r.micros_per_hour);
        let entry = lines.entry(key).or_insert_with(|| {
            let line = InvoiceLine {
                instance_id: InstanceUuid::from_untyped_uuid(u.instance_id),
                instance_name: u.instance_name.clone(),
                item: item_label(&u.item),
                quantity: u.quantity,
                from: r.start,
                to: r.end,
                seconds: 0,
                micros_per_hour: r.micros_per_hour,
                cents: 0,
            };
            (line, 0, u)
        });
        entry.0.from = entry.0.from.min(r.start);
        entry.0.to = entry.0.to.max(r.end);
        entry.0.seconds += r.end - r.start;
        entry.1 += r.exact();
    }
    let mut out: Vec<_> = lines
        .into_values()
        .map(|(mut line, exact, usage)| {
            line.cents = cents(exact);
            (line, usage)
        })
        .collect();
    out.sort_by(|(a, _), (b, _)| {
        (&a.instance_name, a.instance_id, &a.item, a.from).cmp(&(
            &b.instance_name,
            b.instance_id,
            &b.item,
            b.from,
        ))
    });
    out
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
        let p = pieces(&log, D + 10_000);
        let typed: i64 =
            p.iter().filter(|p| p.billed == Billed::Type).map(|p| p.end - p.start).sum();
        let disk: i64 =
            p.iter().filter(|p| p.billed == Billed::StoppedDisk).map(|p| p.end - p.start).sum();
        assert_eq!(typed, 110 + 90);
        assert_eq!(disk, 80);
    }

    #[test]
    fn open_time_is_cut_at_each_utc_midnight() {
        let p = pieces(&log(&[("running", D - 100)]), D + DAY + 50);
        assert_eq!(
            p,
            vec![
                Piece { billed: Billed::Type, start: D - 100, end: D },
                Piece { billed: Billed::Type, start: D, end: D + DAY },
                Piece { billed: Billed::Type, start: D + DAY, end: D + DAY + 50 },
            ]
        );
        // Nothing past the open end, and nothing for a log that ends unbilled.
        assert!(pieces(&log(&[("running", D)]), D - 5).is_empty());
        assert!(pieces(&log(&[("running", D), ("deleted", D)]), D + 99).is_empty());
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
        }
    }

    #[test]
    fn a_price_change_splits_the_line_and_each_line_rounds_once() {
        let mut prices = Prices::default();
        prices.0.insert("type:t".into(), vec![(0, 2_490_000), (D + 3_600, 3_000_000)]);
        // Two pieces before the change (one second each way of the rounding) and one after.
        let usage =
            vec![usage("type:t", 1, D, D + 1_800), usage("type:t", 1, D + 1_800, D + 7_200)];
        let rated = rate(&usage, &prices);
        assert_eq!(rated.len(), 3);
        let lines = invoice_lines(&rated);
        let got: Vec<_> =
            lines.iter().map(|(l, _)| (l.seconds, l.micros_per_hour, l.cents)).collect();
        assert_eq!(got, vec![(3_600, 2_490_000, 249), (3_600, 3_000_000, 300)]);
    }

    #[test]
    fn rounding_is_half_up_on_the_exact_amount() {
        // 1 second at 0.018 per hour is 0.000005: no cent.
        assert_eq!(cents(18_000), 0);
        // 0.005 exactly rounds up to 0.01.
        assert_eq!(cents(50 * 3_600 * 100), 1);
        assert_eq!(cents(49 * 3_600 * 100), 0);
        // A stopped 1,600 GiB disk for a day at 137 micros per GiB-hour: 5.2608 → 5.26.
        let u = usage(STOPPED_DISK, 1_600, D, D + DAY);
        let rated = Rated { usage: &u, start: u.start, end: u.end, micros_per_hour: 137 };
        assert_eq!(cents(rated.exact()), 526);
    }
}
