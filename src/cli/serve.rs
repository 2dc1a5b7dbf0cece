//! `runbook serve`: alerts start runbooks; people approve from a web page or the API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::Global;
use super::run::KubeArgs;
use crate::engine::EngineOpts;
use crate::exit;
use crate::providers::Providers;
use crate::runbook::Loaded;
use crate::serve::{self, Config, ProviderFactory};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  runbook serve --runbooks runbooks/                          http://127.0.0.1:8080, state in .runbook
  RUNBOOK_SERVE_TOKENS_FILE=/etc/runbook/tokens runbook serve --runbooks runbooks/
  runbook serve --runbooks rb/ --listen 0.0.0.0:8080 --tokens-file tokens --webhook-token-file am-token
  runbook serve --runbooks runbooks/ -p prometheus=http://prometheus.monitoring:9090

Alertmanager: a webhook receiver with url http://HOST:8080/api/v1/alerts/alertmanager and
http_config.authorization.credentials_file holding the webhook token. See docs/serve.md.")]
pub struct Args {
    /// The folder of runbook files that alerts and the API may start.
    #[arg(long, value_name = "DIR")]
    pub runbooks: PathBuf,
    /// Address to listen on. A non-loopback address needs per-person tokens (or
    /// --trusted-header) and a webhook token.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// File of per-person tokens, one `name:token` a line.
    #[arg(long, value_name = "FILE", env = "RUNBOOK_SERVE_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// A header an authenticating proxy in front sets to the person's name (for
    /// example X-Forwarded-User). Only use it when nothing else can reach the port.
    #[arg(long, value_name = "HEADER")]
    pub trusted_header: Option<String>,
    /// File holding the bearer token Alertmanager sends (http_config.authorization).
    #[arg(long, value_name = "FILE")]
    pub webhook_token_file: Option<PathBuf>,
    /// The webhook's bearer token itself (prefer --webhook-token-file; not argv).
    #[arg(
        long = "webhook-token-env",
        hide = true,
        env = "RUNBOOK_SERVE_WEBHOOK_TOKEN"
    )]
    pub webhook_token: Option<String>,
    /// Largest request body in bytes (a bigger one is answered 413).
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024)]
    pub max_body: usize,
    /// Requests that change something (and webhooks) a second from one address;
    /// more are answered 429. 0: no limit.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub rate_limit: u32,
    /// Tell this webhook about every run the server drives: started, waiting at a
    /// gate or manual step (with the plan and a link to approve), failed, finished
    /// (repeatable; besides each runbook's `notify:`). Slack's format for
    /// https://hooks.slack.com/… URLs, else a generic JSON webhook
    #[arg(long = "notify", value_name = "URL")]
    pub notify: Vec<String>,
    /// Where people reach this server (behind a proxy, or bound to 0.0.0.0): the base
    /// of the links in notifications [default: http:// and the listening address]
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// A param for every run this server starts, as name=value (repeatable): only
    /// runbooks that declare the param take it; the alert's `params_from_alert:` and
    /// an API start's params win over it. Not for secrets (argv is visible to `ps`)
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Connects a run's providers the way `runbook run` does.
struct CliProviders {
    kube: KubeArgs,
}

impl ProviderFactory for CliProviders {
    fn providers<'a>(
        &'a self,
        loaded: &'a Loaded,
        opts: &'a mut EngineOpts,
    ) -> BoxFuture<'a, Result<Providers, String>> {
        Box::pin(async move {
            let base = super::run::build_providers()?;
            opts.defaults.namespace = self.kube.namespace.clone();
            let needs = super::run::uses_kube(&loaded.runbook);
            super::run::add_kube(base, &self.kube, loaded.runbook.kube.as_ref(), needs, opts).await
        })
    }
}

pub fn run(args: Args, g: &Global) -> i32 {
    let tokens = match &args.tokens_file {
        Some(p) => match serve::load_tokens(p) {
            Ok(t) => t,
            Err(e) => {
                crate::cli::error_line!("error: {e}");
                return exit::USAGE;
            }
        },
        None => Default::default(),
    };
    let webhook_token = match (&args.webhook_token_file, &args.webhook_token) {
        (Some(p), _) => match std::fs::read_to_string(p) {
            Ok(t) if !t.trim().is_empty() => Some(t.trim().to_owned()),
            Ok(_) => {
                crate::cli::error_line!("error: {}: the webhook token file is empty", p.display());
                return exit::USAGE;
            }
            Err(e) => {
                crate::cli::error_line!("error: cannot read {}: {e}", p.display());
                return exit::USAGE;
            }
        },
        (None, Some(t)) if !t.trim().is_empty() => Some(t.trim().to_owned()),
        _ => None,
    };
    for url in &args.notify {
        if let Err(e) = crate::notify::Target::from_flag(url) {
            crate::cli::error_line!("error: {e}");
            return exit::USAGE;
        }
    }
    let mut params = Vec::new();
    for p in &args.params {
        match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => params.push((k.to_owned(), v.to_owned())),
            _ => {
                crate::cli::error_line!(
                    "error: `--param {p}`: write a parameter as name=value, e.g. `-p prometheus=http://prometheus:9090`"
                );
                return exit::USAGE;
            }
        }
    }
    let cfg = Config {
        listen: args.listen,
        runbooks: args.runbooks,
        state_dir: g.state_dir.clone(),
        tokens,
        trusted_header: args.trusted_header,
        webhook_token,
        max_body: args.max_body,
        rate_limit: args.rate_limit,
        providers: Arc::new(CliProviders { kube: args.kube }),
        notify: args.notify,
        public_url: args.public_url,
        params,
    };
    let rt = super::runtime();
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    rt.spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    let result = rt.block_on(serve::serve(cfg, cancel, |addr| {
        eprintln!("runbook serve: listening on http://{addr}");
    }));
    // Runs waiting at a gate stay journaled as waiting; the next start resumes them.
    rt.shutdown_background();
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            crate::cli::error_line!("error: {e}");
            match e {
                serve::ServeError::Config(_) => exit::USAGE,
                _ => exit::IO_ERROR,
            }
        }
    }
}
