//! PNG of a chart, rasterized from the same SVG as the pages (resvg) with DejaVu Sans
//! embedded: the image looks the same on every machine, and needs no font installed.

use std::sync::{Arc, LazyLock};

/// The fonts resvg lays the text out with: DejaVu Sans, also as `sans-serif` (without it,
/// resvg with only embedded fonts would drop every text silently).
static FONTS: LazyLock<Arc<resvg::usvg::fontdb::Database>> = LazyLock::new(|| {
    let mut fonts = resvg::usvg::fontdb::Database::new();
    fonts.load_font_data(dejavu::sans::regular().to_vec());
    fonts.load_font_data(dejavu::sans::bold().to_vec());
    fonts.set_sans_serif_family("DejaVu Sans");
    Arc::new(fonts)
});

/// Why a chart could not be drawn as an image.
#[derive(Debug, thiserror::Error)]
pub enum PngError {
    #[error("the chart's SVG does not parse: {0}")]
    Svg(String),
    #[error("cannot allocate a {0}x{1} image")]
    Size(u32, u32),
    #[error("cannot encode the PNG: {0}")]
    Encode(String),
}

/// `svg` drawn at `scale` (2: twice its size, for slides) on a white background, as PNG.
pub fn png(svg: &str, scale: f32) -> Result<Vec<u8>, PngError> {
    let options = resvg::usvg::Options {
        fontdb: FONTS.clone(),
        ..Default::default()
    };
    let tree =
        resvg::usvg::Tree::from_str(svg, &options).map_err(|e| PngError::Svg(e.to_string()))?;
    let size = tree
        .size()
        .to_int_size()
        .scale_by(scale)
        .ok_or(PngError::Size(0, 0))?;
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or(PngError::Size(size.width(), size.height()))?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| PngError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_becomes_a_png_of_its_size_with_its_text_drawn() {
        let with_text = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"200\" height=\"50\"><text x=\"5\" y=\"30\" font-family=\"sans-serif\" font-size=\"20\">230 561</text></svg>";
        let without =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"200\" height=\"50\"></svg>";
        let (a, b) = (png(with_text, 2.0).unwrap(), png(without, 2.0).unwrap());
        assert_eq!(&a[1..4], b"PNG");
        // 400x100 in the header (IHDR: width, height big-endian at bytes 16..24).
        assert_eq!(u32::from_be_bytes([a[16], a[17], a[18], a[19]]), 400);
        assert_eq!(u32::from_be_bytes([a[20], a[21], a[22], a[23]]), 100);
        assert!(
            a.len() > b.len() + 200,
            "the text was drawn ({} vs {} bytes)",
            a.len(),
            b.len()
        );
        assert!(png("<svg", 1.0).is_err());
    }
}
