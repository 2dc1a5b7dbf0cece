//! `?watch=true`: newline-delimited watch events, replay from a resourceVersion,
//! bookmarks and watch-list (`sendInitialEvents`).
//!
//! A watch reads its events from the store's bounded history (docs/limits.md, "Lab
//! limits"), so it holds no copies of its own however slow its client is: one that
//! falls behind the history gets an `ERROR` event with 410 Expired and is closed,
//! and one that stops reading is closed after [`limits::SLOW_WATCHER`].

use std::convert::Infallible;
use std::time::Duration as StdDuration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use http::header;
use serde_json::{Value, json};

use super::read::selectors;
use super::{Params, Target, err};
use crate::lab::resources::ResourceDef;
use crate::lab::status::ApiError;
use crate::lab::store::{EventType, WatchEvent};
use crate::lab::table::{self, IncludeObject};
use crate::lab::{Lab, limits};

/// One line of a watch stream.
fn watch_line(
    etype: &str,
    obj: Value,
    table_res: Option<(&ResourceDef, chrono::DateTime<chrono::Utc>)>,
) -> Bytes {
    let object = match table_res {
        Some((res, now)) if etype != "BOOKMARK" => {
            table::table(res, &[&obj], now, IncludeObject::Metadata, None)
        }
        _ => obj,
    };
    let mut line =
        serde_json::to_vec(&json!({"type": etype, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark(res: &ResourceDef, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": meta})
}

/// `?watch=true`: newline-delimited events (§4.4), including watch-list
/// (`sendInitialEvents=true`: initial ADDED events, then a BOOKMARK annotated
/// `k8s.io/initial-events-end`, which kubectl 1.37's delete/wait need).
pub(super) fn watch(lab: &Lab, t: &Target, params: &Params, as_table: bool) -> Response {
    let (labels, fields) = match selectors(t.res, params) {
        Ok(s) => s,
        Err(e) => return err(e),
    };
    let send_initial = params.get("sendInitialEvents").is_some_and(|v| v == "true");
    let rv_param = params.get("resourceVersion").cloned().unwrap_or_default();
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(1800);
    let res = t.res;
    let key = res.key();
    let ns = t.ns.clone();
    let matches = move |o: &Value| labels.matches(o) && fields.matches(o);
    let (rx, initial, replay, start_rv, now) = {
        let st = lab.read();
        let rx = st.store.subscribe();
        let from_now = send_initial || rv_param.is_empty() || rv_param == "0";
        let initial: Vec<Value> = if from_now {
            st.store
                .list(&key, ns.as_deref())
                .filter(|o| matches(o))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let (start_rv, replay) = if from_now {
            (st.store.rv(), Vec::new())
        } else {
            let Ok(rv) = rv_param.parse::<u64>() else {
                return err(ApiError::bad_request(format!(
                    "invalid resourceVersion {rv_param:?}"
                )));
            };
            match st.store.history_since(rv) {
                Some(h) => (st.store.rv(), h),
                None => {
                    return err(ApiError::new(
                        410,
                        "Expired",
                        format!("too old resource version: {rv} ({})", st.store.rv()),
                    ));
                }
            }
        };
        (rx, initial, replay, start_rv, st.now())
    };
    let lab2 = lab.clone();
    let (tx, out) = tokio::sync::mpsc::channel::<Bytes>(limits::WATCH_BUFFER);
    let watcher = tx.clone();
    // A client that does not take the next line within SLOW_WATCHER is dropped: its
    // watch ends, and with it the events and initial list it holds.
    let send = move |line: Bytes| {
        let tx = tx.clone();
        async move { tx.send_timeout(line, limits::SLOW_WATCHER).await.is_ok() }
    };
    tokio::spawn(async move {
        let table_res = |now| if as_table { Some((res, now)) } else { None };
        for o in initial {
            if !send(watch_line("ADDED", o, table_res(now))).await {
                return;
            }
        }
        if send_initial && !send(watch_line("BOOKMARK", bookmark(res, start_rv, true), None)).await
        {
            return;
        }
        let relevant =
            |ev: &WatchEvent| ev.resource == key && ns.as_ref().is_none_or(|n| *n == ev.namespace);
        let translate = |ev: &WatchEvent| -> Option<(&'static str, Value)> {
            let now_m = matches(&ev.object);
            let was = ev.old.as_deref().is_some_and(&matches);
            match ev.etype {
                EventType::Added if now_m => Some(("ADDED", Value::clone(&ev.object))),
                EventType::Deleted if now_m => Some(("DELETED", Value::clone(&ev.object))),
                EventType::Modified if now_m && was => Some(("MODIFIED", Value::clone(&ev.object))),
                EventType::Modified if now_m => Some(("ADDED", Value::clone(&ev.object))),
                EventType::Modified if was => Some(("DELETED", Value::clone(&ev.object))),
                _ => None,
            }
        };
        for ev in replay.iter().filter(|e| relevant(e)) {
            if let Some((ty, o)) = translate(ev)
                && !send(watch_line(ty, o, table_res(lab2.now()))).await
            {
                return;
            }
        }
        drop(replay);
        let mut rx = rx;
        let mut seen = start_rv;
        let deadline = tokio::time::sleep(StdDuration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(StdDuration::from_secs(5));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tick.tick(), if bookmarks => {
                    let rv = lab2.rv();
                    if !send(watch_line("BOOKMARK", bookmark(res, rv, false), None)).await { return; }
                }
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let batch = lab2.read().store.history_since(seen);
                    let Some(batch) = batch else {
                        // Fell behind the bounded history: end the watch the way the
                        // API server does, with an ERROR event carrying 410 Expired.
                        let gone = ApiError::new(
                            410,
                            "Expired",
                            format!("too old resource version: {seen} ({})", lab2.rv()),
                        );
                        let _ = send(watch_line("ERROR", gone.to_status(), None)).await;
                        return;
                    };
                    for ev in batch {
                        seen = seen.max(ev.rv);
                        if !relevant(&ev) { continue; }
                        if let Some((ty, o)) = translate(&ev)
                            && !send(watch_line(ty, o, table_res(lab2.now()))).await
                        {
                            return;
                        }
                    }
                }
                () = watcher.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(out, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}
