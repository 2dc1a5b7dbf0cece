//! Every integration test of `runbook`, in one binary (as `just` and ripgrep do): the
//! library is linked once instead of once per file, so changing `src/` relinks one
//! test binary, not thirty.
//!
//! One module per area. Tests that drive the binary use `support::cli::Cli`; tests
//! that need a tool the test script installs (kubectl, Prometheus, openssl) are
//! `#[ignore]`d with the reason, and `scripts/test.sh` runs them with `--ignored`
//! after installing it, where they fail, never skip, when the tool is missing.
//!
//! The tests share one process: none may change process-wide state (environment
//! variables, the current directory) that another test could see.

mod support;

mod alerting_real;
mod approvals;
mod bounds_http;
mod bounds_kube;
mod bounds_lab;
mod bounds_notes;
mod bounds_shell;
mod bounds_spill;
mod bounds_timeouts;
mod chaos_faults;
mod chaos_input;
mod chaos_kill;
mod conditions_now;
mod deploy_manifests;
mod engine_http_prometheus;
mod engine_state_machine;
mod format_errors;
mod format_examples;
mod hostile_input;
mod hostile_servers;
mod http_tls;
mod impact;
mod kube_cli;
mod kube_connect;
mod kube_docs;
mod kube_engine;
mod kube_faults;
mod kube_ops;
mod kube_provider;
mod kube_verbs;
mod lab_catalogue;
mod lab_cli;
mod lab_faults;
mod lab_fidelity;
mod lab_incremental;
mod lab_kube;
mod lab_kubectl;
mod lab_network;
mod lab_node_faults;
mod lab_pressure;
mod lab_prometheus;
mod lab_scenarios;
mod lint_bench;
mod lint_cli;
mod lint_corpus;
mod lint_docs;
mod lint_fuzz;
mod lint_input;
mod lint_runbooks_on_lab;
mod notify;
mod panic_hook;
mod params;
mod postmortem_cli;
mod postmortem_memory;
mod postmortem_preserve;
mod postmortem_render;
mod preview;
mod rbac;
mod robust_disk;
mod robust_group_commit;
mod robust_journal;
mod robust_kill;
mod robust_pgid;
mod robust_runs;
mod run_cli;
mod run_identity;
mod run_target;
mod rung_verify;
mod runs_manage;
mod secrets;
mod serve;
mod serve_browser;
mod suite_bugs;
mod suite_cli;
mod titles_summary;

mod undo;
mod user_output;

/// A test file directly in `tests/` would be a binary of its own that links the
/// whole library again: new tests go into a module of this binary.
#[test]
fn every_integration_test_is_a_module_of_this_binary() {
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut strays: Vec<String> = std::fs::read_dir(&tests)
        .unwrap_or_else(|e| panic!("{}: {e}", tests.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "rs")
                || (p.is_dir() && p.join("main.rs").exists() && !p.ends_with("integration"))
        })
        .map(|p| p.display().to_string())
        .collect();
    strays.sort();
    assert!(
        strays.is_empty(),
        "move these into tests/integration/ as modules of main.rs: {strays:?}"
    );
}
