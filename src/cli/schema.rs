//! `runbook schema`: print the JSON Schema of the runbook format.

use super::Global;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  runbook schema > runbook.schema.json     for editor completion of runbook YAML")]
pub struct Args {}

pub fn run(_args: Args, _g: &Global) -> i32 {
    print!("{}", crate::runbook::schema::schema_json());
    crate::exit::OK
}
