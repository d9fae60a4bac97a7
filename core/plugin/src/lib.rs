//! Dynamic plugins (work in progress).
