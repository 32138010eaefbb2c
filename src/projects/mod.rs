//! The example tenant feature: projects. Copy this folder to add a product table.

pub mod repo;

use uuid::Uuid;

use crate::error::AppError;

/// A project name: 1–200 characters after trimming.
pub struct ProjectName(String);

impl ProjectName {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let name = raw.trim();
        if !(1..=200).contains(&name.chars().count()) {
            return Err(AppError::validation("name", "must be 1 to 200 characters long"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A project description: at most 10,000 characters.
pub fn parse_description(raw: Option<&str>) -> Result<Option<&str>, AppError> {
    match raw {
        Some(text) if text.chars().count() > 10_000 => {
            Err(AppError::validation("description", "must be at most 10000 characters long"))
        }
        other => Ok(other),
    }
}

/// Parses a project id; anything that is not one cannot name a project.
pub fn parse_id(raw: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(raw).map_err(|_| AppError::NotFound("project"))
}
