//! What several test modules share.

pub mod alerting;
pub mod cli;
pub mod kube;
pub mod kubectl;
pub mod measured;
pub mod scripted;

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
