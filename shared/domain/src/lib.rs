//! Voronka's domain: the model, the marketer-editable campaign files, signing, the ports adapters
//! implement, and the repositories that express every access pattern once over those ports.
//! Nothing here depends on AWS.

pub mod bots;
pub mod campaigns;
pub mod cost;
pub mod deps;
pub mod errors;
pub mod file_errors;
pub mod html;
pub mod journeys;
pub mod kpi;
pub mod model;
pub mod money;
pub mod ports;
pub mod repo;
pub mod scoring;
pub mod sending;
pub mod signing;
pub mod time;
