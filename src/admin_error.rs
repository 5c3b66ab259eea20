//! Errors of the admin use cases (organizations, agents). Mapped to `{"error",
//! "error_description"}` JSON with the right status at the HTTP edge.

use crate::keys::KeyError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A field failed validation; the message names it.
    #[error("{field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    #[error("{0}")]
    Conflict(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AdminError {
    pub fn field(field: &'static str, message: impl Into<String>) -> Self {
        AdminError::Field {
            field,
            message: message.into(),
        }
    }
}

impl From<StorageError> for AdminError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => AdminError::NotFound,
            StorageError::Conflict { what } => {
                AdminError::Conflict(format!("{what} already exists"))
            }
            other => AdminError::Internal(other.to_string()),
        }
    }
}

impl From<KeyError> for AdminError {
    fn from(e: KeyError) -> Self {
        AdminError::Internal(e.to_string())
    }
}
