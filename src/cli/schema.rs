//! `runbook schema`: print the JSON Schema of the runbook format.

use super::Global;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, _g: &Global) -> i32 {
    print!("{}", crate::runbook::schema::schema_json());
    crate::exit::OK
}
