//! Charts as SVG, written by hand: the series are small (at most a few hundred points), and an
//! SVG of our own is readable (French number and month labels, a legend, a `<title>` on each
//! point, events drawn as bands) and light. Text and axes use `currentColor`, so a page's dark
//! mode restyles them; series colours are colour-blind safe (Okabe and Ito's palette) and the
//! same for the same server on every chart.

use std::fmt::Write as _;

use crate::i18n::Lang;

/// Okabe and Ito's colour-blind-safe palette (black replaced by a grey that reads on dark).
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999",
];

fn hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The colour of a series named `key`: the same wherever it appears (a server, a platform).
pub fn color_of(key: &str) -> &'static str {
    PALETTE[(hash(key) % PALETTE.len() as u64) as usize]
}

/// Colours for `keys` drawn together: each key its own colour (`color_of`), the next free one
/// of the palette when two keys would share one; the same keys get the same colours anywhere.
pub fn colors_of(keys: &[&str]) -> Vec<&'static str> {
    let mut order: Vec<(usize, &str)> = keys.iter().copied().enumerate().collect();
    order.sort_by_key(|(_, k)| (hash(k) % PALETTE.len() as u64, *k));
    let mut taken = [false; PALETTE.len()];
    let mut out = vec![PALETTE[0]; keys.len()];
    for (i, key) in order {
        let start = (hash(key) % PALETTE.len() as u64) as usize;
        let slot = (0..PALETTE.len())
            .map(|o| (start + o) % PALETTE.len())
            .find(|s| !taken[*s])
            .unwrap_or(start);
        taken[slot] = true;
        out[i] = PALETTE[slot];
    }
    out
}

/// A server's name as charts write it: `interieur` for `agent.interieur.tchap.gouv.fr`.
pub fn short_name(key: &str) -> &str {
    let key = key.strip_prefix("agent.").unwrap_or(key);
    key.strip_suffix(".tchap.gouv.fr").unwrap_or(key)
}

/// One series: a value (or none: suppressed, or no data) per category.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub values: Vec<Option<f64>>,
}

/// A span of categories to shade, with its label (an event: the Olympics).
#[derive(Clone, Debug, PartialEq)]
pub struct Band {
    pub first: usize,
    pub last: usize,
    pub label: String,
}

/// What a chart shows.
#[derive(Clone, Debug, PartialEq)]
pub struct ChartData {
    /// The categories' labels (periods, or keys for a ranking).
    pub categories: Vec<String>,
    pub series: Vec<Series>,
    pub bands: Vec<Band>,
    /// Short text for screen readers and the file's title.
    pub title: String,
}

/// How the bars or lines are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Line,
    Bars,
    StackedBars,
    /// Bars across, one per category (a ranking with long names).
    Ranking,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 260.0;
const TOP: f64 = 30.0;
const RIGHT: f64 = 12.0;
const BOTTOM: f64 = 34.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round upper bound and tick step for values up to `max`. The figures are counts: every
/// tick is a whole number (an axis of 0, 0.25 ... 1 would read "0, 0, 1, 1, 1" once
/// rounded), so steps are 1, 2, 5 times a power of ten, and 2.5 only from 25 up.
fn scale(max: f64) -> (f64, f64) {
    if max <= 0.0 || !max.is_finite() {
        return (1.0, 1.0);
    }
    let raw = max / 4.0;
    let magnitude = 10f64.powf(raw.log10().floor()).max(1.0);
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .filter(|s| s.fract() == 0.0)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    ((max / step).ceil() * step, step)
}

/// The largest value to fit: of the stacks when stacked.
fn max_value(data: &ChartData, shape: Shape) -> f64 {
    let n = data.categories.len();
    if shape == Shape::StackedBars {
        (0..n)
            .map(|i| {
                data.series
                    .iter()
                    .filter_map(|s| s.values.get(i).copied().flatten())
                    .sum::<f64>()
            })
            .fold(0.0, f64::max)
    } else {
        data.series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied())
            .fold(0.0, f64::max)
    }
}

/// The chart as an SVG document (`id` makes its element ids unique in a page).
pub fn svg(data: &ChartData, shape: Shape, lang: Lang, id: &str) -> String {
    if shape == Shape::Ranking {
        return ranking(data, lang, id);
    }
    let n = data.categories.len().max(1);
    let (top_value, step) = scale(max_value(data, shape));
    let left = 14.0 + 7.0 * lang.number(top_value).chars().count() as f64;
    let plot_w = WIDTH - left - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / n as f64;
    let x_of = |i: usize| left + slot * (i as f64 + 0.5);
    let y_of = |v: f64| TOP + plot_h * (1.0 - v / top_value);
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-labelledby=\"{id}-t\" font-family=\"DejaVu Sans, system-ui, sans-serif\" font-size=\"11\"><title id=\"{id}-t\">{}</title>",
        escape(&data.title)
    );
    // Events under everything; labels of neighbouring events on two rows.
    for (b, band) in data.bands.iter().enumerate() {
        let (x0, x1) = (
            left + slot * band.first as f64,
            left + slot * (band.last as f64 + 1.0),
        );
        // A label that would run past the chart's right edge ends at the band's end instead
        // (about 6 px a character at 10 px).
        let label_w = 6.0 * band.label.chars().count() as f64;
        let (label_x, anchor) = if x0 + 2.0 + label_w > WIDTH {
            (x1.min(WIDTH - 2.0), "end")
        } else {
            (x0 + 2.0, "start")
        };
        let _ = write!(
            out,
            "<g class=\"band\"><rect x=\"{x0:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{plot_h:.1}\" fill=\"#E69F00\" fill-opacity=\"0.15\"><title>{}</title></rect><text x=\"{label_x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" fill=\"currentColor\" font-size=\"10\">{}</text></g>",
            (x1 - x0).max(2.0),
            escape(&band.label),
            TOP - 4.0 - 11.0 * (b % 2) as f64,
            escape(&band.label)
        );
    }
    // Horizontal grid and values.
    let mut tick = 0.0;
    while tick <= top_value + step / 2.0 {
        let y = y_of(tick);
        let _ = write!(
            out,
            "<line x1=\"{left:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"currentColor\" stroke-opacity=\"0.15\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"currentColor\">{}</text>",
            WIDTH - RIGHT,
            left - 6.0,
            y + 4.0,
            lang.number(tick)
        );
        tick += step;
    }
    // Category labels, as many as fit.
    let every = (n as f64 * 62.0 / plot_w).ceil().max(1.0) as usize;
    for (i, label) in data.categories.iter().enumerate() {
        if i % every == 0 {
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"currentColor\">{}</text>",
                x_of(i),
                HEIGHT - BOTTOM + 16.0,
                escape(label)
            );
        }
    }
    let _ = write!(
        out,
        "<line x1=\"{left:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"currentColor\" stroke-opacity=\"0.6\"/>",
        WIDTH - RIGHT,
        y_of(0.0),
        y_of(0.0)
    );
    match shape {
        Shape::Line => {
            for series in &data.series {
                // A suppressed or missing point breaks the line.
                let mut path = String::new();
                let mut pen_down = false;
                for (i, value) in series.values.iter().enumerate() {
                    match value {
                        Some(v) => {
                            let _ = write!(
                                path,
                                "{}{:.1},{:.1} ",
                                if pen_down { "L" } else { "M" },
                                x_of(i),
                                y_of(*v)
                            );
                            pen_down = true;
                        }
                        None => pen_down = false,
                    }
                }
                let _ = write!(
                    out,
                    "<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>",
                    path.trim_end(),
                    series.color
                );
                for (i, value) in series.values.iter().enumerate() {
                    if let Some(v) = value {
                        let _ = write!(
                            out,
                            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"><title>{} — {} : {}</title></circle>",
                            x_of(i),
                            y_of(*v),
                            series.color,
                            escape(&series.name),
                            escape(&data.categories[i]),
                            lang.number(*v)
                        );
                    }
                }
            }
        }
        Shape::Bars | Shape::StackedBars => {
            let groups = if shape == Shape::Bars {
                data.series.len().max(1)
            } else {
                1
            };
            let bar_w = (slot * 0.8 / groups as f64).max(1.0);
            for i in 0..n {
                let mut base = 0.0;
                for (s, series) in data.series.iter().enumerate() {
                    let Some(v) = series.values.get(i).copied().flatten() else {
                        continue;
                    };
                    let (x, y0, y1) = if shape == Shape::Bars {
                        (
                            left + slot * i as f64 + slot * 0.1 + bar_w * s as f64,
                            0.0,
                            v,
                        )
                    } else {
                        let stacked = (left + slot * i as f64 + slot * 0.1, base, base + v);
                        base += v;
                        stacked
                    };
                    let _ = write!(
                        out,
                        "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} — {} : {}</title></rect>",
                        y_of(y1),
                        (y_of(y0) - y_of(y1)).max(0.0),
                        series.color,
                        escape(&series.name),
                        escape(&data.categories[i]),
                        lang.number(v)
                    );
                }
            }
        }
        Shape::Ranking => {}
    }
    out.push_str("</svg>");
    out
}

/// One bar across per category, longest first as given (a ranking of servers or forums).
fn ranking(data: &ChartData, lang: Lang, id: &str) -> String {
    let rows = data.categories.len().max(1);
    let row_h = 22.0;
    let height = TOP + row_h * rows as f64 + 8.0;
    let label_w = data
        .categories
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(4)
        .min(34) as f64
        * 6.6
        + 8.0;
    let series = data.series.first();
    let max = series
        .map(|s| s.values.iter().flatten().copied().fold(0.0, f64::max))
        .unwrap_or(0.0);
    let (top_value, _) = scale(max);
    let bar_space = WIDTH - label_w - RIGHT - 70.0;
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height:.0}\" width=\"{WIDTH}\" height=\"{height:.0}\" role=\"img\" aria-labelledby=\"{id}-t\" font-family=\"DejaVu Sans, system-ui, sans-serif\" font-size=\"11\"><title id=\"{id}-t\">{}</title>",
        escape(&data.title)
    );
    for (i, category) in data.categories.iter().enumerate() {
        let y = TOP + row_h * i as f64;
        let shown: String = category.chars().take(34).collect();
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"currentColor\">{}</text>",
            label_w - 6.0,
            y + 14.0,
            escape(&shown)
        );
        let value = series.and_then(|s| s.values.get(i).copied().flatten());
        match value {
            Some(v) => {
                let w = bar_space * v / top_value;
                let _ = write!(
                    out,
                    "<rect x=\"{label_w:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} : {}</title></rect><text x=\"{:.1}\" y=\"{:.1}\" fill=\"currentColor\">{}</text>",
                    y + 3.0,
                    row_h - 6.0,
                    PALETTE[0],
                    escape(category),
                    lang.number(v),
                    label_w + w + 4.0,
                    y + 14.0,
                    lang.number(v)
                );
            }
            None => {
                let _ = write!(
                    out,
                    "<text x=\"{label_w:.1}\" y=\"{:.1}\" fill=\"currentColor\" font-style=\"italic\">{}</text>",
                    y + 14.0,
                    lang.t("suppressed")
                );
            }
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> ChartData {
        ChartData {
            categories: vec!["mai 2024".into(), "juin 2024".into(), "juil. 2024".into()],
            series: vec![Series {
                name: "Messages <envoyés>".into(),
                color: PALETTE[0],
                values: vec![Some(5_512.0), None, Some(7_000.0)],
            }],
            bands: vec![Band {
                first: 2,
                last: 2,
                label: "JO Paris 2024".into(),
            }],
            title: "Messages".into(),
        }
    }

    #[test]
    fn a_line_chart_has_its_points_labels_and_a_gap_where_a_value_is_withheld() {
        let svg = svg(&data(), Shape::Line, Lang::Fr, "p1");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(
            svg.matches("<circle").count(),
            2,
            "no point for the withheld value"
        );
        assert!(svg.contains("juil. 2024 : 7\u{202f}000"), "{svg}");
        assert!(svg.contains("&lt;envoyés&gt;"), "names are escaped");
        assert!(svg.contains("JO Paris 2024"));
        // Two pieces: the line is broken at the gap.
        assert_eq!(
            svg.matches(" M").count() + svg.matches("\"M").count(),
            2,
            "{svg}"
        );
    }

    #[test]
    fn scales_are_round_and_colours_stable() {
        assert_eq!(scale(7_000.0), (8_000.0, 2_000.0));
        assert_eq!(scale(230_561.0), (300_000.0, 100_000.0));
        assert_eq!(scale(0.0), (1.0, 1.0));
        assert_eq!(scale(100.0), (100.0, 25.0));
        // Small counts (a demo's r30, a withheld month beside): whole ticks, each told once.
        for max in [0.0, 1.0, 2.0, 3.0, 5.0, 7.0, 9.0, 10.0, 13.0, 2_500.0] {
            let (top, step) = scale(max);
            assert!(
                top >= max && step >= 1.0 && step.fract() == 0.0,
                "{max}: {top} {step}"
            );
            let ticks: Vec<String> = (0..=(top / step) as usize)
                .map(|i| Lang::En.number(i as f64 * step))
                .collect();
            let distinct: std::collections::BTreeSet<_> = ticks.iter().collect();
            assert_eq!(distinct.len(), ticks.len(), "{max}: {ticks:?}");
        }
        assert_eq!(
            color_of("agent.interieur.tchap.gouv.fr"),
            color_of("agent.interieur.tchap.gouv.fr")
        );
        let stacked = svg(&data(), Shape::StackedBars, Lang::En, "p2");
        assert_eq!(
            stacked.matches("<rect").count(),
            2 + 1,
            "two bars and the event's band"
        );
        let ranking = svg(&data(), Shape::Ranking, Lang::Fr, "p3");
        assert!(ranking.contains("secret"), "a withheld value says so");
    }
}
