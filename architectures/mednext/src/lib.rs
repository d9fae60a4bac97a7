//! MedNeXt v1 (work in progress).
