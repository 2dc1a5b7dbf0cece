use super::Global;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, _g: &Global) -> i32 {
    super::not_yet("schema")
}
