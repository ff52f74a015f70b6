//! The timeline as a swimlane picture (SVG): one lane per CPU and context, one row per step,
//! handlers in colour, hazards marked in amber and the consequence highlighted in red.

use std::fmt::Write as _;

use crate::timeline::{Lane, RowKind, Timeline};

const ROW: usize = 18;
const TOP: usize = 64;
const CHAR: f64 = 6.6;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn lane_colour(lane: Lane) -> &'static str {
    match lane {
        Lane::Task => "#eef3fc",
        Lane::Scheduler => "#fdf6e3",
        Lane::Irq => "#fdecea",
        Lane::Nmi => "#f3ebfb",
    }
}

/// The picture, with `title` at the top and `footer` (the consequence) at the bottom.
pub fn render(timeline: &Timeline, title: &str, footer: &str) -> String {
    let widths: Vec<usize> = timeline
        .columns
        .iter()
        .map(|&column| (timeline.longest(column).clamp(18, 70) as f64 * CHAR) as usize + 16)
        .collect();
    let step_width = 44;
    let width = step_width + widths.iter().sum::<usize>() + 20;
    let per_line = ((width - 20) as f64 / CHAR) as usize;
    let footer_lines = wrap(footer, per_line.max(40));
    let height = TOP + timeline.rows.len() * ROW + 40 + footer_lines.len() * ROW;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="11">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="10" y="22" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let mut x = 10 + step_width;
    let mut lane_x = Vec::new();
    for (i, &column) in timeline.columns.iter().enumerate() {
        lane_x.push(x);
        let lane_height = timeline.rows.len() * ROW + 8;
        let _ = writeln!(
            svg,
            r##"<rect x="{x}" y="{}" width="{}" height="{lane_height}" fill="{}" stroke="#c8c8c8"/>"##,
            TOP - 18,
            widths[i] - 4,
            lane_colour(column.1)
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" font-weight="bold">{}</text>"#,
            x + 6,
            TOP - 24,
            escape(&Timeline::header(column))
        );
        x += widths[i];
    }
    for (n, row) in timeline.rows.iter().enumerate() {
        let y = TOP + n * ROW;
        let lane = timeline
            .columns
            .iter()
            .position(|&c| c == row.column)
            .expect("row in a column");
        let _ = writeln!(
            svg,
            r##"<text x="10" y="{y}" fill="#888">{}</text>"##,
            n + 1
        );
        let (fill, weight) = match row.kind {
            RowKind::Violation => ("#c5221f", "bold"),
            RowKind::Op => ("#1a4fa0", "bold"),
            RowKind::Context => ("#5f6368", "normal"),
            RowKind::Note => ("#b06000", "normal"),
            RowKind::Hazard => ("#b06000", "bold"),
            RowKind::Step => ("#202124", "normal"),
        };
        if matches!(row.kind, RowKind::Violation | RowKind::Hazard) {
            let colour = if row.kind == RowKind::Violation {
                "#fad2cf"
            } else {
                "#fef0c7"
            };
            let _ = writeln!(
                svg,
                r##"<rect x="{}" y="{}" width="{}" height="{ROW}" fill="{colour}"/>"##,
                lane_x[lane],
                y - 13,
                widths[lane] - 4
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{y}" fill="{fill}" font-weight="{weight}">{}</text>"#,
            lane_x[lane] + 6,
            escape(&row.text)
        );
    }
    for (i, text) in footer_lines.iter().enumerate() {
        let _ = writeln!(
            svg,
            r##"<text x="10" y="{}" fill="#c5221f" font-weight="bold">{}</text>"##,
            TOP + timeline.rows.len() * ROW + 32 + i * ROW,
            escape(text)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// `text` in lines of at most `width` characters, broken at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let last = lines.last_mut().expect("one line at least");
        if !last.is_empty() && last.chars().count() + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}
