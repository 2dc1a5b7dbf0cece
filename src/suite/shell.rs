//! The shell provider of a lab run: production's, with the lab's kubeconfig.
//!
//! A runbook's `shell:` steps often run `kubectl`. Against a lab they must reach the
//! lab, not whatever cluster the person running `runbook test` is logged in to, so
//! every shell step of a lab run gets `KUBECONFIG` pointing at a kubeconfig for the
//! lab (unless the step sets `KUBECONFIG` itself). It is added when the step executes,
//! not when it is resolved, so the journal and the plan show the step as written.

use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::providers::shell::ShellCall;
use crate::providers::{Defaults, ExecCtx, OpError, Provider, Resolved};
use crate::runbook::model::OpRef;

/// Wraps the shell provider; `kubeconfig` is the lab's (see [`crate::lab::write_kubeconfig`]).
pub struct LabShell {
    pub inner: Arc<dyn Provider>,
    pub kubeconfig: PathBuf,
}

impl Provider for LabShell {
    fn resolve(
        &self,
        op: OpRef<'_>,
        vars: &Value,
        defaults: &Defaults,
    ) -> Result<Resolved, OpError> {
        self.inner.resolve(op, vars, defaults)
    }

    fn execute<'a>(
        &'a self,
        op: &'a Resolved,
        cx: &'a ExecCtx,
    ) -> BoxFuture<'a, Result<Value, OpError>> {
        Box::pin(async move {
            let mut call: ShellCall = op.decode()?;
            call.env
                .entry("KUBECONFIG".to_string())
                .or_insert_with(|| self.kubeconfig.display().to_string());
            let with_lab = Resolved {
                op: serde_json::to_value(&call).map_err(|e| OpError::Invalid(e.to_string()))?,
                ..op.clone()
            };
            self.inner.execute(&with_lab, cx).await
        })
    }
}
