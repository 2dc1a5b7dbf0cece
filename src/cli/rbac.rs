//! `runbook rbac [PATH...]`: print the least-privilege Role and ClusterRole the
//! runbooks need (computed from their kube verbs and kinds; `runbook::rbac`).

use std::path::PathBuf;

use super::Global;
use crate::runbook::rbac::{self, RbacOpts};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  runbook rbac runbooks/ --namespace prod
  runbook rbac runbooks/ -n prod --service-account runbook:runbook | kubectl apply -f -")]
pub struct Args {
    /// Runbook files or folders (default: runbooks/), as for `runbook lint`.
    pub paths: Vec<PathBuf>,
    /// The namespace of the Role (default: the runbooks' `kube.namespace` when they
    /// agree, else `default`).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// The name of the Role, ClusterRole and bindings.
    #[arg(long, default_value = "runbook")]
    pub name: String,
    /// Also bind them to this ServiceAccount, as NAMESPACE:NAME.
    #[arg(long, value_name = "NAMESPACE:NAME")]
    pub service_account: Option<String>,
}

pub fn run(args: Args, _g: &Global) -> i32 {
    let files = match super::lint::runbooks_in(args.paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return crate::exit::USAGE;
        }
    };
    let mut loaded = Vec::new();
    for f in &files {
        match crate::runbook::load(f) {
            Ok(l) => loaded.push(l),
            Err(e) => {
                crate::cli::print_error(&e.to_string());
                eprintln!(
                    "error: {} does not lint clean; fix it first (`runbook lint`)",
                    f.display()
                );
                return crate::exit::USAGE;
            }
        }
    }
    let service_account = match args.service_account.as_deref().map(|s| s.split_once(':')) {
        None => None,
        Some(Some((ns, name))) if !ns.is_empty() && !name.is_empty() => {
            Some((ns.to_owned(), name.to_owned()))
        }
        Some(_) => {
            eprintln!("error: --service-account takes NAMESPACE:NAME, e.g. runbook:runbook");
            return crate::exit::USAGE;
        }
    };
    let namespace = args.namespace.unwrap_or_else(|| {
        let named: std::collections::BTreeSet<String> = loaded
            .iter()
            .filter_map(|l| l.runbook.kube.as_ref()?.namespace.as_ref())
            .map(|n| n.value.clone())
            .collect();
        match named.len() {
            1 => named.into_iter().next().unwrap_or_default(),
            _ => "default".to_owned(),
        }
    });
    let runbooks: Vec<&crate::runbook::model::Runbook> =
        loaded.iter().map(|l| &l.runbook).collect();
    let needs = rbac::needs(&runbooks);
    for u in &needs.unknown {
        eprintln!("warning: not covered: {u}");
    }
    print!(
        "{}",
        rbac::to_yaml(
            &needs,
            &RbacOpts {
                namespace,
                name: args.name,
                service_account,
            },
        )
    );
    crate::exit::OK
}
