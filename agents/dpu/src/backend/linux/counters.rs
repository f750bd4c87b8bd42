//! Per-port counters read back from nftables: packets and bytes per allow rule, of
//! established traffic, of the default-deny drops and of dropped spoofed frames. They count
//! since the port's rules were last applied (replacing a chain's rules restarts them).

use std::collections::BTreeMap;

use serde_json::Value;

use agent_common::DriverError;

use super::firewall::TABLE;
use super::names;
pub use crate::model::Counter;
use crate::model::{PortTraffic, TrafficCounters};

/// One direction of a port's security group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectionCounters {
    /// Packets of connections already allowed.
    pub established: Counter,
    /// First packets allowed, by the rule's index in the list given to `rules_apply`.
    pub rules: BTreeMap<usize, Counter>,
    /// Packets no rule allowed.
    pub denied: Counter,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Traffic to the port.
    pub ingress: DirectionCounters,
    /// Traffic from the port.
    pub egress: DirectionCounters,
    /// Frames from the port with another MAC or IP than its own.
    pub spoofed: Counter,
}

impl DirectionCounters {
    /// Allowed (established and every rule's first packets) and dropped.
    fn summary(&self) -> TrafficCounters {
        let mut allowed = self.established;
        self.rules.values().for_each(|c| allowed.add(*c));
        TrafficCounters { allowed, dropped: self.denied }
    }
}

impl PortCounters {
    /// As the agent reports them: one rule counter for each of the port's `rules` rules
    /// (each index is in one direction's chain; a rule nft has not counted yet is zero).
    pub fn traffic(&self, rules: usize, rule_changes: u64) -> PortTraffic {
        let rule = |i: usize| {
            let mut count = Counter::default();
            for direction in [&self.ingress, &self.egress] {
                if let Some(c) = direction.rules.get(&i) {
                    count.add(*c);
                }
            }
            count
        };
        PortTraffic {
            ingress: self.ingress.summary(),
            egress: self.egress.summary(),
            spoofed: self.spoofed,
            rules: (0..rules).map(rule).collect(),
            rule_changes,
            simulated: false,
        }
    }
}

/// Picks the port's counters out of `nft -j list ruleset`. Errors: `Internal` if nft's
/// output is not its JSON.
pub fn parse(json: &str, port_id: &str) -> Result<PortCounters, DriverError> {
    let ruleset: Value = serde_json::from_str(json).map_err(|err| {
        DriverError::Internal(format!("nft printed a ruleset that is not JSON: {err}"))
    })?;
    let tag = names::port_tag(port_id);
    let (ingress, egress, spoof) = (format!("in_{tag}"), format!("eg_{tag}"), format!("as_{tag}"));
    let mut counters = PortCounters::default();
    let items = ruleset.get("nftables").and_then(Value::as_array).into_iter().flatten();
    for rule in items.filter_map(|item| item.get("rule")) {
        if rule.get("table").and_then(Value::as_str) != Some(TABLE) {
            continue;
        }
        let (Some(chain), Some(counter)) =
            (rule.get("chain").and_then(Value::as_str), rule_counter(rule))
        else {
            continue;
        };
        let comment = rule.get("comment").and_then(Value::as_str).unwrap_or_default();
        let direction = if chain == ingress {
            &mut counters.ingress
        } else if chain == egress {
            &mut counters.egress
        } else {
            if chain == spoof && comment == "spoofed" {
                counters.spoofed.add(counter);
            }
            continue;
        };
        match comment {
            "established" => direction.established.add(counter),
            "default deny" => direction.denied.add(counter),
            other => {
                if let Some(index) = other.strip_prefix("rule ").and_then(|i| i.parse().ok()) {
                    direction.rules.entry(index).or_default().add(counter);
                }
            }
        }
    }
    Ok(counters)
}

fn rule_counter(rule: &Value) -> Option<Counter> {
    let counter = rule.get("expr")?.as_array()?.iter().find_map(|e| e.get("counter"))?;
    Some(Counter {
        packets: counter.get("packets")?.as_u64()?,
        bytes: counter.get("bytes")?.as_u64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_found_by_chain_and_comment() {
        let json = r#"{"nftables":[{"metainfo":{"version":"1.0.6","json_schema_version":1}},
          {"rule":{"family":"inet","table":"dpu","chain":"in_123456789ab","handle":5,
            "comment":"rule 2","expr":[{"match":{}},{"counter":{"packets":3,"bytes":180}},{"accept":null}]}},
          {"rule":{"family":"inet","table":"dpu","chain":"in_123456789ab","handle":6,
            "comment":"default deny","expr":[{"counter":{"packets":4,"bytes":240}},{"drop":null}]}},
          {"rule":{"family":"inet","table":"dpu","chain":"eg_123456789ab","handle":7,
            "comment":"established","expr":[{"counter":{"packets":9,"bytes":900}},{"return":null}]}},
          {"rule":{"family":"bridge","table":"dpu","chain":"as_123456789ab","handle":8,
            "comment":"spoofed","expr":[{"counter":{"packets":1,"bytes":60}},{"drop":null}]}},
          {"rule":{"family":"bridge","table":"dpu","chain":"as_123456789ab","handle":9,
            "comment":"spoofed","expr":[{"counter":{"packets":2,"bytes":120}},{"drop":null}]}},
          {"rule":{"family":"inet","table":"dpu","chain":"in_00000000000","handle":10,
            "comment":"default deny","expr":[{"counter":{"packets":99,"bytes":99}},{"drop":null}]}}]}"#;
        let counters = parse(json, "0190c2f4-7a1b-7c3d-8e9f-0123456789ab").expect("parse");
        assert_eq!(counters.ingress.rules[&2], Counter { packets: 3, bytes: 180 });
        assert_eq!(counters.ingress.denied, Counter { packets: 4, bytes: 240 });
        assert_eq!(counters.egress.established, Counter { packets: 9, bytes: 900 });
        assert_eq!(counters.spoofed, Counter { packets: 3, bytes: 180 });
        assert!(counters.egress.rules.is_empty());

        let traffic = counters.traffic(4, 2);
        let c = |packets, bytes| Counter { packets, bytes };
        assert_eq!(traffic.ingress, TrafficCounters { allowed: c(3, 180), dropped: c(4, 240) });
        assert_eq!(traffic.egress, TrafficCounters { allowed: c(9, 900), dropped: c(0, 0) });
        assert_eq!(traffic.rules, [c(0, 0), c(0, 0), c(3, 180), c(0, 0)]);
        assert_eq!(
            (traffic.spoofed, traffic.rule_changes, traffic.simulated),
            (c(3, 180), 2, false)
        );
    }
}
