//! Helpers shared by the workspace-level contract and end-to-end tests.
