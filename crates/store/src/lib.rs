//! Storage for Balie.
