//! The age chart, laid out once as shapes: the HTML report draws them as inline SVG, the PDF
//! report as vector paths and text.

use crate::model::Summary;

/// A colour, RGB.
pub type Rgb = (u8, u8, u8);

/// Bars within the maximum.
pub const OK: Rgb = (46, 125, 50);
/// Bars past the maximum, and the never-rotated bar.
pub const OVER: Rgb = (198, 40, 40);
/// Axes and text.
pub const INK: Rgb = (33, 33, 33);
/// The maximum's line.
pub const LIMIT: Rgb = (230, 81, 0);

/// One thing to draw; y grows downwards, as in SVG.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A filled rectangle.
    Rect { x: f32, y: f32, w: f32, h: f32, color: Rgb },
    /// A line.
    Line { x1: f32, y1: f32, x2: f32, y2: f32, color: Rgb, width: f32 },
    /// Text whose baseline starts at (x, y), or is centred on x.
    Text { x: f32, y: f32, size: f32, text: String, centred: bool, color: Rgb },
}

/// The chart of `summary`'s age buckets in a `width` × `height` box.
pub fn layout(summary: &Summary, width: f32, height: f32) -> Vec<Shape> {
    let mut shapes = Vec::new();
    let (left, right, top, bottom) = (36.0, 8.0, 26.0, 30.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let buckets = &summary.age_buckets;
    // The axis ends at a multiple of 4 so that each of its 4 ticks is a whole count.
    let step = buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1).div_ceil(4);
    let most = step * 4;
    let slot = plot_w / buckets.len().max(1) as f32;
    let base = top + plot_h;
    let title = match summary.policy_max_days {
        Some(max) => format!("Secrets by age (days); policy maximum {max} days"),
        None => "Secrets by age (days); no policy maximum".to_owned(),
    };
    shapes.push(Shape::Text {
        x: left,
        y: 11.0,
        size: 9.0,
        text: title,
        centred: false,
        color: INK,
    });
    for tick in 0..=4 {
        let value = step * tick;
        let y = base - plot_h * tick as f32 / 4.0;
        shapes.push(Shape::Line { x1: left - 3.0, y1: y, x2: left, y2: y, color: INK, width: 0.5 });
        shapes.push(Shape::Text {
            x: 4.0,
            y: y + 3.0,
            size: 7.0,
            text: value.to_string(),
            centred: false,
            color: INK,
        });
    }
    for (at, bucket) in buckets.iter().enumerate() {
        let h = plot_h * bucket.count as f32 / most as f32;
        let x = left + slot * at as f32;
        let color = if bucket.over_max || bucket.from_days.is_none() { OVER } else { OK };
        if bucket.count > 0 {
            shapes.push(Shape::Rect { x: x + slot * 0.15, y: base - h, w: slot * 0.7, h, color });
        }
        shapes.push(Shape::Text {
            x: x + slot / 2.0,
            y: base - h - 3.0,
            size: 7.0,
            text: bucket.count.to_string(),
            centred: true,
            color: INK,
        });
        shapes.push(Shape::Text {
            x: x + slot / 2.0,
            y: base + 11.0,
            size: 7.0,
            text: bucket.label.clone(),
            centred: true,
            color: INK,
        });
    }
    // The maximum sits between the last bucket within it and the first past it.
    if let Some(at) = buckets.iter().position(|b| b.over_max) {
        let x = left + slot * at as f32;
        shapes.push(Shape::Line { x1: x, y1: top, x2: x, y2: base, color: LIMIT, width: 1.2 });
        shapes.push(Shape::Text {
            x,
            y: base + 22.0,
            size: 7.0,
            text: "policy maximum".into(),
            centred: true,
            color: LIMIT,
        });
    }
    shapes.push(Shape::Line {
        x1: left,
        y1: base,
        x2: left + plot_w,
        y2: base,
        color: INK,
        width: 0.8,
    });
    shapes.push(Shape::Line { x1: left, y1: top, x2: left, y2: base, color: INK, width: 0.8 });
    shapes
}

/// Escapes text for HTML and SVG.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The chart as an SVG element.
pub fn svg(summary: &Summary, width: f32, height: f32) -> String {
    let hex = |(r, g, b): Rgb| format!("#{r:02x}{g:02x}{b:02x}");
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"Secrets by age\" \
         font-family=\"DejaVu Sans, Arial, sans-serif\">"
    );
    for shape in layout(summary, width, height) {
        match shape {
            Shape::Rect { x, y, w, h, color } => out.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{}\"/>",
                hex(color)
            )),
            Shape::Line { x1, y1, x2, y2, color, width } => out.push_str(&format!(
                "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" \
                 stroke=\"{}\" stroke-width=\"{width}\"/>",
                hex(color)
            )),
            Shape::Text { x, y, size, text, centred, color } => out.push_str(&format!(
                "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size}\" fill=\"{}\"{}>{}</text>",
                hex(color),
                if centred { " text-anchor=\"middle\"" } else { "" },
                escape(&text)
            )),
        }
    }
    out.push_str("</svg>");
    out
}
