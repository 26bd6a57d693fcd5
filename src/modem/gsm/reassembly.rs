//! Reassembly of inbound multipart messages: how parts are told apart.

/// Key of an inbound multipart message: sender, reference, total.
pub(super) type PartsKey = (String, u32, u32);
