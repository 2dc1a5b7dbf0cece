use super::Global;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Stop at every gate for a person to approve.
    #[arg(long)]
    pub interactive: bool,
}

pub fn run(_args: Args, _g: &Global) -> i32 {
    super::not_yet("demo")
}
