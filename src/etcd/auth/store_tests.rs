//! Tests of the auth store rules.
