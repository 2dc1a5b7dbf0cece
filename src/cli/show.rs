//! `runbook show RUN`: one run as a person needs it when picking it up: its status,
//! who did what, where it waits, what it waits for, and the command that continues it.

use super::{Global, OutputArgs};
use crate::exit;
use crate::store::{self, DirStore, RunStore};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  runbook show last               the newest run (dry runs are skipped)
  runbook show 7f3a               a run by the 4 hex digits its id ends with
  runbook show 7f3a -o json       the same as one JSON object")]
pub struct Args {
    /// The run: its id, a unique prefix or suffix of it, or `last`.
    pub run_id: String,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub remote: super::remote::ServerArgs,
}

/// `show --server`: the run as the server has it, with the plan waiting at its gate.
fn remote(server: &str, args: &Args) -> i32 {
    use super::remote::{call, seg};
    let v = match call(
        server,
        reqwest::Method::GET,
        &format!("/api/v1/runs/{}", seg(&args.run_id)),
        None,
    ) {
        Ok(v) => v,
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            return exit::USAGE;
        }
    };
    if args.output.json() {
        return super::print_json(&v["run"]);
    }
    let r = &v["run"];
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    println!("run:       {}", s(&r["run_id"]));
    println!("runbook:   {}", s(&r["runbook"]));
    println!("status:    {}", s(&r["status"]));
    println!("started:   {} by {}", s(&r["started"]), s(&r["operator"]));
    if let Some(t) = v["incident_start"].as_str() {
        println!("incident:  started {t}");
    }
    if let Some(w) = r.get("waiting") {
        println!("waits at:  {} `{}`", s(&w["kind"]), s(&w["step"]));
        if let Some(ops) = v["plan"]["ops"].as_array() {
            println!("plan:      (digest {})", s(&w["digest"]));
            for op in ops {
                println!("  - {}", s(&op["display"]));
            }
        }
        println!("answer:    on {server}/runs/{}", s(&r["run_id"]));
    }
    exit::OK
}

pub fn run(args: Args, g: &Global) -> i32 {
    if let Some(server) = args.remote.server.clone() {
        return remote(&server, &args);
    }
    let store = DirStore::new(&g.state_dir);
    let run_id = match store.resolve(&args.run_id) {
        Ok(id) => id,
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            return if e.is_usage() {
                exit::USAGE
            } else {
                exit::INTERNAL
            };
        }
    };
    let summary = match store::summarize(&store, &run_id) {
        Ok(s) => s,
        Err(e) => {
            crate::cli::error_line!("error: run {run_id}: {e}");
            return exit::USAGE;
        }
    };
    if args.output.json() {
        return super::print_json(&summary);
    }
    let s = &summary;
    println!("run:       {}", s.run_id);
    println!("runbook:   {}", s.runbook);
    println!("status:    {}", s.status_label());
    println!(
        "started:   {} UTC by {}",
        s.started.format("%Y-%m-%d %H:%M:%S"),
        s.operator
    );
    for by in &s.resumed_by {
        println!("resumed:   by {by}");
    }
    if let Some(t) = &s.target {
        println!("target:    {}", t.describe());
    }
    if let Some(step) = &s.paused_at {
        println!("waits at:  step `{step}`");
        if let Some(why) = &s.waiting_for {
            println!("needs:     {why}");
        }
        if let Some(cmd) = &s.continue_with {
            println!("continue:  {cmd}");
        }
        println!("or end it: runbook abort {} --reason \"...\"", s.run_id);
    } else if s.status == "interrupted" {
        println!("continue:  runbook resume {}", s.run_id);
    }
    for line in &s.undone {
        println!("undo:      {line}");
    }
    if let Some(stale) = &s.stale_lock {
        println!("lock:      {stale}");
    }
    println!("journal:   {}", s.journal.display());
    let run_dir = s.journal.parent().unwrap_or(std::path::Path::new("."));
    for o in &s.spilled {
        println!("output:    {}", o.describe(run_dir));
    }
    println!("postmortem: runbook postmortem {}", s.run_id);
    exit::OK
}
