//! `runbook postmortem` through the real binary.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

const RUN: &str = "20180320T235840Z-hub-pvc-locked-c91e";

fn runbook() -> Command {
    Command::cargo_bin("runbook").expect("the runbook binary is built")
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/journals")
        .join(format!("{name}.ndjson"))
}

/// A state dir holding the given fixtures as runs.
fn state(runs: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (id, name) in runs {
        let run = dir.path().join("runs").join(id);
        std::fs::create_dir_all(&run).expect("run dir");
        std::fs::copy(fixture(name), run.join("journal.ndjson")).expect("copy journal");
    }
    dir
}

fn postmortem(state: &Path) -> Command {
    let mut cmd = runbook();
    cmd.env("RUNBOOK_STATE_DIR", state).arg("postmortem");
    cmd
}

#[test]
fn prints_the_postmortem_of_a_run_to_stdout() {
    let st = state(&[(RUN, "escalated")]);
    postmortem(st.path())
        .arg(RUN)
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with("<!-- runbook:human id=title"))
        .stdout(predicate::str::contains("## Timeline"))
        .stdout(predicate::str::contains("All times in UTC."));
}

#[test]
fn accepts_a_unique_prefix_and_last() {
    let st = state(&[
        (RUN, "escalated"),
        ("20180313T062800Z-hub-pvc-locked-7f3a", "clean"),
    ]);
    postmortem(st.path())
        .arg("20180320")
        .assert()
        .code(0)
        .stdout(predicate::str::contains(format!("| Run | `{RUN}` |")));
    // `last` is the run that started last, whatever the folder names say.
    postmortem(st.path())
        .arg("last")
        .assert()
        .code(0)
        .stdout(predicate::str::contains(format!("| Run | `{RUN}` |")));
    postmortem(st.path())
        .arg("2018")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("matches several runs"));
}

#[test]
fn a_missing_run_names_where_it_looked() {
    let st = state(&[(RUN, "escalated")]);
    postmortem(st.path())
        .arg("nope")
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("no run \"nope\""))
        .stderr(predicate::str::contains(
            st.path().join("runs").display().to_string(),
        ));
    let empty = tempfile::tempdir().expect("tempdir");
    postmortem(empty.path())
        .arg("last")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no runs in"));
}

#[test]
fn an_unreadable_journal_is_an_error_naming_the_file() {
    let st = state(&[]);
    let run = st.path().join("runs").join("broken");
    std::fs::create_dir_all(&run).expect("dir");
    std::fs::write(run.join("journal.ndjson"), "{\"seq\":1}\nnot json\n{}\n").expect("write");
    postmortem(st.path())
        .arg("broken")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "journal.ndjson:1: corrupt journal line",
        ));
    let gone = st.path().join("runs").join("empty");
    std::fs::create_dir_all(&gone).expect("dir");
    postmortem(st.path())
        .arg("empty")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot read journal"))
        .stderr(predicate::str::contains("journal.ndjson"));
}

#[test]
fn writes_to_a_file_with_the_chosen_time_zone() {
    let st = state(&[(RUN, "escalated")]);
    let out = st.path().join("pm.md");
    postmortem(st.path())
        .args([RUN, "--tz", "Europe/Berlin", "-o"])
        .arg(&out)
        .assert()
        .code(0)
        .stdout("");
    let text = std::fs::read_to_string(&out).expect("written");
    assert!(text.contains("All times in Europe/Berlin."));
    assert!(text.contains("#### 00:58:40 · Run started"));
    postmortem(st.path())
        .args([RUN, "--tz", "Mars/Olympus"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown time zone"));
}

#[test]
fn print_template_is_a_starting_point_for_a_custom_one() {
    let st = state(&[(RUN, "escalated")]);
    let printed = postmortem(st.path())
        .arg("--print-template")
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let printed = String::from_utf8(printed).expect("utf-8");
    assert_eq!(printed, runbook::render::DEFAULT_TEMPLATE);
    // The printed template, used as a file, renders what the embedded one does.
    let file = st.path().join("team.hbs");
    std::fs::write(&file, &printed).expect("write");
    let with_file = postmortem(st.path())
        .arg(RUN)
        .arg("--template")
        .arg(&file)
        .output()
        .expect("runs");
    let embedded = postmortem(st.path()).arg(RUN).output().expect("runs");
    assert!(with_file.status.success());
    assert_eq!(with_file.stdout, embedded.stdout);
}

#[test]
fn a_broken_template_names_the_file_and_line() {
    let st = state(&[(RUN, "escalated")]);
    let file = st.path().join("team.hbs");
    std::fs::write(&file, "# {{run.id}}\n{{run.oops}}\n").expect("write");
    postmortem(st.path())
        .arg(RUN)
        .arg("--template")
        .arg(&file)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!("{}:2:", file.display())))
        .stderr(predicate::str::contains("oops"));
}

#[test]
fn output_into_a_new_folder_creates_it_and_a_second_run_keeps_edits() {
    let st = state(&[(RUN, "escalated")]);
    let out = st.path().join("incidents").join("2018-03-21-hub.md");
    postmortem(st.path())
        .arg(RUN)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(0);
    let text = std::fs::read_to_string(&out).expect("written");
    let edited = text.replace(
        "_What could have gone worse, and did not?_",
        "The prometheus data survived this time.",
    );
    assert_ne!(text, edited);
    std::fs::write(&out, &edited).expect("edit");
    postmortem(st.path())
        .arg(RUN)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(0);
    let again = std::fs::read_to_string(&out).expect("written");
    assert!(again.contains("The prometheus data survived this time."));
    assert_eq!(again, edited, "nothing else changed");
}

#[test]
fn a_missing_template_file_is_named() {
    let st = state(&[(RUN, "escalated")]);
    postmortem(st.path())
        .args([RUN, "--template", "no-such.hbs"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("cannot read template no-such.hbs"));
}
