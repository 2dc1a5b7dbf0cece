//! Titles are templates: the runbook's, each step's, rung's and verification's title
//! may name params (`Disk above {{params.threshold}} %`). They are rendered once,
//! when the run starts or resumes, so the gate, the console, the journal and the
//! postmortem (which reads only the journal) all show the same text. Lint checks
//! that a title reads only params (`validate`), so rendering cannot fail on a valid
//! runbook; if it does, the title is shown as written rather than failing the run.

use std::borrow::Cow;

use serde_json::Value;

use crate::expr;
use crate::runbook::model::{Runbook, Sp, Step, VerifyField};

/// A copy of `rb` whose titles are rendered with the run's `params`, each secret
/// param shown as `***`: a title is journaled as it is (the runbook's in
/// `run_started`), so it must never hold a secret.
///
/// Most runbooks have no templated title: then `rb` itself is returned, not a copy
/// (a copy of a 500-step runbook costs more than running a step).
pub(crate) fn titled<'a>(
    rb: &'a Runbook,
    params: &serde_json::Map<String, Value>,
) -> Cow<'a, Runbook> {
    if !rb.title.value.contains("{{")
        && !rb
            .steps
            .iter()
            .chain(rb.handlers.iter())
            .any(has_templated_title)
    {
        return Cow::Borrowed(rb);
    }
    let mut shown = params.clone();
    for (name, p) in &rb.params {
        if p.secret && shown.contains_key(name) {
            shown.insert(name.clone(), Value::String("***".into()));
        }
    }
    let vars = serde_json::json!({ "params": shown });
    let vars = &vars;
    let mut out = rb.clone();
    render(&mut out.title, vars);
    for step in out.steps.iter_mut().chain(out.handlers.iter_mut()) {
        step_titles(step, vars);
    }
    Cow::Owned(out)
}

/// Does any title of `step` (the ones [`step_titles`] renders) hold a template?
fn has_templated_title(step: &Step) -> bool {
    let mut titles = Vec::new();
    for t in [&step.check, &step.action, &step.manual]
        .into_iter()
        .flatten()
    {
        titles.push(t);
    }
    match &step.verify {
        Some(VerifyField::Title(t)) => titles.push(t),
        Some(VerifyField::Block(v)) => titles.extend(v.title.as_ref()),
        None => {}
    }
    for rung in &step.escalate {
        titles.extend(rung.title.as_ref());
        titles.extend(rung.verify.as_ref().and_then(|v| v.title.as_ref()));
    }
    titles.iter().any(|t| t.value.contains("{{"))
}

fn step_titles(step: &mut Step, vars: &Value) {
    for t in [&mut step.check, &mut step.action, &mut step.manual]
        .into_iter()
        .flatten()
    {
        render(t, vars);
    }
    match &mut step.verify {
        Some(VerifyField::Title(t)) => render(t, vars),
        Some(VerifyField::Block(v)) => {
            if let Some(t) = &mut v.title {
                render(t, vars);
            }
        }
        None => {}
    }
    for rung in &mut step.escalate {
        if let Some(t) = &mut rung.title {
            render(t, vars);
        }
        if let Some(t) = rung.verify.as_mut().and_then(|v| v.title.as_mut()) {
            render(t, vars);
        }
    }
}

fn render(title: &mut Sp<String>, vars: &Value) {
    if let Ok(text) = expr::render(&title.value, vars) {
        title.value = text;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_title_is_rendered_with_params_and_a_bad_one_is_kept() {
        let rb = crate::runbook::parse_str(
            r#"version: 1
name: t
title: Disk above {{params.pct}} %
params:
  pct: { default: 90 }
steps:
  - check: Usage over {{params.pct}}
    id: c
    shell: { argv: ["true"] }
  - action: Free {{params.pct}}
    id: a
    escalate:
      - title: rung {{params.pct}}
        shell: { argv: ["true"] }
    verify:
      title: below {{params.pct}}
      shell: { argv: ["true"] }
"#,
            std::path::Path::new("t.yaml"),
        )
        .expect("a valid runbook");
        let params = serde_json::json!({"pct": 95});
        let t = titled(&rb, params.as_object().expect("a map"));
        assert_eq!(t.title.value, "Disk above 95 %");
        assert_eq!(t.steps[0].title(), "Usage over 95");
        assert_eq!(t.steps[1].title(), "Free 95");
        assert_eq!(
            t.steps[1].escalate[0]
                .title
                .as_ref()
                .map(|s| s.value.as_str()),
            Some("rung 95")
        );
        assert_eq!(
            t.steps[1]
                .verification()
                .and_then(|v| v.title.as_ref())
                .map(|s| s.value.as_str()),
            Some("below 95")
        );
        let missing = titled(&rb, &serde_json::Map::new());
        assert_eq!(missing.title.value, "Disk above {{params.pct}} %");
    }

    /// The cheap "nothing to render" check must see every title that is rendered:
    /// a runbook whose only templated title is in one position gets it rendered.
    #[test]
    fn a_single_templated_title_anywhere_is_rendered_and_none_borrows_the_runbook() {
        let head = "version: 1\nname: t\nparams:\n  p: { default: 7 }\n";
        let cases = [
            (
                "title: T {{params.p}}\nsteps:\n  - check: c\n    id: c\n    shell: { argv: [\"true\"] }\n",
                "T 7",
            ),
            (
                "title: T\nsteps:\n  - check: c {{params.p}}\n    id: c\n    shell: { argv: [\"true\"] }\n",
                "c 7",
            ),
            (
                "title: T\nsteps:\n  - manual: m {{params.p}}\n    id: m\n    instructions: do it\n",
                "m 7",
            ),
            (
                "title: T\nsteps:\n  - verify: v {{params.p}}\n    id: v\n    shell: { argv: [\"true\"] }\n",
                "v 7",
            ),
            (
                "title: T\nsteps:\n  - action: a\n    id: a\n    shell: { argv: [\"true\"] }\n    verify:\n      title: b {{params.p}}\n      shell: { argv: [\"true\"] }\n",
                "b 7",
            ),
            (
                "title: T\nsteps:\n  - action: a\n    id: a\n    escalate:\n      - title: r {{params.p}}\n        shell: { argv: [\"true\"] }\n    verify:\n      title: b\n      shell: { argv: [\"true\"] }\n",
                "r 7",
            ),
            (
                "title: T\nsteps:\n  - action: a\n    id: a\n    escalate:\n      - title: r\n        shell: { argv: [\"true\"] }\n        verify:\n          title: rv {{params.p}}\n          shell: { argv: [\"true\"] }\n    verify:\n      title: b\n      shell: { argv: [\"true\"] }\n",
                "rv 7",
            ),
        ];
        let params = serde_json::json!({"p": 7});
        for (body, want) in cases {
            let src = format!("{head}{body}");
            let rb = crate::runbook::parse_str(&src, std::path::Path::new("t.yaml"))
                .unwrap_or_else(|e| panic!("{src}: {e:?}"));
            let t = titled(&rb, params.as_object().expect("a map"));
            assert!(matches!(t, Cow::Owned(_)), "{src}");
            let shown = serde_json::to_string(&*t).expect("serializes");
            assert!(shown.contains(want), "{want} not rendered in {src}");
        }
        let plain = crate::runbook::parse_str(
            &format!("{head}title: T\nsteps:\n  - check: c\n    id: c\n    shell: {{ argv: [\"true\"] }}\n"),
            std::path::Path::new("t.yaml"),
        )
        .expect("a valid runbook");
        assert!(matches!(
            titled(&plain, params.as_object().expect("a map")),
            Cow::Borrowed(_)
        ));
    }
}
