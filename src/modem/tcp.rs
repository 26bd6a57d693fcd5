//! The `tcp` transport: a modem behind a serial-to-TCP bridge (ser2net,
//! a modem bank). Only connecting lives here; the AT engine and the driver
//! logic are the same for every transport.

use std::time::Duration;

use tokio::net::TcpStream;

use super::at::Transport;
use crate::domain::TcpConfig;

/// Longest wait for the bridge to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn open(config: &TcpConfig) -> Result<Box<dyn Transport>, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&config.address))
        .await
        .map_err(|_| {
            format!(
                "no answer from {} within {CONNECT_TIMEOUT:?}",
                config.address
            )
        })?
        .map_err(|e| format!("cannot connect to {}: {e}", config.address))?;
    // AT commands are small and latency matters more than packing them.
    let _ = stream.set_nodelay(true);
    // A bridge that vanishes without a FIN is noticed by the silent-modem
    // check (every command has a timeout), so no keepalive tuning here.
    Ok(Box::new(stream))
}
