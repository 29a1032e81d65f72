//! The browser UI, embedded in the binary: plain HTML, CSS and JavaScript,
//! no build step.

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("../assets/index.html"),
};

/// The asset served at `path`; unknown non-file paths get the UI page so
/// that client-side routes survive a reload.
pub fn asset(path: &str) -> Option<Asset> {
    match path {
        "/" | "/index.html" => Some(INDEX),
        "/app.js" => Some(Asset {
            content_type: "text/javascript; charset=utf-8",
            body: include_bytes!("../assets/app.js"),
        }),
        "/app.css" => Some(Asset {
            content_type: "text/css; charset=utf-8",
            body: include_bytes!("../assets/app.css"),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_links_its_assets() {
        let index = std::str::from_utf8(INDEX.body).unwrap();
        assert!(index.contains("app.js") && index.contains("app.css"));
        assert!(asset("/app.js").is_some());
        assert!(asset("/app.css").is_some());
        assert!(asset("/nope.js").is_none());
    }
}
