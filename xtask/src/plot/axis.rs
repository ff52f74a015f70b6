//! The ticks of an axis: round values where a reader expects them. plotters' own logarithmic
//! ticks put no label at all on a range within one decade and crowd 800, 900, 1000 together;
//! these pick the densest of 1–9, 1-2-5, 1-3 or 1 times the powers of ten that gives a handful
//! of labels, and short labels for them.

use std::ops::Range;

use plotters::coord::combinators::WithKeyPoints;
use plotters::prelude::*;

/// A logarithmic axis over `range` (which must be positive), with our own ticks: plotters' own
/// put no label at all on a range within one decade, and crowd 800, 900, 1000 together.
pub fn log_axis(range: Range<f64>) -> WithKeyPoints<LogCoord<f64>> {
    let labels = log_ticks(&range);
    let grid = log_grid(&range);
    range
        .log_scale()
        .with_key_points(labels)
        .with_light_points(grid)
}

/// The multiples of powers of ten that lie in `range`, taking `mantissas` of every `stride`-th
/// decade.
fn decade_multiples(range: &Range<f64>, mantissas: &[f64], stride: usize) -> Vec<f64> {
    let first = range.start.log10().floor() as i32;
    let last = range.end.log10().ceil() as i32;
    (first..=last)
        .step_by(stride.max(1))
        .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
        .filter(|v| range.contains(v) || *v == range.end)
        .collect()
}

/// The labelled ticks of a logarithmic axis: the densest of 1–9, 1-2-5, 1-3 or 1 times the
/// powers of ten (every few decades if need be) that gives a handful of labels. On a range of
/// less than a decade, 1–9 times the powers of ten unless they leave more than a third of the
/// axis unlabelled (as just above a power of ten: 1, 2, 3 are far apart), and evenly spaced round
/// values then.
fn log_ticks(range: &Range<f64>) -> Vec<f64> {
    let all: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
    let decades = (range.end / range.start).log10();
    if decades < 1.0 {
        let ticks = decade_multiples(range, all, 1);
        let mut edges = vec![range.start];
        edges.extend(&ticks);
        edges.push(range.end);
        let widest = edges
            .windows(2)
            .map(|w| (w[1] / w[0]).log10() / decades)
            .fold(0.0, f64::max);
        return if ticks.len() >= 3 && widest <= 1.0 / 3.0 {
            ticks
        } else {
            linear_ticks(range, 5)
        };
    }
    let choices: [(&[f64], usize); 4] = [
        (all, 6),
        (&[1.0, 2.0, 5.0], 8),
        (&[1.0, 3.0], 8),
        (&[1.0], 8),
    ];
    for (mantissas, most) in choices {
        let ticks = decade_multiples(range, mantissas, 1);
        if ticks.len() < 2 {
            return linear_ticks(range, 5);
        }
        if ticks.len() <= most {
            return ticks;
        }
    }
    decade_multiples(range, &[1.0], (decades / 8.0).ceil() as usize)
}

/// The light grid lines of a logarithmic axis: 1–9 times every power of ten, unless there are
/// too many decades for them to be told apart.
fn log_grid(range: &Range<f64>) -> Vec<f64> {
    if (range.end / range.start).log10() > 6.0 {
        return Vec::new();
    }
    decade_multiples(range, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], 1)
}

/// About `count` evenly spaced round values in `range` (steps of 1, 2 or 5 times a power of 10).
fn linear_ticks(range: &Range<f64>, count: usize) -> Vec<f64> {
    let raw = (range.end - range.start) / count.max(1) as f64;
    let scale = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * scale)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * scale);
    let first = (range.start / step).ceil() as i64;
    let last = (range.end / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A tick label: up to four significant digits, trailing zeros dropped, and an exponent for very
/// large or very small values.
pub fn tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        return "0".to_string();
    }
    if (1e-3..1e5).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
        let s = format!("{v:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    } else {
        let s = format!("{v:.3e}");
        match s.split_once('e') {
            Some((mantissa, exponent)) if mantissa.contains('.') => {
                let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
                format!("{mantissa}e{exponent}")
            }
            _ => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(1.0), "1");
        assert_eq!(tick(1.5), "1.5");
        assert_eq!(tick(0.00125), "0.00125");
        assert_eq!(tick(12345.0), "12345");
        assert_eq!(tick(1_000_000.0), "1e6");
        assert_eq!(tick(2_500_000.0), "2.5e6");
        assert_eq!(tick(-0.5), "-0.5");
    }

    #[test]
    fn log_ticks_are_round_and_never_too_few() {
        assert_eq!(
            log_ticks(&(0.8..1200.0)),
            vec![1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0]
        );
        assert_eq!(
            log_ticks(&(0.8..1.2e5)),
            vec![1.0, 10.0, 100.0, 1e3, 1e4, 1e5]
        );
        assert_eq!(
            log_ticks(&(90.0..1100.0)),
            vec![100.0, 200.0, 500.0, 1000.0]
        );
        assert_eq!(log_ticks(&(150.0..450.0)), vec![200.0, 300.0, 400.0]);
        assert_eq!(
            log_ticks(&(0.91..8.8)),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
        );
        // Less than a decade: evenly spaced instead, on both sides of a power of ten.
        assert_eq!(
            log_ticks(&(0.55..1.45)).len(),
            5,
            "{:?}",
            log_ticks(&(0.55..1.45))
        );
        assert_eq!(
            log_ticks(&(150.0..190.0)),
            vec![150.0, 160.0, 170.0, 180.0, 190.0]
        );
        // Many decades: every other one.
        assert_eq!(log_ticks(&(1.0..1e12)).len(), 7);
    }
}
