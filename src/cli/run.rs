use std::path::PathBuf;

use super::Global;

/// Flags shared by `run` and `resume`: who approves what, and how to reach clusters.
#[derive(Debug, Clone, clap::Args)]
pub struct ApprovalArgs {
    /// Approve every gate.
    #[arg(long)]
    pub yes: bool,
    /// Approve the gate of this step (repeatable).
    #[arg(long = "approve", value_name = "STEP_ID")]
    pub approve: Vec<String>,
    /// Who approves (default: $USER).
    #[arg(long, env = "RUNBOOK_OPERATOR")]
    pub operator: Option<String>,
    /// Write the postmortem to this file when the run ends.
    #[arg(long, value_name = "FILE")]
    pub postmortem: Option<PathBuf>,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// How to reach Kubernetes, the way kubectl does it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KubeArgs {
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    #[arg(long)]
    pub context: Option<String>,
    /// Default namespace for kube steps that name none.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Client-side limit of Kubernetes API requests per second (0 = unlimited).
    #[arg(long, default_value_t = 20.0)]
    pub kube_qps: f64,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The runbook file.
    pub file: PathBuf,
    /// A parameter, as name=value (repeatable).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Run the checks and print the plan of every action without performing it.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub approval: ApprovalArgs,
}

#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// The run to continue (see `runbook runs`).
    pub run_id: String,
    #[command(flatten)]
    pub approval: ApprovalArgs,
}

pub fn run(_args: RunArgs, _g: &Global) -> i32 {
    super::not_yet("run")
}

pub fn resume(_args: ResumeArgs, _g: &Global) -> i32 {
    super::not_yet("resume")
}
