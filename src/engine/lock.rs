//! `lock:` — one remediation at a time. A run takes a `coordination.k8s.io/v1` Lease
//! in the target cluster before its first step, renews it every third of its `ttl`
//! while it runs and frees it at its end. Two runs race through resourceVersion (a
//! create of an existing Lease, or a replace of a changed one, is 409), so exactly
//! one holds it. A Lease not renewed for `ttl` (its holder was killed) is free.
//! A run without a cluster takes a lock file in its state directory instead.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Clock;
use super::ctx::Ctx;
use crate::journal::event::Event;
use crate::providers::{ExecCtx, LeaseCall, OpError, Provider, RunClock};
use crate::runbook::model::{Lock, LockScope};

/// How long a lock outlives its holder's last renewal unless `ttl:` says.
const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// How often a run waiting for a lock looks again.
const POLL: Duration = Duration::from_secs(1);
/// How many lost races in a row before giving up on one attempt.
const RACES: usize = 8;

/// A lock this run holds: a Lease renewed in the background until released, or a
/// local lock file.
pub(super) enum Held {
    Lease {
        lease: LeaseRef,
        stop: CancellationToken,
        renewer: tokio::task::JoinHandle<()>,
    },
    /// `flock` on `<state dir>/locks/NAME.lock`: the kernel frees it when the
    /// holder's process ends however it ends (SIGKILL included), so it needs no
    /// renewal and no `ttl`.
    File {
        file: std::fs::File,
        path: std::path::PathBuf,
        name: String,
    },
}

/// What a run needs to speak to its Lease, without borrowing the run.
#[derive(Clone)]
pub(super) struct LeaseRef {
    provider: Arc<dyn Provider>,
    clock: Arc<dyn Clock>,
    ns: Option<String>,
    name: String,
    holder: String,
    ttl: Duration,
}

/// Who holds a lock this run could not take.
struct Busy {
    holder: String,
    since: String,
    /// `NAMESPACE/NAME` of the Lease, as the API server answered.
    lease: String,
}

impl Ctx<'_> {
    /// Take the runbook's `lock:`, waiting up to its `wait:`. `Ok(None)` without a
    /// lock (or in a dry run); `Err` says who holds it, or why it could not be taken.
    pub(super) async fn take_lock(&self) -> Result<Option<Held>, String> {
        let Some(lock) = self.rb.lock.as_deref() else {
            return Ok(None);
        };
        if self.opts.dry_run {
            return Ok(None);
        }
        let Some(provider) = self.providers.get("kube") else {
            return self.take_local_lock(lock).await;
        };
        let lease = LeaseRef {
            provider: Arc::clone(provider),
            clock: Arc::clone(&self.clock),
            ns: self.opts.defaults.namespace.clone(),
            name: lease_name(lock, &self.rb.name.value),
            holder: format!(
                "{} (run {} on {})",
                self.opts.operator,
                self.run_id,
                super::run::host()
            ),
            ttl: lock.ttl.as_deref().map_or(DEFAULT_TTL, |d| d.0),
        };
        let wait = lock.wait.as_deref().map_or(Duration::ZERO, |d| d.0);
        let deadline = self.clock.now()
            + chrono::Duration::from_std(wait).unwrap_or_else(|_| chrono::Duration::days(30));
        let mut told = false;
        loop {
            match lease.try_take(&self.cancel).await {
                Ok(None) => break,
                Ok(Some(busy)) => {
                    let text = format!(
                        "lock `{}` is held by {} since {} (Lease {})",
                        lease.name, busy.holder, busy.since, busy.lease
                    );
                    self.wait_busy(text, wait, deadline, &mut told).await?;
                }
                Err(e) => return Err(format!("could not take lock `{}`: {e}", lease.name)),
            }
        }
        self.note(format!(
            "took lock `{}` (Lease {}) for this run",
            lease.name,
            lease.describe()
        ));
        let stop = self.cancel.child_token();
        let renewer = tokio::spawn(lease.clone().renew(stop.clone()));
        Ok(Some(Held::Lease {
            lease,
            stop,
            renewer,
        }))
    }

    /// A run without a cluster: the lock is a file in the state directory, so two
    /// runs from the same state directory (one machine, one team's shared disk)
    /// cannot both proceed. Who holds it is written in the file for the one that
    /// waits.
    async fn take_local_lock(&self, lock: &Lock) -> Result<Option<Held>, String> {
        let name = lease_name(lock, &self.rb.name.value);
        let (journal, _) = self.events.journal_end();
        let Some(path) = crate::store::DirStore::lock_file_for(&journal, &name) else {
            return Err(format!("could not take lock `{name}`: no state directory"));
        };
        let cannot =
            |e: std::io::Error| format!("could not take lock `{name}` ({}): {e}", path.display());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(cannot)?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(cannot)?;
        let wait = lock.wait.as_deref().map_or(Duration::ZERO, |d| d.0);
        let deadline = self.clock.now()
            + chrono::Duration::from_std(wait).unwrap_or_else(|_| chrono::Duration::days(30));
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    let holder = holder.trim();
                    let holder = if holder.is_empty() {
                        "another run"
                    } else {
                        holder
                    };
                    let text = format!(
                        "lock `{name}` is held by {holder} (lock file {})",
                        path.display()
                    );
                    self.wait_busy(text, wait, deadline, &mut told).await?;
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(cannot(e)),
            }
        }
        let holder = format!(
            "{} (run {} on {}) since {}",
            self.opts.operator,
            self.run_id,
            super::run::host(),
            micro(self.clock.now())
        );
        {
            use std::io::{Seek, Write};
            let mut f = &file;
            let _ = f.set_len(0);
            let _ = f.seek(std::io::SeekFrom::Start(0));
            let _ = writeln!(f, "{holder}");
        }
        self.note(format!(
            "took lock `{name}` (lock file {}) for this run",
            path.display()
        ));
        Ok(Some(Held::File { file, path, name }))
    }

    /// Free a lock this run holds (when it still does).
    pub(super) async fn release_lock(&self, held: Held) {
        match held {
            Held::Lease {
                lease,
                stop,
                renewer,
            } => {
                stop.cancel();
                let _ = renewer.await;
                match lease.release().await {
                    Ok(()) => self.note(format!("released lock `{}`", lease.name)),
                    Err(e) => self.note(format!(
                        "could not release lock `{}` ({e}); it frees itself {} after its last renewal",
                        lease.name,
                        human(lease.ttl)
                    )),
                }
            }
            Held::File { file, path, name } => {
                // Emptied first: a waiting run that reads it between the two sees no
                // stale holder.
                let _ = file.set_len(0);
                let _ = file.unlock();
                drop(file);
                self.note(format!(
                    "released lock `{name}` (lock file {})",
                    path.display()
                ));
            }
        }
    }

    /// The lock is held by another (`text` says who): past `deadline` the run gives
    /// up having done nothing; before, it says once that it waits, and waits a poll.
    async fn wait_busy(
        &self,
        text: String,
        wait: Duration,
        deadline: DateTime<Utc>,
        told: &mut bool,
    ) -> Result<(), String> {
        if self.clock.now() >= deadline {
            return Err(format!(
                "{text}; nothing was done; run again (or `runbook resume {}`) once it is released",
                self.run_id
            ));
        }
        if !*told {
            *told = true;
            let text = format!("{text}; waiting up to {} for it", human(wait));
            self.opts.printer.line(&format!("⏳ {text}"));
            self.note(text);
        }
        tokio::select! {
            () = self.clock.sleep(POLL) => Ok(()),
            () = self.cancel.cancelled() => Err("aborted by operator while waiting for the lock".into()),
        }
    }

    fn note(&self, text: String) {
        let by = "runbook".to_string();
        let _ = self.events.emit(Event::Note { text, by, at: None }, false);
    }
}

/// `runbook-lock-NAME`: the lock's own name, else the runbook's, else `target`.
fn lease_name(lock: &Lock, runbook: &str) -> String {
    let name = match (&lock.name, lock.scope) {
        (Some(n), _) => n.value.clone(),
        (None, LockScope::Runbook) => runbook.to_string(),
        (None, LockScope::Target) => "target".to_string(),
    };
    format!("runbook-lock-{name}")
}

fn human(d: Duration) -> String {
    super::console::human(d)
}

/// Kubernetes' MicroTime.
fn micro(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

impl LeaseRef {
    fn describe(&self) -> String {
        match &self.ns {
            Some(ns) => format!("{ns}/{}", self.name),
            None => format!("{} in the run's namespace", self.name),
        }
    }

    async fn call(
        &self,
        call: LeaseCall,
        cancel: &CancellationToken,
    ) -> Result<(u16, Value), OpError> {
        let cx = ExecCtx {
            cancel: cancel.child_token(),
            timeout: Some(Duration::from_secs(30)),
            dry_run: false,
            vars: Default::default(),
            calls: Default::default(),
            clock: RunClock(Arc::clone(&self.clock)),
            approved: None,
            spill: None,
            spawned: None,
        };
        self.provider
            .lease(self.ns.as_deref(), &self.name, call, &cx)
            .await
    }

    fn body(
        &self,
        rv: Option<&str>,
        holder: Option<&str>,
        acquired: &str,
        transitions: u64,
    ) -> Value {
        let now = micro(self.clock.now());
        let mut meta = json!({"name": self.name});
        if let Some(rv) = rv {
            meta["resourceVersion"] = json!(rv);
        }
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": self.ttl.as_secs().max(1),
                "acquireTime": acquired,
                "renewTime": now,
                "leaseTransitions": transitions,
            }
        })
    }

    /// One attempt: None when this run now holds the lease, else who does.
    async fn try_take(&self, cancel: &CancellationToken) -> Result<Option<Busy>, String> {
        for _ in 0..RACES {
            let (status, lease) = self
                .call(LeaseCall::Get, cancel)
                .await
                .map_err(|e| e.to_string())?;
            match status {
                404 => {
                    let now = micro(self.clock.now());
                    let body = self.body(None, Some(&self.holder), &now, 0);
                    let (s, b) = self
                        .call(LeaseCall::Create(body), cancel)
                        .await
                        .map_err(|e| e.to_string())?;
                    match s {
                        200 | 201 => return Ok(None),
                        409 => continue,
                        _ => return Err(api_message(s, &b)),
                    }
                }
                200 => {
                    let spec = &lease["spec"];
                    let holder = spec["holderIdentity"].as_str().unwrap_or("");
                    let rv = lease
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str);
                    let transitions = spec["leaseTransitions"].as_u64().unwrap_or(0);
                    let mine = holder == self.holder;
                    if !holder.is_empty() && !mine && !self.expired(spec) {
                        return Ok(Some(Busy {
                            lease: format!(
                                "{}/{}",
                                lease["metadata"]["namespace"].as_str().unwrap_or("?"),
                                self.name
                            ),
                            holder: holder.to_string(),
                            since: spec["acquireTime"].as_str().unwrap_or("?").to_string(),
                        }));
                    }
                    let (acquired, transitions) = if mine {
                        (
                            spec["acquireTime"].as_str().unwrap_or("").to_string(),
                            transitions,
                        )
                    } else {
                        (micro(self.clock.now()), transitions + 1)
                    };
                    let body = self.body(rv, Some(&self.holder), &acquired, transitions);
                    let (s, b) = self
                        .call(LeaseCall::Replace(body), cancel)
                        .await
                        .map_err(|e| e.to_string())?;
                    match s {
                        200 | 201 => return Ok(None),
                        409 => continue,
                        _ => return Err(api_message(s, &b)),
                    }
                }
                s => return Err(api_message(s, &lease)),
            }
        }
        Err(format!("lost the race for it {RACES} times in a row"))
    }

    /// True when the lease was last renewed more than its duration ago.
    fn expired(&self, spec: &Value) -> bool {
        let Some(renewed) = spec["renewTime"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        else {
            return true;
        };
        let ttl = spec["leaseDurationSeconds"].as_i64().unwrap_or(0);
        renewed.with_timezone(&Utc) + chrono::Duration::seconds(ttl) < self.clock.now()
    }

    /// Renew every third of the ttl until `stop`; a lease someone else took is left.
    async fn renew(self, stop: CancellationToken) {
        let every = (self.ttl / 3).max(Duration::from_millis(200));
        loop {
            tokio::select! {
                () = self.clock.sleep(every) => {}
                () = stop.cancelled() => return,
            }
            let Ok((200, lease)) = self.call(LeaseCall::Get, &stop).await else {
                continue;
            };
            let spec = &lease["spec"];
            if spec["holderIdentity"].as_str() != Some(self.holder.as_str()) {
                return;
            }
            let rv = lease
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str);
            let acquired = spec["acquireTime"].as_str().unwrap_or("").to_string();
            let transitions = spec["leaseTransitions"].as_u64().unwrap_or(0);
            let body = self.body(rv, Some(&self.holder), &acquired, transitions);
            let _ = self.call(LeaseCall::Replace(body), &stop).await;
        }
    }

    /// Clear the holder, if it is still this run.
    async fn release(&self) -> Result<(), String> {
        let cancel = CancellationToken::new();
        for _ in 0..RACES {
            let (s, lease) = self
                .call(LeaseCall::Get, &cancel)
                .await
                .map_err(|e| e.to_string())?;
            if s == 404 {
                return Ok(());
            }
            if s != 200 {
                return Err(api_message(s, &lease));
            }
            let spec = &lease["spec"];
            if spec["holderIdentity"].as_str() != Some(self.holder.as_str()) {
                return Err("another run holds it now".into());
            }
            let rv = lease
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str);
            let acquired = spec["acquireTime"].as_str().unwrap_or("").to_string();
            let transitions = spec["leaseTransitions"].as_u64().unwrap_or(0);
            let body = self.body(rv, None, &acquired, transitions);
            let (s, b) = self
                .call(LeaseCall::Replace(body), &cancel)
                .await
                .map_err(|e| e.to_string())?;
            match s {
                200 | 201 => return Ok(()),
                409 => continue,
                _ => return Err(api_message(s, &b)),
            }
        }
        Err(format!("lost the race for it {RACES} times in a row"))
    }
}

/// `HTTP 403: leases is forbidden …`.
fn api_message(status: u16, body: &Value) -> String {
    match body["message"].as_str() {
        Some(m) => format!("HTTP {status}: {m}"),
        None => format!("HTTP {status}"),
    }
}
