//! What the kubelet reports about a running pod's containers: Ready once the
//! readiness delay has passed, or what a pod fault makes of them — a crash loop
//! restarted with the kubelet's back-off, an OOM kill, a failing readiness probe —
//! and the recovery when the fault's window ends.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::kubelet::{container_names, image_of};
use super::*;
use crate::lab::clock::{parse_ts, ts};
use crate::lab::scenario_model::PodFaultKind;
use crate::lab::state::{ActivePodFault, State, str_at};

/// The kubelet's crash back-off: 10 s, doubling, at most 5 minutes
/// (pkg/kubelet/kubelet.go `backOffPeriod`, `MaxContainerBackOff`).
pub const BACKOFF_INITIAL: Duration = Duration::seconds(10);
pub const BACKOFF_MAX: Duration = Duration::seconds(300);

/// Restarts done `elapsed` after the first crash, the back-off now running and when
/// the next restart comes. The first crash is at 0; restart k follows k back-offs.
pub fn restarts_after(elapsed: Duration) -> (i64, Duration, Duration) {
    let mut restarts = 0;
    let mut delay = BACKOFF_INITIAL;
    let mut next = delay;
    // Doubling reaches the cap after 5 steps; from there it is arithmetic.
    while next <= elapsed && delay < BACKOFF_MAX {
        restarts += 1;
        delay = (delay * 2).min(BACKOFF_MAX);
        next += delay;
    }
    if next <= elapsed {
        // Capped at a million restarts (almost ten years) so no arithmetic overflows.
        let more = ((elapsed - next).num_seconds() / BACKOFF_MAX.num_seconds() + 1).min(1_000_000);
        restarts += more;
        next += BACKOFF_MAX * more as i32;
    }
    (restarts, delay, next)
}

/// kubelet's back-off in Go's duration format (`10s`, `2m40s`, `5m0s`).
fn go_duration(d: Duration) -> String {
    let s = d.num_seconds();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{}s", s / 60, s % 60)
    }
}

/// Bring a Running pod's container statuses and Ready condition to what the faults
/// and the readiness delay say now; register the next moment that changes.
pub(super) fn running_pod(st: &mut State, pod: &Value) {
    let now = st.now();
    let (ns, name) = (
        str_at(pod, "/metadata/namespace").to_string(),
        str_at(pod, "/metadata/name").to_string(),
    );
    let started = pod
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .and_then(parse_ts)
        .unwrap_or(now);
    // An image pull fault does not touch a container that already runs.
    let fault: Option<ActivePodFault> = st
        .pod_faults
        .iter()
        .filter(|f| f.kind != PodFaultKind::ImagePull)
        .find(|f| f.namespace == ns && f.from <= now && f.scope.matches(pod))
        .cloned();
    let upcoming: Vec<DateTime<Utc>> = st
        .pod_faults
        .iter()
        .filter(|f| f.kind != PodFaultKind::ImagePull)
        .filter(|f| f.namespace == ns && f.from > now && f.scope.matches(pod))
        .map(|f| f.from)
        .collect();
    for t in upcoming {
        st.wake_at(t);
    }
    let mut p = pod.clone();
    let uid = str_at(pod, "/metadata/uid").to_string();
    let mut ready = true;
    let mut running_since = started;
    let mut statuses: Vec<Value> = Vec::new();
    let mut event: Option<(&str, String)> = None;
    for c in container_names(pod) {
        let mut s = json!({"name": c, "image": image_of(pod, &c), "restartCount": 0});
        match &fault {
            Some(f) if f.until.is_none_or(|u| now < u) => {
                if let Some(u) = f.until {
                    st.wake_at(u);
                }
                match &f.kind {
                    PodFaultKind::CrashLoop { exit_code, reason } => {
                        let t0 = f.from.max(started);
                        let (restarts, delay, next) = restarts_after(now - t0);
                        st.wake_at(t0 + next);
                        let last = t0 + (next - delay);
                        let last = if restarts == 0 { t0 } else { last };
                        s["restartCount"] = json!(restarts);
                        s["ready"] = json!(false);
                        s["started"] = json!(false);
                        s["state"] = json!({"waiting": {"reason": "CrashLoopBackOff",
                            "message": format!("back-off {} restarting failed container={c} pod={name}_{ns}({uid})", go_duration(delay))}});
                        s["lastState"] = json!({"terminated": {"exitCode": exit_code, "reason": reason,
                            "startedAt": ts(last), "finishedAt": ts(last)}});
                        ready = false;
                        event = Some((
                            "BackOff",
                            format!(
                                "Back-off restarting failed container {c} in pod {name}_{ns}({uid})"
                            ),
                        ));
                        if reason == "OOMKilled" {
                            oom_event(st, pod, &c);
                        }
                    }
                    PodFaultKind::ImagePull => {}
                    PodFaultKind::NotReady => {
                        s["ready"] = json!(false);
                        s["started"] = json!(true);
                        s["state"] = json!({"running": {"startedAt": ts(started)}});
                        ready = false;
                        event = Some((
                            "Unhealthy",
                            "Readiness probe failed: HTTP probe failed with statuscode: 503".into(),
                        ));
                    }
                }
            }
            Some(f) => {
                // The fault ended: a crash-looping container's last restart succeeded.
                let until = f.until.expect("invariant: an ended fault has an end");
                if let PodFaultKind::CrashLoop { exit_code, reason } = &f.kind {
                    let t0 = f.from.max(started);
                    let (restarts, _, _) = restarts_after(until - t0);
                    s["restartCount"] = json!(restarts + 1);
                    s["lastState"] = json!({"terminated": {"exitCode": exit_code, "reason": reason,
                        "finishedAt": ts(until)}});
                    running_since = until;
                }
                healthy(st, &mut s, running_since, now, &mut ready);
            }
            None => healthy(st, &mut s, running_since, now, &mut ready),
        }
        statuses.push(s);
    }
    p["status"]["containerStatuses"] = json!(statuses);
    let mut conds: Vec<Value> = p
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let (status, reason, msg) = if ready {
        ("True", "", "")
    } else {
        (
            "False",
            "ContainersNotReady",
            "containers with unready status",
        )
    };
    let now_s = ts(now);
    set_condition(&mut conds, "Ready", status, reason, msg, &now_s);
    set_condition(&mut conds, "ContainersReady", status, reason, msg, &now_s);
    p["status"]["conditions"] = json!(conds);
    if p != *pod {
        st.store.update("pods", &ns, &name, p.clone());
    }
    if let Some((reason, msg)) = event {
        st.record_event(&p, "Warning", reason, &msg, "kubelet");
    }
}

/// How long the kubelet shows `ErrImagePull` after a failed pull before the pod's
/// next sync shows `ImagePullBackOff`.
const ERR_IMAGE_PULL_SHOWN: Duration = Duration::seconds(5);

/// A pending pod whose image cannot be pulled now: its containers wait in
/// `ErrImagePull` right after each attempt and in `ImagePullBackOff` between them,
/// the attempts spaced by the kubelet's back-off (10 s doubling to 5 minutes). True
/// when a fault holds the pod (the kubelet must not start it).
pub(super) fn image_pull_failing(st: &mut State, pod: &Value) -> bool {
    let now = st.now();
    let ns = str_at(pod, "/metadata/namespace").to_string();
    let Some(f) = st
        .pod_faults
        .iter()
        .find(|f| {
            f.kind == PodFaultKind::ImagePull
                && f.namespace == ns
                && f.from <= now
                && f.until.is_none_or(|u| now < u)
                && f.scope.matches(pod)
        })
        .cloned()
    else {
        return false;
    };
    if let Some(u) = f.until {
        st.wake_at(u);
    }
    let name = str_at(pod, "/metadata/name").to_string();
    let created = pod
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(parse_ts)
        .unwrap_or(now);
    let t0 = f.from.max(created);
    let (attempts, delay, next) = restarts_after(now - t0);
    let last = if attempts == 0 {
        t0
    } else {
        t0 + (next - delay)
    };
    let fresh = now - last < ERR_IMAGE_PULL_SHOWN;
    st.wake_at(t0 + next);
    if fresh {
        st.wake_at(last + ERR_IMAGE_PULL_SHOWN);
    }
    let failing = |img: &str| match &f.scope {
        crate::lab::scenario_model::PodScope::Image(pat) => {
            crate::lab::scenario_model::image_matches(pat, img)
        }
        _ => true,
    };
    let mut statuses = Vec::new();
    let mut bad_images = Vec::new();
    for c in container_names(pod) {
        let image = image_of(pod, &c);
        let img = image.as_str().unwrap_or("").to_string();
        let waiting = if !failing(&img) {
            json!({"reason": "ContainerCreating"})
        } else if fresh {
            bad_images.push(img.clone());
            json!({"reason": "ErrImagePull", "message": pull_error(&img)})
        } else {
            bad_images.push(img.clone());
            json!({"reason": "ImagePullBackOff",
                "message": format!("Back-off pulling image \"{img}\"")})
        };
        statuses.push(
            json!({"name": c, "image": image, "imageID": "", "ready": false,
            "restartCount": 0, "started": false, "state": {"waiting": waiting}}),
        );
    }
    let mut p = pod.clone();
    let now_s = ts(now);
    p["status"]["phase"] = json!("Pending");
    let node = str_at(pod, "/spec/nodeName").to_string();
    p["status"]["hostIP"] = json!(super::kubelet::node_ip(st, &node));
    if p.pointer("/status/startTime").is_none() {
        p["status"]["startTime"] = json!(ts(t0));
    }
    p["status"]["containerStatuses"] = json!(statuses);
    let mut conds: Vec<Value> = p
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for t in ["Initialized", "PodScheduled"] {
        set_condition(&mut conds, t, "True", "", "", &now_s);
    }
    let msg = format!(
        "containers with unready status: [{}]",
        container_names(pod).join(" ")
    );
    for t in ["Ready", "ContainersReady"] {
        set_condition(&mut conds, t, "False", "ContainersNotReady", &msg, &now_s);
    }
    p["status"]["conditions"] = json!(conds);
    if p != *pod {
        st.store.update("pods", &ns, &name, p.clone());
        for img in bad_images {
            if fresh {
                st.record_event(
                    &p,
                    "Normal",
                    "Pulling",
                    &format!("Pulling image \"{img}\""),
                    "kubelet",
                );
                let why = format!("Failed to pull image \"{img}\": {}", pull_error(&img));
                st.record_event(&p, "Warning", "Failed", &why, "kubelet");
                st.record_event(&p, "Warning", "Failed", "Error: ErrImagePull", "kubelet");
            } else {
                let why = format!("Back-off pulling image \"{img}\"");
                st.record_event(&p, "Normal", "BackOff", &why, "kubelet");
                st.record_event(
                    &p,
                    "Warning",
                    "Failed",
                    "Error: ImagePullBackOff",
                    "kubelet",
                );
            }
        }
    }
    true
}

/// containerd's error for an image that does not exist, as the kubelet reports it.
fn pull_error(img: &str) -> String {
    let full = if img.contains('/') && img.split('/').next().is_some_and(|h| h.contains('.')) {
        img.to_string()
    } else if img.contains('/') {
        format!("docker.io/{img}")
    } else {
        format!("docker.io/library/{img}")
    };
    format!(
        "rpc error: code = NotFound desc = failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\": {full}: not found"
    )
}

/// A running container, Ready once `ready_after` has passed since it started.
fn healthy(
    st: &mut State,
    s: &mut Value,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    ready: &mut bool,
) {
    let due = since + st.ready_after;
    let is_ready = now >= due;
    if !is_ready {
        st.wake_at(due);
        *ready = false;
    }
    s["ready"] = json!(is_ready);
    s["started"] = json!(true);
    s["state"] = json!({"running": {"startedAt": ts(since)}});
}

/// node-problem-detector's kernel monitor reports the OOM kill on the node.
fn oom_event(st: &mut State, pod: &Value, container: &str) {
    let node = str_at(pod, "/spec/nodeName").to_string();
    if let Some(n) = st.store.get("nodes", "", &node).cloned() {
        let msg = format!(
            "Memory cgroup out of memory: Killed process ({container}) of pod {}/{}",
            str_at(pod, "/metadata/namespace"),
            str_at(pod, "/metadata/name")
        );
        st.record_event(&n, "Warning", "OOMKilling", &msg, "kernel-monitor");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_follow_the_kubelet_back_off() {
        let s = Duration::seconds;
        assert_eq!(restarts_after(s(0)), (0, s(10), s(10)));
        assert_eq!(restarts_after(s(10)), (1, s(20), s(30)));
        assert_eq!(restarts_after(s(29)).0, 1);
        assert_eq!(restarts_after(s(30)), (2, s(40), s(70)));
        // 10+20+40+80+160 = 310: the fifth restart; then every 5 minutes.
        assert_eq!(restarts_after(s(310)), (5, s(300), s(610)));
        assert_eq!(restarts_after(s(610)).0, 6);
        assert_eq!(restarts_after(s(3600)).0, 15);
    }
}
