//! The lab's Prometheus alerting rules: a scenario's `alerts:` evaluated on the
//! lab's virtual clock at every scrape point, writing the synthetic series a real
//! Prometheus writes, `ALERTS{alertname, alertstate="pending"|"firing", …} 1` and
//! `ALERTS_FOR_STATE{alertname, …} <Unix seconds the alert became active>`.
//!
//! The state machine follows Prometheus' `rules/alerting.go` (`AlertingRule.Eval`):
//! each label set the expression answers becomes an alert, pending with `ActiveAt`
//! = the evaluation time; it fires at the first evaluation where
//! `ts - ActiveAt >= for` (so with `for: 0` in the same evaluation); when the
//! expression stops answering it, a pending alert is dropped and a firing one
//! resolved, and a later answer starts a new alert with a new `ActiveAt`. The alert's
//! labels are the answer's labels without `__name__`, the rule's `labels`, and
//! `alertname`. A series that was written at the previous evaluation and is not
//! written at this one gets a staleness marker, as the rule group does, so
//! `ALERTS{alertstate="pending"}` is gone the moment the alert fires.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::history::Series;
use super::promql::{self, Eval, Expr, Labels, Val};
use super::scenario_model::Span;

/// A PromQL expression, parsed while the scenario is read (so a mistake is reported
/// with its line and column).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(try_from = "String")]
#[schemars(with = "String")]
pub struct PromExpr(pub String, #[schemars(skip)] pub Expr);

impl TryFrom<String> for PromExpr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let e = promql::parse(&s).map_err(|e| {
            format!(
                "alert expression {s:?}: {e}; expected PromQL such as `launch_success_rate < 0.5`"
            )
        })?;
        Ok(PromExpr(s, e))
    }
}

/// An alerting rule, as in a Prometheus rules file (`alert`, `expr`, `for`,
/// `labels`), evaluated by the lab at every scrape point (15 s).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// The alert's name: the `alertname` label.
    pub name: String,
    /// PromQL; every sample it answers is an active alert.
    pub expr: PromExpr,
    /// How long the expression must keep answering before the alert fires (pending
    /// until then); default `0s`: it fires at the first evaluation.
    #[serde(default, rename = "for")]
    pub hold: Option<Span>,
    /// Labels added to every alert of this rule (plain values; not templated).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations (`summary`, `runbook_url`); kept for the reader, not served.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl AlertRule {
    /// What is wrong with the rule that parsing cannot see, if anything.
    pub fn check(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("an alert needs a name".into());
        }
        for k in self.labels.keys() {
            let mut chars = k.chars();
            let ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok || k.starts_with("__") || k == "alertname" || k == "alertstate" {
                return Err(format!(
                    "alert {}: label name {k:?} is not allowed (a label name is [a-zA-Z_][a-zA-Z0-9_]*, not `__…`, `alertname` or `alertstate`)",
                    self.name
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Active {
    /// The alert's labels: the answer's labels without `__name__`, the rule's
    /// labels, `alertname`.
    labels: Labels,
    active_at_ms: i64,
    firing: bool,
}

/// The state of every rule between evaluations, and where their series live.
#[derive(Debug, Clone, Default)]
struct RuleState {
    /// Per rule: the answer's labels (with `__name__`, as Prometheus hashes them) →
    /// the active alert.
    active: Vec<BTreeMap<Labels, Active>>,
    /// The series written at the last evaluation.
    written: BTreeSet<Labels>,
}

/// Every rule of a scenario, with its alerts' state and series.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<AlertRule>,
    state: RuleState,
    /// The last evaluation's time and the state just before it, so the stopped
    /// clock's re-read point ([`super::history::History::refresh`]) is evaluated again.
    last: Option<(i64, RuleState)>,
    /// Where each ALERTS/ALERTS_FOR_STATE label set's series is in the history.
    index: BTreeMap<Labels, usize>,
}

fn to_json(l: &Labels) -> Map<String, Value> {
    l.iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

impl Rules {
    pub fn new(rules: Vec<AlertRule>) -> Rules {
        let n = rules.len();
        Rules {
            rules,
            state: RuleState {
                active: vec![BTreeMap::new(); n],
                written: BTreeSet::new(),
            },
            last: None,
            index: BTreeMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The time of the last evaluation (Unix ms).
    pub fn last_eval(&self) -> Option<i64> {
        self.last.as_ref().map(|(t, _)| *t)
    }

    /// Evaluate every rule at `t` (Unix ms, a scrape point at or after the last
    /// evaluation) over `series`, appending the alerts' samples to it. Evaluating
    /// the last evaluation's time again replaces what that evaluation wrote.
    pub fn eval(&mut self, series: &mut Vec<Series>, t: i64) {
        if self.rules.is_empty() {
            return;
        }
        match &self.last {
            Some((last, before)) if *last == t => {
                self.state = before.clone();
                for &i in self.index.values() {
                    let s: &mut VecDeque<(i64, f64)> = &mut series[i].samples;
                    while s.back().is_some_and(|p| p.0 == t) {
                        s.pop_back();
                    }
                }
            }
            Some((last, _)) if *last > t => return,
            _ => {}
        }
        self.last = Some((t, self.state.clone()));
        let mut out: Vec<(Labels, f64)> = Vec::new();
        for (r, rule) in self.rules.iter().enumerate() {
            // A rule whose expression fails (a many-to-many match) answers nothing
            // at this evaluation, as Prometheus marks it unhealthy and writes nothing.
            let answer = match (Eval { series: &*series }).eval(&rule.expr.1, t) {
                Ok(Val::Vector(v)) => v,
                Ok(Val::Scalar(x)) => vec![(Labels::new(), x)],
                _ => Vec::new(),
            };
            let active = &mut self.state.active[r];
            let mut seen = BTreeSet::new();
            for (l, _) in answer {
                seen.insert(l.clone());
                if active.contains_key(&l) {
                    continue;
                }
                let mut labels = l.clone();
                labels.remove("__name__");
                for (k, v) in &rule.labels {
                    labels.insert(k.clone(), v.clone());
                }
                labels.insert("alertname".into(), rule.name.clone());
                active.insert(
                    l,
                    Active {
                        labels,
                        active_at_ms: t,
                        firing: false,
                    },
                );
            }
            // Resolved alerts are not kept: the lab sends no notifications, and an
            // inactive alert writes no series.
            active.retain(|l, _| seen.contains(l));
            let hold = rule.hold.map_or(0, |h| h.0.num_milliseconds());
            for a in active.values_mut() {
                if !a.firing && t - a.active_at_ms >= hold {
                    a.firing = true;
                }
                let mut alerts = a.labels.clone();
                alerts.insert("__name__".into(), "ALERTS".into());
                alerts.insert(
                    "alertstate".into(),
                    if a.firing { "firing" } else { "pending" }.into(),
                );
                out.push((alerts, 1.0));
                let mut for_state = a.labels.clone();
                for_state.insert("__name__".into(), "ALERTS_FOR_STATE".into());
                // Prometheus writes `float64(ActiveAt.Unix())`: whole seconds.
                out.push((for_state, a.active_at_ms.div_euclid(1000) as f64));
            }
        }
        let now: BTreeSet<Labels> = out.iter().map(|(l, _)| l.clone()).collect();
        let stale: Vec<Labels> = self.state.written.difference(&now).cloned().collect();
        for l in stale {
            out.push((l, f64::from_bits(promql::STALE_NAN_BITS)));
        }
        for (l, v) in out {
            let i = *self.index.entry(l.clone()).or_insert_with(|| {
                series.push(Series {
                    labels: to_json(&l),
                    samples: VecDeque::new(),
                });
                series.len() - 1
            });
            series[i].samples.push_back((t, v));
        }
        self.state.written = now;
    }

    /// The indexes of the alerts' series in the history.
    pub fn series_indexes(&self) -> impl Iterator<Item = usize> + '_ {
        self.index.values().copied()
    }
}
