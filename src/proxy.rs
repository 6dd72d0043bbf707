//! State shared by every session of a running airlock: the loaded config
//! (swappable for hot reload), the policy gate, the cancel registry, the TLS
//! configs and the shutdown signal.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use airlock_protocol::pg::scram::ScramVerifier;

use crate::config::{Config, Identity};
use crate::pg::cancel::CancelRegistry;
use crate::pg::opening::ClientTlsSettings;
use crate::policy::engine::Engine;
use crate::policy::rules::load_rules;
use crate::policy::{AllowAll, Gate};
use crate::tls;

/// Everything derived from one version of the config.
pub struct Loaded {
    pub config: Arc<Config>,
    verifiers: HashMap<String, ScramVerifier>,
    upstream_tls: HashMap<String, Option<Arc<rustls::ClientConfig>>>,
    gate: Arc<dyn Gate>,
}

/// Why a config could not be put in force.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("{0}")]
    Rules(#[from] crate::policy::rules::RulesError),
}

impl Loaded {
    /// Builds the derived state: parsed verifiers, upstream TLS configs and
    /// the policy engine from the rule files.
    pub fn new(config: Config) -> Result<Loaded, LoadError> {
        let verifiers = config
            .identities
            .iter()
            .filter_map(|(name, i)| {
                ScramVerifier::parse(i.secret.get_ref())
                    .ok()
                    .map(|v| (name.clone(), v))
            })
            .collect();
        let mut upstream_tls = HashMap::new();
        for (name, t) in &config.targets {
            let ca = t.ca.as_ref().map(|c| c.get_ref().as_path());
            upstream_tls.insert(name.clone(), tls::client_config(t.tls, ca)?);
        }
        let gate: Arc<dyn Gate> = match &config.policy.rules {
            Some(path) => Arc::new(Engine::new(load_rules(path.get_ref())?)),
            None => Arc::new(AllowAll),
        };
        Ok(Loaded {
            config: Arc::new(config),
            verifiers,
            upstream_tls,
            gate,
        })
    }
}

pub struct Proxy {
    loaded: ArcSwap<Loaded>,
    pub cancels: Arc<CancelRegistry>,
    pub client_tls: Option<Arc<ClientTlsSettings>>,
    /// Key for mock SCRAM verifiers of unknown identities.
    pub mock_secret: [u8; 32],
    pub shutdown: watch::Receiver<bool>,
}

impl Proxy {
    pub fn new(config: Config, shutdown: watch::Receiver<bool>) -> Result<Proxy, LoadError> {
        let client_tls = match &config.tls {
            Some(t) => Some(Arc::new(ClientTlsSettings {
                acceptor: TlsAcceptor::from(tls::server_config(t.cert.get_ref(), t.key.get_ref())?),
                require: t.require,
            })),
            None => None,
        };
        let mock_secret = mock_secret(&config);
        Ok(Proxy {
            loaded: ArcSwap::from_pointee(Loaded::new(config)?),
            cancels: Arc::new(CancelRegistry::default()),
            client_tls,
            mock_secret,
            shutdown,
        })
    }

    /// Re-reads the config file and the rules it names. A valid new version
    /// takes effect for the next statement of every session; an invalid one
    /// is reported and the running version stays.
    pub fn reload(&self) -> Result<(), LoadError> {
        let path = self.config().source.clone();
        let config = Config::load(&path)?;
        let loaded = Loaded::new(config)?;
        let rules = loaded
            .config
            .policy
            .rules
            .as_ref()
            .map(|r| r.get_ref().display().to_string());
        self.loaded.store(Arc::new(loaded));
        tracing::info!(config = %path.display(), rules = rules.as_deref().unwrap_or("none"), "configuration reloaded");
        Ok(())
    }

    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.loaded.load().config)
    }

    pub fn gate(&self) -> Arc<dyn Gate> {
        Arc::clone(&self.loaded.load().gate)
    }

    /// The verifier of an identity, parsed when the config was loaded.
    pub fn verifier(&self, name: &str, _identity: &Identity) -> Option<ScramVerifier> {
        self.loaded.load().verifiers.get(name).cloned()
    }

    pub fn upstream_tls(&self, target: &str) -> Option<Arc<rustls::ClientConfig>> {
        self.loaded
            .load()
            .upstream_tls
            .get(target)
            .cloned()
            .flatten()
    }
}

/// The key for mock verifiers of unknown identities. It must be secret and
/// stable across restarts (a salt that changed on restart would set unknown
/// names apart from real ones), so it is derived from the identities'
/// verifiers, which only the operator knows, instead of being random.
fn mock_secret(config: &Config) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"airlock mock verifier key\0");
    for (name, identity) in &config.identities {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(identity.secret.get_ref().as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}
