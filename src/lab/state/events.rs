//! core/v1 Events: recording one (with the recorder's folding of repeats) and linking
//! a scenario's events to the objects they name.

use chrono::Duration;
use serde_json::{Value, json};

use super::State;
use super::json::str_at;
use crate::lab::clock::{parse_ts, ts};
use crate::lab::resources;

impl State {
    /// Record a core/v1 Event about an object; repeats within a minute are folded into
    /// the existing event (the event recorder's aggregation, simplified).
    pub fn record_event(
        &mut self,
        involved: &Value,
        etype: &str,
        reason: &str,
        message: &str,
        component: &str,
    ) {
        let ns = str_at(involved, "/metadata/namespace").to_string();
        let ns = if ns.is_empty() {
            "default".to_string()
        } else {
            ns
        };
        let uid = str_at(involved, "/metadata/uid").to_string();
        let now = self.now();
        let same = |e: &Value| {
            e.pointer("/involvedObject/uid").and_then(Value::as_str) == Some(&uid)
                && e["reason"] == reason
                && e["message"] == message
        };
        let existing = if uid.is_empty() {
            self.store
                .list("events", Some(&ns))
                .find(|e| same(e))
                .cloned()
        } else {
            self.store
                .index
                .events_about(&uid)
                .into_iter()
                .filter(|(_, ens, _)| *ens == ns)
                .filter_map(|(r, ens, name)| self.store.get(&r, &ens, &name))
                .find(|e| same(e))
                .cloned()
        };
        if let Some(mut e) = existing {
            let last = e["lastTimestamp"]
                .as_str()
                .and_then(parse_ts)
                .unwrap_or(now);
            if now - last < Duration::minutes(1) {
                return;
            }
            e["count"] = json!(e["count"].as_i64().unwrap_or(1).saturating_add(1));
            e["lastTimestamp"] = json!(ts(now));
            let name = str_at(&e, "/metadata/name").to_string();
            self.store.update("events", &ns, &name, e);
            return;
        }
        let events = resources::by_key("events").expect("invariant: events are a served resource");
        let suffix = format!(
            "{:016x}",
            self.store.rv() * 7919 + now.timestamp_subsec_nanos() as u64
        );
        let ev = json!({
            "metadata": {"name": format!("{}.{}", str_at(involved, "/metadata/name"), suffix), "namespace": ns},
            "involvedObject": {
                "kind": involved["kind"], "apiVersion": involved["apiVersion"],
                "name": involved["metadata"]["name"], "namespace": involved["metadata"]["namespace"],
                "uid": involved["metadata"]["uid"], "resourceVersion": involved["metadata"]["resourceVersion"],
            },
            "reason": reason, "message": message, "type": etype,
            "source": {"component": component},
            "firstTimestamp": ts(now), "lastTimestamp": ts(now), "count": 1,
            "reportingComponent": component, "reportingInstance": "",
        });
        let _ = self.store.create(events, &ns, ev, now, false);
    }

    /// Fill in `uid` of scenario events' involvedObject from the objects they name.
    pub fn link_event_uids(&mut self) {
        for e in self.store.list_owned("events", None) {
            if e.pointer("/involvedObject/uid")
                .and_then(Value::as_str)
                .is_some_and(|u| !u.is_empty())
            {
                continue;
            }
            let kind = str_at(&e, "/involvedObject/kind");
            let api = e
                .pointer("/involvedObject/apiVersion")
                .and_then(Value::as_str)
                .unwrap_or("v1");
            let Some(def) = resources::by_kind(api, kind)
                .or_else(|| resources::RESOURCES.iter().find(|r| r.kind == kind))
            else {
                continue;
            };
            let ons = if def.namespaced {
                str_at(&e, "/involvedObject/namespace")
            } else {
                ""
            };
            let Some(target) = self
                .store
                .get(&def.key(), ons, str_at(&e, "/involvedObject/name"))
            else {
                continue;
            };
            let mut e2 = e.clone();
            e2["involvedObject"]["uid"] = target["metadata"]["uid"].clone();
            e2["involvedObject"]["apiVersion"] = json!(def.api_version());
            self.store.update(
                "events",
                str_at(&e, "/metadata/namespace"),
                str_at(&e, "/metadata/name"),
                e2,
            );
        }
    }
}
