//! One contract suite for the store and queue ports, run against every backend.
