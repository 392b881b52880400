//! The one place where errors become HTTP statuses and MLflow error codes
//! (`{"error_code": ..., "message": ...}`).

use crate::protocol::BadRequest;
use crate::queue::PoolError;

/// An error response.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "INVALID_PARAMETER_VALUE", message)
    }

    pub fn not_found(path: &str) -> ApiError {
        ApiError::new(
            404,
            "ENDPOINT_NOT_FOUND",
            format!("no route for {path}; see README.md for the API"),
        )
    }

    pub fn method_not_allowed(method: &str, path: &str, allowed: &str) -> ApiError {
        ApiError::new(
            405,
            "BAD_REQUEST",
            format!("{method} is not allowed on {path}; use {allowed}"),
        )
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            413,
            "MAX_READ_SIZE_EXCEEDED",
            format!("the request body is larger than {limit} bytes (max_body_bytes)"),
        )
    }

    pub fn unsupported_media_type(got: &str, expected: &str) -> ApiError {
        ApiError::new(
            415,
            "BAD_REQUEST",
            format!("content type '{got}' is not supported here; send {expected}"),
        )
    }

    pub fn no_model(why: &str) -> ApiError {
        let mut err = ApiError::new(
            503,
            "TEMPORARILY_UNAVAILABLE",
            format!("no model is live: {why}"),
        );
        err.retry_after = Some(5);
        err
    }

    pub fn body(&self) -> String {
        serde_json::json!({ "error_code": self.code, "message": self.message }).to_string()
    }
}

impl From<BadRequest> for ApiError {
    fn from(err: BadRequest) -> Self {
        ApiError::new(400, err.code, err.message)
    }
}

impl From<PoolError> for ApiError {
    fn from(err: PoolError) -> Self {
        match err {
            PoolError::QueueFull { .. } => {
                let mut api = ApiError::new(429, "RESOURCE_EXHAUSTED", err.to_string());
                api.retry_after = Some(1);
                api
            }
            PoolError::DeadlineExceeded => ApiError::new(504, "DEADLINE_EXCEEDED", err.to_string()),
            PoolError::ShuttingDown => {
                let mut api = ApiError::new(503, "TEMPORARILY_UNAVAILABLE", err.to_string());
                api.retry_after = Some(1);
                api
            }
            PoolError::Infer(crate::model::InferError::BadInput(message)) => {
                ApiError::invalid(message)
            }
            PoolError::Infer(crate::model::InferError::Runtime(message)) => ApiError::new(
                500,
                "INTERNAL_ERROR",
                format!("inference failed: {message}"),
            ),
            PoolError::Panicked(message) => ApiError::new(
                500,
                "INTERNAL_ERROR",
                format!("inference failed: {message}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::InferError;

    #[test]
    fn mapping() {
        let cases: Vec<(ApiError, u16, &str, Option<u64>)> = vec![
            (
                PoolError::QueueFull { capacity: 8 }.into(),
                429,
                "RESOURCE_EXHAUSTED",
                Some(1),
            ),
            (
                PoolError::DeadlineExceeded.into(),
                504,
                "DEADLINE_EXCEEDED",
                None,
            ),
            (
                PoolError::ShuttingDown.into(),
                503,
                "TEMPORARILY_UNAVAILABLE",
                Some(1),
            ),
            (
                PoolError::Infer(InferError::BadInput("x".into())).into(),
                400,
                "INVALID_PARAMETER_VALUE",
                None,
            ),
            (
                PoolError::Infer(InferError::Runtime("x".into())).into(),
                500,
                "INTERNAL_ERROR",
                None,
            ),
            (
                BadRequest {
                    code: "BAD_REQUEST",
                    message: "m".into(),
                }
                .into(),
                400,
                "BAD_REQUEST",
                None,
            ),
            (ApiError::too_large(10), 413, "MAX_READ_SIZE_EXCEEDED", None),
            (
                ApiError::unsupported_media_type("text/plain", "application/json"),
                415,
                "BAD_REQUEST",
                None,
            ),
            (
                ApiError::no_model("loading"),
                503,
                "TEMPORARILY_UNAVAILABLE",
                Some(5),
            ),
            (ApiError::not_found("/x"), 404, "ENDPOINT_NOT_FOUND", None),
        ];
        for (err, status, code, retry_after) in cases {
            assert_eq!(
                (err.status, err.code, err.retry_after),
                (status, code, retry_after),
                "{err:?}"
            );
            let body: serde_json::Value = serde_json::from_str(&err.body()).unwrap();
            assert_eq!(body["error_code"], code);
            assert!(body["message"].is_string());
        }
    }
}
