//! Re-rendering a postmortem people already edited keeps their text.

use std::path::PathBuf;

use runbook::journal::reader;
use runbook::render::{self, RenderOpts};

fn render(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/journals")
        .join(format!("{name}.ndjson"));
    let journal = reader::read(&path).expect("fixture reads");
    render::render(&journal, &RenderOpts::default()).expect("fixture renders")
}

/// Replace the body of the human region `id` the way a person in an editor would.
fn edit_human(doc: &str, id: &str, text: &str) -> String {
    let begin = doc
        .find(&format!("<!-- runbook:human id={id} "))
        .expect("region exists");
    let body_start = begin + doc[begin..].find("-->\n").expect("marker ends") + 4;
    let end = body_start
        + doc[body_start..]
            .find("<!-- runbook:end -->")
            .expect("region ends");
    format!("{}\n{text}\n\n{}", &doc[..body_start], &doc[end..])
}

#[test]
fn rerender_keeps_edited_human_sections_and_refreshes_generated_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("postmortem.md");
    // First render while the run was paused.
    render::write_preserving(&file, &render("paused")).expect("first write");
    let first = std::fs::read_to_string(&file).expect("written");
    assert!(first.contains("**Paused, waiting for a person**"));

    // People write the summary and a lesson, and add a paragraph of their own.
    let edited = edit_human(
        &first,
        "summary",
        "Launches failed for 3 hours: two nodes were lost and the hub volume stayed attached.",
    );
    let edited = edit_human(
        &edited,
        "lessons",
        "- The user database was backed up the night before.",
    );
    let edited = edited.replace(
        "## Lessons learnt",
        "Extra context from the review meeting.\n\n## Lessons learnt",
    );
    std::fs::write(&file, &edited).expect("edit");

    // The run was resumed and finished: render again over the edited file.
    render::write_preserving(&file, &render("notes")).expect("re-render");
    let second = std::fs::read_to_string(&file).expect("written");

    // The human text survived, byte for byte...
    assert!(second.contains(
        "Launches failed for 3 hours: two nodes were lost and the hub volume stayed attached."
    ));
    assert!(second.contains("- The user database was backed up the night before."));
    assert!(second.contains("Extra context from the review meeting.\n\n## Lessons learnt"));
    assert_eq!(
        second.matches("Launches failed for 3 hours").count(),
        1,
        "the edit is there once, the draft did not come back beside it"
    );
    // ...and the generated sections show the finished run.
    assert!(second.contains("| Status | **Succeeded** |"), "{second}");
    assert!(!second.contains("**Paused, waiting for a person**"));
    assert!(second.contains("| 05:37:58 | Run resumed"), "{second}");
    // An unedited human section got the new draft (the manual step is now confirmed).
    assert!(second.contains("Automate the manual step “Confirm the lost nodes are powered off” (the run waited 21m 20s for a person)."));
    // The previous version is kept next to it.
    let bak = std::fs::read_to_string(dir.path().join("postmortem.md.bak")).expect("backup");
    assert_eq!(bak, edited);

    // Rendering the same journal again changes nothing.
    render::write_preserving(&file, &render("notes")).expect("third write");
    assert_eq!(std::fs::read_to_string(&file).expect("written"), second);
}

#[test]
fn a_hand_edit_of_a_generated_section_is_kept_beside_the_new_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pm.md");
    let first = render("clean");
    let edited = first.replace(
        "| Status | **Succeeded** |",
        "| Status | **Succeeded** (with tim on the phone) |",
    );
    assert_ne!(first, edited);
    std::fs::write(&file, &edited).expect("write");
    let report = render::write_preserving_report(&file, &render("clean")).expect("re-render");
    assert_eq!(report.kept_edits, ["facts"]);
    let out = std::fs::read_to_string(&file).expect("read");
    // Kept once, in place, as the person's: not a second copy beside a rebuilt one.
    assert_eq!(out.matches("| Status | **Succeeded**").count(), 1, "{out}");
    assert!(out.contains("<!-- runbook:human id=facts "));
    assert!(out.contains("| Status | **Succeeded** (with tim on the phone) |"));
}

#[test]
fn an_existing_file_that_is_not_a_postmortem_is_not_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("notes.md");
    std::fs::write(&file, "# My notes\n\nprecious\n").expect("write");
    let err = render::write_preserving(&file, &render("clean")).unwrap_err();
    assert!(err.to_string().contains("notes.md"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        "# My notes\n\nprecious\n"
    );
}
