//! Query-string parsing shared by the routes: unknown names and repeated
//! single values are refused, with a message naming the parameter.

use crate::error::ApiError;

/// Query parameters as (name, value) pairs; refuses names outside `allowed`
/// and values that are not UTF-8.
pub(crate) fn query_pairs(
    raw: Option<&str>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let mut pairs = Vec::new();
    for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        if name.contains('\u{FFFD}') || value.contains('\u{FFFD}') {
            return Err(ApiError::bad_request(
                "query parameters must be percent-encoded UTF-8",
            ));
        }
        if !allowed.contains(&name.as_ref()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {name:?}: expected one of {}",
                allowed.join(", ")
            )));
        }
        pairs.push((name.into_owned(), value.into_owned()));
    }
    Ok(pairs)
}

/// The single value of `name`, refusing repeats.
pub(crate) fn single(pairs: &[(String, String)], name: &str) -> Result<Option<String>, ApiError> {
    let mut values = pairs.iter().filter(|(key, _)| key == name);
    let first = values.next().map(|(_, value)| value.clone());
    if values.next().is_some() {
        return Err(ApiError::bad_request(format!(
            "query parameter {name:?} is given more than once"
        )));
    }
    Ok(first)
}

pub(crate) fn parse_number<T: std::str::FromStr>(
    name: &str,
    value: Option<String>,
) -> Result<Option<T>, ApiError> {
    value
        .map(|text| {
            text.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "query parameter {name:?}: {text:?} is not a valid number"
                ))
            })
        })
        .transpose()
}
