//! Developer tools that ship in the `switchboard` binary. They are not a
//! stage of the data flow: the server never calls them, they stand beside
//! it to exercise it.
//!
//! - [`modem_sim`]: `switchboard modem-sim`, a simulated GSM modem speaking
//!   AT commands on a pseudo-terminal or TCP port, which the real GSM driver
//!   (`modem::gsm`) is tested and demonstrated against.

pub mod modem_sim;
