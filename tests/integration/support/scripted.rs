//! What scripted test providers share: resolving a `shell` operation the way the real
//! provider does (templated argv, never a shell string), without running anything.

use runbook::providers::{OpError, Resolved};
use runbook::runbook::model::OpRef;
use serde_json::{Value, json};

/// Resolve a `shell` operation to its rendered argv; `display` is the argv joined by
/// spaces, which is what scripts match on.
pub fn resolve_shell(op: OpRef<'_>, vars: &Value, mutating: bool) -> Result<Resolved, OpError> {
    let OpRef::Shell(op) = op else {
        return Err(OpError::Invalid("scripted provider: shell only".into()));
    };
    let argv = op
        .argv
        .iter()
        .map(|a| runbook::expr::render(a, vars).map_err(|e| OpError::Invalid(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Resolved {
        provider: "shell".into(),
        display: argv.join(" "),
        op: json!(argv),
        mutating,
    })
}
