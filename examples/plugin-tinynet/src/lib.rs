//! TinyNet example plugin (work in progress).
