//! Field-level validation errors, collected so a client learns every problem at once.

use std::collections::BTreeMap;
use std::fmt;

/// Field name → human-readable messages. Empty means valid.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct ValidationErrors {
    fields: BTreeMap<String, Vec<String>>,
}

impl ValidationErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// A single-field error.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut errors = Self::new();
        errors.add(field, message);
        errors
    }

    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.fields.entry(field.to_owned()).or_default().push(message.into());
    }

    /// Records the error of `result` under `field` and returns its value, if any.
    pub fn check<T>(&mut self, field: &str, result: Result<T, FieldError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.add(field, error.to_string());
                None
            }
        }
    }

    pub fn merge(&mut self, other: ValidationErrors) {
        for (field, messages) in other.fields {
            self.fields.entry(field).or_default().extend(messages);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn fields(&self) -> &BTreeMap<String, Vec<String>> {
        &self.fields
    }

    /// `Ok(value)` when no error was recorded.
    pub fn into_result<T>(self, value: impl FnOnce() -> T) -> Result<T, ValidationErrors> {
        if self.is_empty() { Ok(value()) } else { Err(self) }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (field, messages) in &self.fields {
            for message in messages {
                if !first {
                    f.write_str("; ")?;
                }
                write!(f, "{field}: {message}")?;
                first = false;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Why one field's value is refused. Its message is what a client reads under the field's
/// name, so the wording is part of the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// A number outside its bounds.
    #[error("must be between {min} and {max}")]
    OutOfRange {
        /// The smallest value allowed.
        min: i64,
        /// The largest value allowed.
        max: i64,
    },
    /// Text too short or too long, in characters.
    #[error("must be {min} to {max} characters")]
    Length {
        /// The fewest characters allowed.
        min: usize,
        /// The most characters allowed.
        max: usize,
    },
    /// Not an e-mail address.
    #[error("must be a valid e-mail address")]
    Email,
    /// Not a phone number.
    #[error("must be 9 to 15 digits (dashes and spaces allowed)")]
    Phone,
    /// Text not in the expected format, described.
    #[error("must be {0}")]
    Format(&'static str),
}

/// A name that is no value of its enum (a role, a status, a reason…), sent by a client or
/// read from storage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`")]
pub struct UnknownValue {
    /// What was expected: `role`, `order status`, …
    pub kind: &'static str,
    /// What was given.
    pub value: String,
}

impl UnknownValue {
    /// `value` is no `kind`.
    pub fn new(kind: &'static str, value: impl Into<String>) -> Self {
        Self {
            kind,
            value: value.into(),
        }
    }
}

/// Checks that `value` lies in `min..=max`.
pub fn in_range(value: i64, min: i64, max: i64) -> Result<i64, FieldError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(FieldError::OutOfRange { min, max })
    }
}

/// Trims `value` and checks its length in characters.
pub fn text(value: &str, min: usize, max: usize) -> Result<String, FieldError> {
    let trimmed = value.trim();
    let len = trimmed.chars().count();
    if len < min || len > max {
        Err(FieldError::Length { min, max })
    } else {
        Ok(trimmed.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_field_error() {
        let mut errors = ValidationErrors::new();
        assert_eq!(errors.check("a", in_range(5, 1, 3)), None);
        assert_eq!(errors.check("b", text("  ", 1, 3)), None);
        assert_eq!(errors.check("c", in_range(2, 1, 3)), Some(2));
        assert_eq!(errors.fields().len(), 2);
        assert_eq!(
            errors.to_string(),
            "a: must be between 1 and 3; b: must be 1 to 3 characters"
        );
    }
}
