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
use crate::policy::{AllowAll, Gate};
use crate::tls;

/// Everything derived from one version of the config.
pub struct Loaded {
    pub config: Arc<Config>,
    verifiers: HashMap<String, ScramVerifier>,
    upstream_tls: HashMap<String, Option<Arc<rustls::ClientConfig>>>,
    gate: Arc<dyn Gate>,
}

impl Loaded {
    /// Builds the derived state; fails on unreadable TLS material.
    pub fn new(config: Config) -> Result<Loaded, tls::TlsError> {
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
        Ok(Loaded {
            config: Arc::new(config),
            verifiers,
            upstream_tls,
            gate: Arc::new(AllowAll),
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
    pub fn new(config: Config, shutdown: watch::Receiver<bool>) -> Result<Proxy, tls::TlsError> {
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
