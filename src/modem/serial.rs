//! The `serial` transport: a modem on a local serial port, through
//! tokio-serial. Only opening the port lives here; the AT engine and the
//! driver logic are the same for every transport.

use std::time::Duration;

use tokio_serial::SerialPortBuilderExt;

use super::at::Transport;
use crate::domain::{FlowControl, SerialConfig};

/// Opens the port in raw 8N1 mode with the configured rate and flow control.
pub fn open(config: &SerialConfig) -> Result<Box<dyn Transport>, String> {
    let flow = match config.flow_control {
        FlowControl::None => tokio_serial::FlowControl::None,
        FlowControl::Hardware => tokio_serial::FlowControl::Hardware,
        FlowControl::Software => tokio_serial::FlowControl::Software,
    };
    let port = tokio_serial::new(&config.port, config.baud)
        .data_bits(tokio_serial::DataBits::Eight)
        .parity(tokio_serial::Parity::None)
        .stop_bits(tokio_serial::StopBits::One)
        .flow_control(flow)
        .timeout(Duration::from_millis(100))
        .open_native_async()
        .map_err(|e| format!("cannot open {}: {e}", config.port))?;
    Ok(Box::new(port))
}
