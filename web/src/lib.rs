//! The browser UI, embedded in the binary: plain HTML, CSS and JavaScript
//! modules, no build step and nothing fetched at run time.
//!
//! `index.html` loads `app.js`, a hash router (`#/explorer?topic=…`) over
//! one module per page: `overview.js`, `explorer.js`, `event.js`, `sql.js`
//! and `replay.js`. `selection.js` turns the explorer's URL state into the
//! filter parameters of the event routes and into replay selections (the
//! server writes any SQL); `util.js` holds the API
//! client and DOM helpers. Every page reads only the public HTTP API.

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// `("/name", KIND)`: the file `assets/name`, served at `/name`.
macro_rules! assets {
    ($(($name:literal, $content_type:expr)),* $(,)?) => {
        [$((
            concat!("/", $name),
            Asset {
                content_type: $content_type,
                body: include_bytes!(concat!("../assets/", $name)),
            },
        )),*]
    };
}

/// Every embedded file by the path it is served at.
const ASSETS: [(&str, Asset); 10] = assets![
    ("index.html", HTML),
    ("app.css", CSS),
    ("app.js", JAVASCRIPT),
    ("util.js", JAVASCRIPT),
    ("selection.js", JAVASCRIPT),
    ("overview.js", JAVASCRIPT),
    ("explorer.js", JAVASCRIPT),
    ("event.js", JAVASCRIPT),
    ("sql.js", JAVASCRIPT),
    ("replay.js", JAVASCRIPT),
];

/// The asset served at `path` (`/` is `index.html`); `None` for anything
/// else. Pages are hash routes, so no other path needs the UI page.
pub fn asset(path: &str) -> Option<Asset> {
    let path = if path == "/" { "/index.html" } else { path };
    ASSETS
        .iter()
        .find(|(served_at, _)| *served_at == path)
        .map(|(_, asset)| *asset)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every local `import … from "./x.js"` and every `href`/`src` in
    /// index.html names an embedded asset, so no module 404s in the browser.
    #[test]
    fn every_referenced_file_is_embedded() {
        let mut referenced = Vec::new();
        for (path, asset) in ASSETS {
            let text = std::str::from_utf8(asset.body).unwrap();
            for piece in text.split(['"', '\'']) {
                if let Some(name) = piece.strip_prefix("./") {
                    if name.ends_with(".js") {
                        referenced.push((path, format!("/{name}")));
                    }
                }
                if path == "/index.html" && (piece.ends_with(".js") || piece.ends_with(".css")) {
                    referenced.push((path, format!("/{piece}")));
                }
            }
        }
        assert!(referenced.len() >= 10, "{referenced:?}");
        for (from, name) in referenced {
            assert!(
                asset(&name).is_some(),
                "{from} refers to {name}, which is not embedded"
            );
        }
        assert!(asset("/").is_some());
        assert!(asset("/nope.js").is_none());
    }

    /// Every file in assets/ is embedded (a new page module cannot be forgotten).
    #[test]
    fn every_asset_file_is_served() {
        let directory = concat!(env!("CARGO_MANIFEST_DIR"), "/assets");
        for entry in std::fs::read_dir(directory).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                asset(&format!("/{name}")).is_some(),
                "assets/{name} is not embedded"
            );
        }
    }
}
