//! A small hand-written SVG line chart: axes with round-number ticks,
//! a linear or log y axis, one polyline per series with point markers,
//! and a legend. Enough for "latency against offered rate" without a
//! plotting crate.

use std::fmt::Write as _;

/// Canvas and plot area, in SVG user units.
const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 460.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 560.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 400.0;

/// Series colors, reused in order (colorblind-friendly Tableau 10).
const PALETTE: [&str; 10] =
    ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

/// How values map onto the y axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Evenly spaced values, starting at 0.
    Linear,
    /// Powers of ten evenly spaced (values ≤ 0 are left out).
    Log,
}

/// How a series' line is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stroke {
    /// A solid line.
    Solid,
    /// A dashed line.
    Dashed,
}

/// One line of the chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its legend entry.
    pub name: String,
    /// `(x, y)` points; drawn in x order.
    pub points: Vec<(f64, f64)>,
    /// Index into the palette (series of one group share a color).
    pub color: usize,
    /// Solid or dashed.
    pub stroke: Stroke,
}

/// A line chart.
#[derive(Debug, Clone)]
pub struct LineChart {
    /// Shown above the plot.
    pub title: String,
    /// Under the x axis.
    pub x_label: String,
    /// Beside the y axis.
    pub y_label: String,
    /// The y axis' scale (x is always linear from 0).
    pub y_scale: Scale,
    /// The lines.
    pub series: Vec<Series>,
}

/// An axis: the value range it spans and the ticks to label.
#[derive(Debug, Clone, PartialEq)]
struct Axis {
    min: f64,
    max: f64,
    ticks: Vec<f64>,
    log: bool,
}

impl Axis {
    /// A linear axis from 0 (or below, for negative data) to a round number at or above `max`.
    fn linear(min: f64, max: f64) -> Self {
        let min = min.min(0.0);
        let max = if max > min { max } else { min + 1.0 };
        let step = nice_step((max - min) / 5.0);
        let first = (min / step).floor() * step;
        let last = (max / step).ceil() * step;
        let count = ((last - first) / step).round() as usize;
        let ticks = (0..=count).map(|i| first + step * i as f64).collect();
        Self { min: first, max: last, ticks, log: false }
    }

    /// A log axis over the decades around `[min, max]` (both > 0).
    fn log(min: f64, max: f64) -> Self {
        let low = min.log10().floor() as i32;
        let high = (max.log10().ceil() as i32).max(low + 1);
        let ticks = (low..=high).map(|exponent| 10f64.powi(exponent)).collect();
        Self { min: 10f64.powi(low), max: 10f64.powi(high), ticks, log: true }
    }

    /// Where `value` falls between 0 (min) and 1 (max).
    fn fraction(&self, value: f64) -> f64 {
        if self.log {
            (value.log10() - self.min.log10()) / (self.max.log10() - self.min.log10())
        } else {
            (value - self.min) / (self.max - self.min)
        }
    }
}

/// 1, 2 or 5 × a power of ten, at least `rough`.
fn nice_step(rough: f64) -> f64 {
    if !(rough.is_finite() && rough > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(rough.log10().floor());
    let fraction = rough / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// A tick label: `40k`, `1.5M`, `0.25`, `3`.
fn format_tick(value: f64) -> String {
    let trim = |text: String| {
        if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_owned() } else { text }
    };
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        format!("{}M", trim(format!("{:.2}", value / 1e6)))
    } else if magnitude >= 1e4 {
        format!("{}k", trim(format!("{:.1}", value / 1e3)))
    } else if magnitude >= 1.0 || magnitude == 0.0 {
        trim(format!("{value:.2}"))
    } else {
        trim(format!("{value:.4}"))
    }
}

/// Escapes text for SVG content and attributes.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

impl LineChart {
    /// The points that can be drawn: finite, and positive on a log axis.
    fn drawable(&self, series: &Series) -> Vec<(f64, f64)> {
        let mut points: Vec<(f64, f64)> = series
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (self.y_scale == Scale::Linear || *y > 0.0))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        points
    }

    /// The chart as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let all: Vec<(f64, f64)> = self.series.iter().flat_map(|series| self.drawable(series)).collect();
        let (x_min, x_max) = bounds(all.iter().map(|p| p.0));
        let (y_min, y_max) = bounds(all.iter().map(|p| p.1));
        let x_axis = Axis::linear(x_min.unwrap_or(0.0), x_max.unwrap_or(1.0));
        let y_axis = match (self.y_scale, y_min, y_max) {
            (Scale::Log, Some(min), Some(max)) => Axis::log(min, max),
            (Scale::Log, _, _) => Axis::log(1.0, 10.0),
            (Scale::Linear, min, max) => Axis::linear(min.unwrap_or(0.0), max.unwrap_or(1.0)),
        };
        let px = |x: f64| LEFT + x_axis.fraction(x) * (RIGHT - LEFT);
        let py = |y: f64| BOTTOM - y_axis.fraction(y) * (BOTTOM - TOP);

        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="28" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
            (LEFT + RIGHT) / 2.0,
            escape(&self.title)
        );
        // Grid and ticks.
        for tick in &x_axis.ticks {
            let x = px(*tick);
            let _ = writeln!(svg, r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{BOTTOM}" stroke="#e6e6e6"/>"##);
            let _ = writeln!(
                svg,
                r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
                BOTTOM + 18.0,
                escape(&format_tick(*tick))
            );
        }
        for tick in &y_axis.ticks {
            let y = py(*tick);
            let _ = writeln!(svg, r##"<line x1="{LEFT}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}" stroke="#e6e6e6"/>"##);
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 8.0,
                y + 4.0,
                escape(&format_tick(*tick))
            );
        }
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
            RIGHT - LEFT,
            BOTTOM - TOP
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            (LEFT + RIGHT) / 2.0,
            BOTTOM + 42.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            svg,
            r#"<text x="20" y="{0}" text-anchor="middle" transform="rotate(-90 20 {0})">{1}</text>"#,
            (TOP + BOTTOM) / 2.0,
            escape(&self.y_label)
        );
        if all.is_empty() {
            let _ = writeln!(
                svg,
                r##"<text x="{}" y="{}" text-anchor="middle" fill="#999">no data</text>"##,
                (LEFT + RIGHT) / 2.0,
                (TOP + BOTTOM) / 2.0
            );
        }
        // Lines, markers and the legend.
        for (index, series) in self.series.iter().enumerate() {
            let color = PALETTE[series.color % PALETTE.len()];
            let dash = if series.stroke == Stroke::Dashed { r#" stroke-dasharray="6 4""# } else { "" };
            let points = self.drawable(series);
            let path: Vec<String> = points.iter().map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
            let _ = writeln!(svg, r#"<g>"#);
            if points.len() > 1 {
                let _ = writeln!(
                    svg,
                    r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
                    path.join(" ")
                );
            }
            for (x, y) in &points {
                let _ = writeln!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"><title>{}: {} → {}</title></circle>"#,
                    px(*x),
                    py(*y),
                    escape(&series.name),
                    format_tick(*x),
                    format_tick(*y)
                );
            }
            let legend_y = TOP + 10.0 + index as f64 * 20.0;
            let _ = writeln!(
                svg,
                r#"<line x1="{}" y1="{legend_y:.1}" x2="{}" y2="{legend_y:.1}" stroke="{color}" stroke-width="2"{dash}/>"#,
                RIGHT + 16.0,
                RIGHT + 40.0
            );
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{:.1}">{}</text>"#,
                RIGHT + 46.0,
                legend_y + 4.0,
                escape(&series.name)
            );
            let _ = writeln!(svg, "</g>");
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// The smallest and largest of `values`.
fn bounds(values: impl Iterator<Item = f64>) -> (Option<f64>, Option<f64>) {
    values.fold((None, None), |(min, max), value| {
        (Some(min.map_or(value, |min: f64| min.min(value))), Some(max.map_or(value, |max: f64| max.max(value))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that every tag is closed in order (the SVG we write has no
    /// comments, CDATA or processing instructions).
    fn assert_well_formed(svg: &str) {
        let mut open: Vec<&str> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("every tag closes") + start;
            let tag = &rest[start + 1..end];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop(), Some(name), "closing tag matches the last open one");
            } else if !tag.ends_with('/') {
                open.push(tag.split_whitespace().next().expect("a tag name"));
            }
            rest = &rest[end + 1..];
        }
        assert!(open.is_empty(), "unclosed tags: {open:?}");
    }

    /// The numbers in each `attribute="x,y x,y"` (or `="n"`), one list per occurrence.
    fn attribute_numbers(svg: &str, attribute: &str) -> Vec<Vec<f64>> {
        let needle = format!(" {attribute}=\"");
        svg.match_indices(&needle)
            .map(|(at, _)| {
                let value = &svg[at + needle.len()..];
                let value = &value[..value.find('"').expect("attribute closes")];
                value.split([' ', ',']).map(|n| n.parse::<f64>().expect("a number")).collect()
            })
            .collect()
    }

    fn numbers_of(svg: &str, attribute: &str) -> Vec<f64> {
        attribute_numbers(svg, attribute).concat()
    }

    fn chart(scale: Scale) -> LineChart {
        LineChart {
            title: "latency <fanout> & more".to_owned(),
            x_label: "offered deliveries/s".to_owned(),
            y_label: "ms".to_owned(),
            y_scale: scale,
            series: vec![
                Series {
                    name: "a p50".to_owned(),
                    points: vec![(40_000.0, 1.2), (10_000.0, 0.4), (80_000.0, 12.0)],
                    color: 0,
                    stroke: Stroke::Solid,
                },
                Series {
                    name: "a p99".to_owned(),
                    points: vec![(10_000.0, 3.0), (40_000.0, 16.0), (80_000.0, 77.5), (90_000.0, 0.0)],
                    color: 0,
                    stroke: Stroke::Dashed,
                },
            ],
        }
    }

    #[test]
    fn svg_is_well_formed_and_points_fall_inside_the_plot() {
        for scale in [Scale::Linear, Scale::Log] {
            let svg = chart(scale).to_svg();
            assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 800 460\""));
            assert!(svg.ends_with("</svg>\n"));
            assert_well_formed(&svg);
            assert!(svg.contains("latency &lt;fanout&gt; &amp; more"), "text is escaped");
            assert!(svg.contains("stroke-dasharray"), "p99 is dashed");
            let xs = numbers_of(&svg, "cx");
            let ys = numbers_of(&svg, "cy");
            // The log chart drops the 0 ms point it cannot draw.
            assert_eq!(xs.len(), if scale == Scale::Log { 6 } else { 7 });
            assert!(xs.iter().all(|x| (LEFT..=RIGHT).contains(x)), "{xs:?}");
            assert!(ys.iter().all(|y| (TOP..=BOTTOM).contains(y)), "{ys:?}");
            for line in attribute_numbers(&svg, "points") {
                assert!(line.chunks(2).all(|p| (LEFT..=RIGHT).contains(&p[0]) && (TOP..=BOTTOM).contains(&p[1])));
                assert!(line.chunks(2).is_sorted_by(|a, b| a[0] <= b[0]), "lines run left to right");
            }
        }
    }

    #[test]
    fn the_largest_point_reaches_the_top_tick_region_and_zero_sits_on_the_axis() {
        let chart = LineChart {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            y_scale: Scale::Linear,
            series: vec![Series {
                name: "s".to_owned(),
                points: vec![(0.0, 0.0), (100.0, 100.0)],
                color: 3,
                stroke: Stroke::Solid,
            }],
        };
        let svg = chart.to_svg();
        let (xs, ys) = (numbers_of(&svg, "cx"), numbers_of(&svg, "cy"));
        assert_eq!((xs[0], ys[0]), (LEFT, BOTTOM));
        assert_eq!((xs[1], ys[1]), (RIGHT, TOP));
    }

    #[test]
    fn empty_charts_still_render() {
        let mut empty = chart(Scale::Log);
        empty.series.clear();
        let svg = empty.to_svg();
        assert_well_formed(&svg);
        assert!(svg.contains("no data"));
    }

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(Axis::linear(0.0, 87.0).ticks, [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(Axis::log(0.3, 240.0).ticks, [0.1, 1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(format_tick(40_000.0), "40k");
        assert_eq!(format_tick(2_500_000.0), "2.5M");
        assert_eq!(format_tick(0.25), "0.25");
        assert_eq!(format_tick(3.0), "3");
    }
}
