//! Benchmark curves as SVG text, for the charts `cargo xtask bench` writes next to BENCHMARKS.md.
//!
//! A [`Chart`] holds named [`Series`] of measured [`Point`]s (the median over the boots and the
//! spread from the fastest to the slowest boot). [`svg`] draws each series as a line through its
//! medians with a marker at every point and a vertical min–max bar with small caps, a legend
//! naming the series, and optionally a dashed horizontal reference line (a ratio of 1, say).
//!
//! The SVG is built in memory with plotters' SVG backend and no font files: text is written as
//! SVG `<text>` elements and laid out by whatever displays the file.

mod axis;

use std::ops::Range;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use thiserror::Error;

use axis::{log_axis, tick};

/// Why a chart could not be drawn.
#[derive(Debug, Error)]
pub enum PlotError {
    /// A value is not a finite number.
    #[error("plot `{title}`: {at}: {name} = {value} is not a finite number")]
    NotFinite {
        title: String,
        at: String,
        name: String,
        value: f64,
    },
    /// A value on a logarithmic axis is not positive.
    #[error(
        "plot `{title}`: {at}: {name} = {value}, which a logarithmic axis cannot show (it needs \
         values > 0)"
    )]
    NotPositive {
        title: String,
        at: String,
        name: String,
        value: f64,
    },
    /// The chart has no point.
    #[error("plot `{title}`: no points to draw")]
    NoPoints { title: String },
    /// plotters failed to draw a part of it.
    #[error("plot `{title}`: drawing {what}: {message}")]
    Draw {
        title: String,
        what: String,
        message: String,
    },
}

/// One measured point: x, the median of the boots, and the min and max over the boots.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Where the point sits on the x axis.
    pub x: f64,
    /// The median over the boots: the curve goes through it.
    pub mid: f64,
    /// The smallest value over the boots: the bottom of the bar.
    pub min: f64,
    /// The largest value over the boots: the top of the bar.
    pub max: f64,
}

/// A named curve.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The name the legend gives the curve.
    pub label: String,
    /// The measured points, in any order (the line joins them in increasing x).
    pub points: Vec<Point>,
}

/// A chart: title, axis labels, whether each axis is logarithmic.
#[derive(Clone, Copy, Debug)]
pub struct Chart<'a> {
    /// The caption above the plot.
    pub title: &'a str,
    /// The name of the x axis (with its unit).
    pub x_label: &'a str,
    /// The name of the y axis (with its unit).
    pub y_label: &'a str,
    /// Whether the x axis is logarithmic (every x must then be positive).
    pub log_x: bool,
    /// Whether the y axis is logarithmic (every mid, min and max must then be positive).
    pub log_y: bool,
    /// The curves, each drawn in its own colour.
    pub series: &'a [Series],
}

/// The size of the drawing, in pixels.
const SIZE: (u32, u32) = (720, 440);

/// The series' colours, in order (the Tableau 10 palette: distinct and readable on white).
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Half the width of the caps on the min–max bars, in pixels.
const CAP: i32 = 4;

/// Draw the chart as SVG text: each series a line through its `mid` values with markers, and a
/// vertical min–max bar (with small caps) at every point whose min and max differ; a legend
/// naming each series; and, given `reference_y`, a horizontal dashed line at that height (e.g.
/// ratio = 1).
///
/// The axis ranges cover every x, and every `min`, `mid`, `max` and the reference line, with a
/// margin. It is an error for the chart to have no points, for a value not to be finite, or for a
/// value on a logarithmic axis not to be positive.
pub fn svg(chart: &Chart, reference_y: Option<f64>) -> Result<String, PlotError> {
    let (x, y) = ranges(chart, reference_y)?;
    let plain = (x.clone(), y.clone());
    match (chart.log_x, chart.log_y) {
        (false, false) => render(chart, reference_y, &plain, x, y),
        (true, false) => render(chart, reference_y, &plain, log_axis(x), y),
        (false, true) => render(chart, reference_y, &plain, x, log_axis(y)),
        (true, true) => render(chart, reference_y, &plain, log_axis(x), log_axis(y)),
    }
}

/// The x and y ranges the chart shows, margins included, after checking every value.
fn ranges(chart: &Chart, reference_y: Option<f64>) -> Result<(Range<f64>, Range<f64>), PlotError> {
    let title = chart.title;
    let mut xs = Extent::default();
    let mut ys = Extent::default();
    for series in chart.series {
        for (i, p) in series.points.iter().enumerate() {
            let at = || format!("series `{}`, point {i}", series.label);
            check(title, p.x, "x", chart.log_x, &at)?;
            xs.add(p.x);
            for (name, v) in [("mid", p.mid), ("min", p.min), ("max", p.max)] {
                check(title, v, name, chart.log_y, &at)?;
                ys.add(v);
            }
        }
    }
    if let Some(r) = reference_y {
        check(title, r, "the reference line's y", chart.log_y, &|| {
            "the reference line".to_string()
        })?;
        ys.add(r);
    }
    match (xs.range(), ys.range()) {
        (Some(x), Some(y)) => Ok((pad(x, chart.log_x), pad(y, chart.log_y))),
        _ => Err(PlotError::NoPoints {
            title: title.to_string(),
        }),
    }
}

/// Check that a value can be drawn: finite, and positive on a logarithmic axis.
fn check(
    title: &str,
    value: f64,
    name: &str,
    log: bool,
    at: &dyn Fn() -> String,
) -> Result<(), PlotError> {
    if !value.is_finite() {
        return Err(PlotError::NotFinite {
            title: title.to_string(),
            at: at(),
            name: name.to_string(),
            value,
        });
    }
    if log && value <= 0.0 {
        return Err(PlotError::NotPositive {
            title: title.to_string(),
            at: at(),
            name: name.to_string(),
            value,
        });
    }
    Ok(())
}

/// The smallest and largest of the values seen so far.
#[derive(Default)]
struct Extent(Option<(f64, f64)>);

impl Extent {
    fn add(&mut self, v: f64) {
        self.0 = Some(match self.0 {
            None => (v, v),
            Some((lo, hi)) => (lo.min(v), hi.max(v)),
        });
    }

    fn range(&self) -> Option<(f64, f64)> {
        self.0
    }
}

/// Widen `[lo, hi]` by a margin: 5% of the span on a linear axis, 5% of the decades on a
/// logarithmic one (at least a factor of 1.1), and something sensible when `lo == hi`.
fn pad((lo, hi): (f64, f64), log: bool) -> Range<f64> {
    if log {
        let factor = (hi / lo).powf(0.05).max(1.1);
        lo / factor..hi * factor
    } else {
        let span = hi - lo;
        let margin = if span > 0.0 {
            span * 0.05
        } else {
            (hi.abs() * 0.1).max(1.0)
        };
        lo - margin..hi + margin
    }
}

/// Where a value falls along an axis, from 0 (the start of the range) to 1 (its end).
fn fraction(v: f64, range: &Range<f64>, log: bool) -> f64 {
    if log {
        (v / range.start).ln() / (range.end / range.start).ln()
    } else {
        (v - range.start) / (range.end - range.start)
    }
}

/// The corner of the plot where the legend hides the fewest points (the upper left on a tie).
fn legend_corner(chart: &Chart, x_range: &Range<f64>, y_range: &Range<f64>) -> SeriesLabelPosition {
    // The legend's box, as a fraction of the plot: roughly one line of text per series.
    let width = 0.45;
    let height = (0.08 * chart.series.len() as f64 + 0.04).min(0.6);
    let corners = [
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::LowerLeft, false, false),
        (SeriesLabelPosition::LowerRight, true, false),
    ];
    let hidden = |right: bool, upper: bool| {
        let in_x = |f: f64| if right { f >= 1.0 - width } else { f <= width };
        let in_y = |f: f64| {
            if upper {
                f >= 1.0 - height
            } else {
                f <= height
            }
        };
        chart
            .series
            .iter()
            .flat_map(|s| &s.points)
            .filter(|p| in_x(fraction(p.x, x_range, chart.log_x)))
            .map(|p| {
                [p.mid, p.min, p.max]
                    .into_iter()
                    .filter(|&v| in_y(fraction(v, y_range, chart.log_y)))
                    .count()
            })
            .sum::<usize>()
    };
    corners
        .into_iter()
        .min_by_key(|&(_, right, upper)| hidden(right, upper))
        .map_or(SeriesLabelPosition::UpperLeft, |(pos, _, _)| pos)
}

/// Draw the chart on axes built from `x_spec` and `y_spec` (linear or logarithmic ranges), which
/// span `(x_range, y_range)`.
fn render<X, Y>(
    chart: &Chart,
    reference_y: Option<f64>,
    (x_range, y_range): &(Range<f64>, Range<f64>),
    x_spec: X,
    y_spec: Y,
) -> Result<String, PlotError>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let title = chart.title;
    let err = |what: &str| {
        let what = what.to_string();
        move |e: DrawingAreaErrorKind<<SVGBackend as DrawingBackend>::ErrorType>| PlotError::Draw {
            title: title.to_string(),
            what,
            message: e.to_string(),
        }
    };

    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err("the background"))?;
        let mut ctx = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x_spec, y_spec)
            .map_err(err("the axes"))?;
        ctx.configure_mesh()
            .x_desc(chart.x_label)
            .y_desc(chart.y_label)
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .light_line_style(BLACK.mix(0.05))
            .bold_line_style(BLACK.mix(0.12))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(err("the grid"))?;

        if let Some(r) = reference_y {
            ctx.draw_series(DashedLineSeries::new(
                [(x_range.start, r), (x_range.end, r)],
                6,
                4,
                BLACK.mix(0.6).stroke_width(1),
            ))
            .map_err(err("the reference line"))?;
        }

        for (i, series) in chart.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let thin = colour.stroke_width(1);
            let spread: Vec<&Point> = series.points.iter().filter(|p| p.min != p.max).collect();
            let what = format!("the min–max bars of `{}`", series.label);
            ctx.draw_series(
                spread
                    .iter()
                    .map(|p| PathElement::new([(p.x, p.min), (p.x, p.max)], thin)),
            )
            .map_err(err(&what))?;
            ctx.draw_series(
                spread
                    .iter()
                    .flat_map(|p| [(p.x, p.min), (p.x, p.max)])
                    .map(|at| EmptyElement::at(at) + PathElement::new([(-CAP, 0), (CAP, 0)], thin)),
            )
            .map_err(err(&what))?;

            let mut mids: Vec<(f64, f64)> = series.points.iter().map(|p| (p.x, p.mid)).collect();
            mids.sort_by(|a, b| a.0.total_cmp(&b.0));
            let what = format!("the curve of `{}`", series.label);
            ctx.draw_series(LineSeries::new(
                mids.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(err(&what))?
            .label(series.label.as_str())
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new([(0, 0), (20, 0)], colour.stroke_width(2))
                    + Circle::new((10, 0), 3, colour.filled())
            });
            ctx.draw_series(mids.iter().map(|&at| Circle::new(at, 3, colour.filled())))
                .map_err(err(&what))?;
        }

        ctx.configure_series_labels()
            .position(legend_corner(chart, x_range, y_range))
            .margin(10)
            .label_font(("sans-serif", 14))
            .background_style(WHITE)
            .border_style(BLACK.mix(0.5))
            .draw()
            .map_err(err("the legend"))?;
        root.present().map_err(err("the SVG"))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(x: f64, mid: f64, min: f64, max: f64) -> Point {
        Point { x, mid, min, max }
    }

    fn chart<'a>(series: &'a [Series], log_x: bool, log_y: bool) -> Chart<'a> {
        Chart {
            title: "Switch cost by core count",
            x_label: "cores",
            y_label: "cycles per switch",
            log_x,
            log_y,
            series,
        }
    }

    fn count(svg: &str, tag: &str) -> usize {
        svg.matches(tag).count()
    }

    #[test]
    fn two_series_on_a_log_x_axis_render_with_labels_title_and_lines() {
        let series = [
            Series {
                label: "split".to_string(),
                points: vec![
                    point(1.0, 100.0, 90.0, 120.0),
                    point(10.0, 150.0, 140.0, 170.0),
                    point(100.0, 400.0, 380.0, 450.0),
                ],
            },
            Series {
                label: "rfc-v1".to_string(),
                points: vec![
                    point(1.0, 110.0, 110.0, 110.0),
                    point(10.0, 210.0, 200.0, 230.0),
                    point(100.0, 900.0, 850.0, 990.0),
                ],
            },
        ];
        let svg = svg(&chart(&series, true, false), None).expect("the chart draws");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        assert!(svg.contains("Switch cost by core count"));
        assert!(svg.contains("split"));
        assert!(svg.contains("rfc-v1"));
        assert!(svg.contains("cycles per switch") && svg.contains("cores"));
        assert!(count(&svg, "<polyline") + count(&svg, "<path") > 0);
        assert!(
            count(&svg, "<text") > 0,
            "text is drawn as SVG <text> elements"
        );
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn a_zero_on_a_log_axis_is_an_error() {
        let zero_x = [Series {
            label: "a".to_string(),
            points: vec![point(0.0, 1.0, 1.0, 1.0), point(1.0, 2.0, 2.0, 2.0)],
        }];
        let e = svg(&chart(&zero_x, true, false), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("logarithmic") && e.contains("x = 0"), "{e}");
        // The same data on a linear x axis is fine.
        svg(&chart(&zero_x, false, false), None).expect("a linear axis shows 0");

        let zero_min = [Series {
            label: "b".to_string(),
            points: vec![point(1.0, 1.0, 0.0, 2.0)],
        }];
        let e = svg(&chart(&zero_min, false, true), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("logarithmic") && e.contains("min = 0"), "{e}");

        let positive = [Series {
            label: "c".to_string(),
            points: vec![point(1.0, 1.0, 1.0, 2.0)],
        }];
        let e = svg(&chart(&positive, false, true), Some(-1.0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("reference"), "{e}");
    }

    #[test]
    fn min_max_bars_are_drawn_with_caps() {
        // A frame series fixes the axis ranges, so that the two charts differ only in the bars.
        let frame = Series {
            label: "frame".to_string(),
            points: vec![
                point(1.0, 1.0, 1.0, 1.0),
                point(100.0, 1000.0, 1000.0, 1000.0),
            ],
        };
        let with_bars = Series {
            label: "spread".to_string(),
            points: vec![point(2.0, 10.0, 8.0, 13.0), point(20.0, 100.0, 90.0, 120.0)],
        };
        let without_bars = Series {
            label: "spread".to_string(),
            points: with_bars
                .points
                .iter()
                .map(|p| point(p.x, p.mid, p.mid, p.mid))
                .collect(),
        };
        let draw = |s: &Series| svg(&chart(&[frame.clone(), s.clone()], true, true), None);
        let with = draw(&with_bars).expect("the chart with bars draws");
        let without = draw(&without_bars).expect("the chart without bars draws");
        // One bar and two caps per point.
        assert_eq!(
            count(&with, "<polyline"),
            count(&without, "<polyline") + 3 * with_bars.points.len(),
        );
    }

    #[test]
    fn the_reference_line_is_dashed() {
        let series = [Series {
            label: "ratio".to_string(),
            points: vec![point(1.0, 1.2, 1.1, 1.3), point(2.0, 0.9, 0.8, 1.0)],
        }];
        let without = svg(&chart(&series, false, false), None).expect("draws");
        let with = svg(&chart(&series, false, false), Some(1.0)).expect("draws");
        // A dashed line is several short segments.
        assert!(count(&with, "<polyline") > count(&without, "<polyline") + 2);
    }

    #[test]
    fn text_is_escaped() {
        let series = [Series {
            label: "a<b & c".to_string(),
            points: vec![point(1.0, 1.0, 1.0, 1.0)],
        }];
        let svg = svg(&chart(&series, false, false), None).expect("draws");
        assert!(svg.contains("a&lt;b &amp; c"), "the label is escaped");
    }

    #[test]
    fn no_points_and_non_finite_values_are_errors() {
        assert!(svg(&chart(&[], false, false), None).is_err());
        let nan = [Series {
            label: "n".to_string(),
            points: vec![point(1.0, f64::NAN, 1.0, 1.0)],
        }];
        let e = svg(&chart(&nan, false, false), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("finite"), "{e}");
    }
}
