//! Balie server.
