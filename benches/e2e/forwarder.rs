//! A null proxy: the floor of what any proxy process costs.
//!
//! The MySQL part has no PgBouncer to compare with, so it also runs sysbench
//! through this: a TCP forwarder that copies bytes both ways and does
//! nothing else (tokio, one thread, `TCP_NODELAY`, one `copy_bidirectional`
//! per connection). With everything pinned to one CPU, each query through
//! any proxy costs two more context switches and four more socket calls
//! than a direct one; the forwarder measures that price alone, so that
//! "airlock / forwarder" is what airlock's own work (parsing, policy,
//! masking, audit) costs on top of it.
//!
//! It runs as a separate process, like a real proxy: the bench binary
//! re-executes itself with `--forward=LISTEN_PORT:UPSTREAM_PORT`.

use std::process::Stdio;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};

use super::{pinned, Proc};

/// The argument that makes the bench binary a forwarder.
pub const ARG: &str = "--forward=";

/// Starts a pinned forwarder process from 127.0.0.1:`port` to
/// 127.0.0.1:`upstream`.
pub fn spawn(port: u16, upstream: u16) -> anyhow::Result<Proc> {
    let exe = std::env::current_exe().context("find the bench binary")?;
    let child = pinned(exe)
        .arg(format!("{ARG}{port}:{upstream}"))
        .stdout(Stdio::null())
        .spawn()
        .context("start the forwarder")?;
    Ok(Proc(child))
}

/// The forwarder's main: `spec` is `LISTEN_PORT:UPSTREAM_PORT`. Runs until
/// killed.
pub fn main(spec: &str) -> anyhow::Result<()> {
    let (port, upstream) = spec
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
        .with_context(|| format!("{ARG}{spec}: expected LISTEN_PORT:UPSTREAM_PORT"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        loop {
            let (mut client, _) = listener.accept().await?;
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    })
}
