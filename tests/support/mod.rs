//! Helpers shared by the workspace-level tests.
#![allow(dead_code)]

pub mod doubles;
pub mod inprocess;
pub mod moto;
pub mod moto_inspect;
pub mod serve;
pub mod webdriver;
