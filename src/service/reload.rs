//! Policy reloads: on request or when the file's content changes, and the
//! live sessions re-evaluated under the new policy.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::callout::Callout;
use crate::config::Config;
use crate::live::Live;

/// Reloads the policy (on a reload request or a file change) and has the
/// live sessions re-evaluated under the new one.
pub(super) struct Reloader {
    pub(super) config: Config,
    pub(super) callout: Arc<Callout>,
    pub(super) live: Option<Arc<Live>>,
}

impl Reloader {
    pub(super) fn reload(&self) {
        let path = self.config.resolve(&self.config.policy.file);
        match self.callout.decider().reload_policy(&path) {
            Ok(p) => {
                for w in p.warnings() {
                    tracing::warn!(warning = %w, "policy warning");
                }
                tracing::info!(rules = p.rule_count(), "policy reloaded");
                if let Some(live) = &self.live {
                    live.policy_reloaded(self.callout.clone(), p);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "policy reload failed; keeping the previous policy")
            }
        }
    }
}

/// Reloads the policy when its content changes. Content, not mtime: editors
/// and Kubernetes ConfigMap updates (symlink swaps) both change it.
pub(super) async fn watch_policy(reloader: Arc<Reloader>) {
    let path = reloader.config.resolve(&reloader.config.policy.file);
    let every: Duration = reloader.config.policy.watch_interval;
    let digest = |p: &std::path::Path| std::fs::read(p).ok().map(Sha256::digest);
    let mut last = digest(&path);
    loop {
        tokio::time::sleep(every).await;
        let now = digest(&path);
        if now.is_some() && now != last {
            last = now;
            tracing::info!(file = %path.display(), "policy file changed");
            reloader.reload();
        }
    }
}
