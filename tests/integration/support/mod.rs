//! What several test modules share.

pub mod alerting;
pub mod cli;
pub mod kube;
pub mod kubectl;
pub mod measured;
pub mod scripted;
pub mod webdriver;

/// `text` as a regex matching itself, for insta filters that hide temp paths.
pub fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

/// The events of the only run in the state dir `state`, as its journal holds them.
pub fn only_run_events(state: &std::path::Path) -> Vec<runbook::journal::event::Event> {
    let run = std::fs::read_dir(state.join("runs"))
        .expect("a runs folder")
        .flatten()
        .next()
        .expect("one run");
    runbook::journal::reader::read(&run.path().join("journal.ndjson"))
        .expect("the journal reads back")
        .records
        .into_iter()
        .map(|r| r.event)
        .collect()
}
