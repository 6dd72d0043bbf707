//! Config files shipped in the repo must load.

use std::path::Path;

#[test]
fn docker_config_parses() {
    std::env::set_var("DEMO_UPSTREAM_PASSWORD", "x");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/airlock.toml");
    airlock::config::Config::load(&path).unwrap();
}
