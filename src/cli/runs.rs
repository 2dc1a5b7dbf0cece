use super::Global;

#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct NoteArgs {
    /// The run to annotate.
    pub run_id: String,
    /// The note.
    pub text: String,
    /// Who writes the note (default: $USER).
    #[arg(long, env = "RUNBOOK_OPERATOR")]
    pub operator: Option<String>,
}

pub fn runs(_args: RunsArgs, _g: &Global) -> i32 {
    super::not_yet("runs")
}

pub fn note(_args: NoteArgs, _g: &Global) -> i32 {
    super::not_yet("note")
}
