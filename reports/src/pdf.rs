//! A report as a PDF a person can hand an auditor, drawn in Rust with krilla: a title page
//! with the scope and period, the summary with the age chart, then the tables, which break
//! across pages with their header row repeated; every page numbered "page N of M".
//!
//! The fonts (DejaVu Sans Condensed, regular and bold; `reports/fonts/`, Bitstream Vera
//! licence) are compiled in and embedded subset, so the output does not depend on the fonts of
//! the machine that renders it, and the same report gives the same bytes.

use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::Metadata;
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::text::{Font, TextDirection};
use skrifa::MetadataProvider;
use skrifa::instance::{LocationRef, Size};

use crate::chart::{INK, Rgb, Shape, layout as chart_layout};
use crate::layout::{Table, scope, summary, tables};
use crate::model::ComplianceReport;

const REGULAR: &[u8] = include_bytes!("../fonts/DejaVuSansCondensed.ttf");
const BOLD: &[u8] = include_bytes!("../fonts/DejaVuSansCondensed-Bold.ttf");

/// A4 landscape, in points.
const PAGE_W: f32 = 842.0;
const PAGE_H: f32 = 595.0;
const MARGIN: f32 = 40.0;
/// Where the footer's baseline is; content stops above it.
const FOOTER_Y: f32 = PAGE_H - 22.0;
const BOTTOM: f32 = PAGE_H - 40.0;
const CELL_SIZE: f32 = 7.5;
const CELL_LINE: f32 = 9.2;
const CELL_PAD: f32 = 3.0;
/// A cell longer than this many lines is cut (the CSV and JSON have it whole).
const MAX_CELL_LINES: usize = 30;
const HEADER_FILL: Rgb = (236, 239, 241);
const RULE: Rgb = (200, 200, 200);

/// Why a PDF could not be written.
#[derive(Debug, thiserror::Error)]
#[error("could not write the PDF: {0}")]
pub struct PdfError(String);

/// A font with what measuring text needs.
struct Face {
    font: Font,
    charmap: skrifa::charmap::Charmap<'static>,
    metrics: skrifa::metrics::GlyphMetrics<'static>,
}

impl Face {
    fn new(bytes: &'static [u8]) -> Result<Face, PdfError> {
        let font = Font::new(bytes.into(), 0).ok_or_else(|| PdfError("bad font".into()))?;
        let parsed = skrifa::FontRef::new(bytes).map_err(|e| PdfError(e.to_string()))?;
        Ok(Face {
            font,
            charmap: parsed.charmap(),
            metrics: parsed.glyph_metrics(Size::new(1.0), LocationRef::default()),
        })
    }

    /// The width of `text` at `size` points.
    fn width(&self, text: &str, size: f32) -> f32 {
        text.chars()
            .map(|c| self.charmap.map(c).and_then(|g| self.metrics.advance_width(g)).unwrap_or(0.5))
            .sum::<f32>()
            * size
    }

    /// `text` broken into lines no wider than `width` (words first, then characters).
    fn wrap(&self, text: &str, size: f32, width: f32) -> Vec<String> {
        let mut lines = Vec::new();
        for paragraph in text.split('\n') {
            let mut line = String::new();
            for word in paragraph.split_whitespace() {
                let candidate =
                    if line.is_empty() { word.to_owned() } else { format!("{line} {word}") };
                if self.width(&candidate, size) <= width {
                    line = candidate;
                    continue;
                }
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                for c in word.chars() {
                    line.push(c);
                    if self.width(&line, size) > width && line.chars().count() > 1 {
                        line.pop();
                        lines.push(std::mem::take(&mut line));
                        line.push(c);
                    }
                }
            }
            lines.push(line);
        }
        lines
    }
}

/// Drawing operations of one page, replayed once the page count is known.
#[derive(Default)]
struct Page {
    ops: Vec<(Shape, bool)>,
}

struct Writer {
    regular: Face,
    bold: Face,
    pages: Vec<Page>,
    y: f32,
}

impl Writer {
    fn page(&mut self) -> &mut Page {
        if self.pages.is_empty() {
            self.pages.push(Page::default());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn new_page(&mut self) {
        self.pages.push(Page::default());
        self.y = MARGIN;
    }

    fn text(&mut self, x: f32, y: f32, size: f32, text: &str, bold: bool) {
        let shape = Shape::Text { x, y, size, text: text.to_owned(), centred: false, color: INK };
        self.page().ops.push((shape, bold));
    }

    fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, color: Rgb) {
        self.page().ops.push((Shape::Rect { x, y, w, h, color }, false));
    }

    fn rule(&mut self, y: f32) {
        let shape =
            Shape::Line { x1: MARGIN, y1: y, x2: PAGE_W - MARGIN, y2: y, color: RULE, width: 0.4 };
        self.page().ops.push((shape, false));
    }

    /// Room for `height` more points on this page, else a new page.
    fn need(&mut self, height: f32) {
        if self.y + height > BOTTOM {
            self.new_page();
        }
    }

    fn heading(&mut self, text: &str, size: f32) {
        self.need(size * 2.0 + 40.0);
        self.y += size * 1.4;
        self.text(MARGIN, self.y, size, text, true);
        self.y += size * 0.8;
    }

    fn paragraph(&mut self, text: &str, size: f32) {
        let lines = self.regular.wrap(text, size, PAGE_W - 2.0 * MARGIN);
        for line in lines {
            self.need(size * 1.4);
            self.y += size * 1.4;
            self.text(MARGIN, self.y, size, &line, false);
        }
    }

    fn pairs(&mut self, lines: &[(&str, String)], size: f32) {
        let label_w = lines.iter().map(|(l, _)| self.bold.width(l, size)).fold(0.0, f32::max);
        for (label, value) in lines {
            let wrapped = self.regular.wrap(value, size, PAGE_W - 2.0 * MARGIN - label_w - 12.0);
            self.need(size * 1.5 * wrapped.len() as f32);
            self.y += size * 1.5;
            self.text(MARGIN, self.y, size, label, true);
            for (at, line) in wrapped.iter().enumerate() {
                if at > 0 {
                    self.y += size * 1.3;
                }
                self.text(MARGIN + label_w + 12.0, self.y, size, line, false);
            }
        }
    }

    fn cells(&self, cells: &[String], widths: &[f32], bold: bool) -> (Vec<Vec<String>>, f32) {
        let face = if bold { &self.bold } else { &self.regular };
        let wrapped: Vec<Vec<String>> = cells
            .iter()
            .zip(widths)
            .map(|(cell, w)| {
                let mut lines = face.wrap(cell, CELL_SIZE, w - 2.0 * CELL_PAD);
                if lines.len() > MAX_CELL_LINES {
                    lines.truncate(MAX_CELL_LINES);
                    lines.push("…".to_owned());
                }
                lines
            })
            .collect();
        let lines = wrapped.iter().map(Vec::len).max().unwrap_or(1).max(1);
        (wrapped, lines as f32 * CELL_LINE + 2.0 * CELL_PAD)
    }

    fn row(&mut self, wrapped: &[Vec<String>], widths: &[f32], height: f32, bold: bool) {
        if bold {
            self.rect(MARGIN, self.y, PAGE_W - 2.0 * MARGIN, height, HEADER_FILL);
        }
        let mut x = MARGIN;
        for (lines, w) in wrapped.iter().zip(widths) {
            for (at, line) in lines.iter().enumerate() {
                let y = self.y + CELL_PAD + CELL_LINE * (at as f32 + 1.0) - 2.2;
                self.text(x + CELL_PAD, y, CELL_SIZE, line, bold);
            }
            x += w;
        }
        self.y += height;
        self.rule(self.y);
    }

    fn table(&mut self, table: &Table) {
        self.heading(&table.title, 12.0);
        if !table.note.is_empty() {
            self.paragraph(&table.note, 8.5);
        }
        if table.rows.is_empty() {
            return;
        }
        self.y += 4.0;
        let total: f32 = table.widths.iter().sum();
        let widths: Vec<f32> =
            table.widths.iter().map(|w| w / total * (PAGE_W - 2.0 * MARGIN)).collect();
        let headers: Vec<String> = table.headers.iter().map(|h| (*h).to_owned()).collect();
        let (header, header_h) = self.cells(&headers, &widths, true);
        let mut first = true;
        for row in &table.rows {
            let (cells, height) = self.cells(row, &widths, false);
            if first || self.y + height > BOTTOM {
                if !first || self.y + header_h + height > BOTTOM {
                    self.new_page();
                    if !first {
                        let title = format!("{} (continued)", table.title);
                        self.y += 10.0;
                        self.text(MARGIN, self.y, 9.0, &title, true);
                        self.y += 6.0;
                    }
                }
                self.rule(self.y);
                self.row(&header, &widths, header_h, true);
                first = false;
            }
            self.row(&cells, &widths, height, false);
        }
    }
}

fn paint(color: Rgb) -> krilla::paint::Paint {
    rgb::Color::new(color.0, color.1, color.2).into()
}

/// The report as PDF bytes.
pub fn render(report: &ComplianceReport) -> Result<Vec<u8>, PdfError> {
    render_counted(report).map(|(bytes, _)| bytes)
}

/// The report as PDF bytes, with its page count.
pub fn render_counted(report: &ComplianceReport) -> Result<(Vec<u8>, usize), PdfError> {
    let mut w =
        Writer { regular: Face::new(REGULAR)?, bold: Face::new(BOLD)?, pages: Vec::new(), y: 0.0 };
    // Title page.
    w.new_page();
    w.y = 150.0;
    let title = format!("{} compliance report", report.standard.title);
    w.text(MARGIN, w.y, 26.0, &title, true);
    w.y += 30.0;
    w.text(MARGIN, w.y, 16.0, &format!("Environment: {}", report.env), false);
    w.y += 20.0;
    w.pairs(&scope(report), 11.0);
    w.y += 16.0;
    w.paragraph(
        "The evidence behind this report (signed agent receipts, signed approvals, the audit \
         chain and its signed checkpoints) is in the environment's evidence bundle for the same \
         period: `dsops evidence export`, checked offline with `dsops evidence verify`.",
        9.0,
    );
    // Summary and chart.
    w.new_page();
    w.heading("Summary", 14.0);
    w.pairs(&summary(report), 9.5);
    w.y += 14.0;
    let (chart_w, chart_h) = (520.0, 220.0);
    w.need(chart_h);
    let (x0, y0) = (MARGIN, w.y);
    for shape in chart_layout(&report.summary, chart_w, chart_h) {
        let moved = match shape {
            Shape::Rect { x, y, w, h, color } => Shape::Rect { x: x + x0, y: y + y0, w, h, color },
            Shape::Line { x1, y1, x2, y2, color, width } => {
                Shape::Line { x1: x1 + x0, y1: y1 + y0, x2: x2 + x0, y2: y2 + y0, color, width }
            }
            Shape::Text { x, y, size, text, centred, color } => {
                Shape::Text { x: x + x0, y: y + y0, size, text, centred, color }
            }
        };
        w.page().ops.push((moved, false));
    }
    w.y += chart_h;
    if !report.notes.is_empty() {
        w.heading("Notes", 11.0);
        for note in &report.notes {
            w.paragraph(note, 8.5);
        }
    }
    for table in tables(report) {
        w.table(&table);
    }
    let pages = w.pages.len();
    Ok((draw(w, report)?, pages))
}

fn draw(w: Writer, report: &ComplianceReport) -> Result<Vec<u8>, PdfError> {
    let mut document = Document::new();
    document.set_metadata(
        Metadata::new()
            .title(format!("{} compliance report: {}", report.standard.title, report.env))
            .creator("dsops".to_owned()),
    );
    let total = w.pages.len();
    let settings = || PageSettings::from_wh(PAGE_W, PAGE_H).ok_or_else(|| PdfError("page".into()));
    for (number, page) in w.pages.iter().enumerate() {
        let mut pdf_page = document.start_page_with(settings()?);
        let mut surface = pdf_page.surface();
        let footer = format!(
            "dsops · {} · {} · {} to {}",
            report.standard.title,
            report.env,
            crate::layout::short(&report.from),
            crate::layout::short(&report.to)
        );
        let mut ops = page.ops.clone();
        ops.push((
            Shape::Text {
                x: MARGIN,
                y: FOOTER_Y,
                size: 7.5,
                text: footer,
                centred: false,
                color: INK,
            },
            false,
        ));
        let number = format!("page {} of {total}", number + 1);
        let x = PAGE_W - MARGIN - w.regular.width(&number, 7.5);
        ops.push((
            Shape::Text { x, y: FOOTER_Y, size: 7.5, text: number, centred: false, color: INK },
            false,
        ));
        for (shape, bold) in ops {
            match shape {
                Shape::Rect { x, y, w: width, h, color } => {
                    let mut path = PathBuilder::new();
                    if let Some(rect) = Rect::from_xywh(x, y, width.max(0.01), h.max(0.01)) {
                        path.push_rect(rect);
                    }
                    if let Some(path) = path.finish() {
                        surface.set_stroke(None);
                        surface.set_fill(Some(Fill {
                            paint: paint(color),
                            opacity: NormalizedF32::ONE,
                            rule: Default::default(),
                        }));
                        surface.draw_path(&path);
                    }
                }
                Shape::Line { x1, y1, x2, y2, color, width } => {
                    let mut path = PathBuilder::new();
                    path.move_to(x1, y1);
                    path.line_to(x2, y2);
                    if let Some(path) = path.finish() {
                        surface.set_fill(None);
                        surface.set_stroke(Some(Stroke {
                            paint: paint(color),
                            width,
                            ..Default::default()
                        }));
                        surface.draw_path(&path);
                    }
                }
                Shape::Text { x, y, size, text, centred, color } => {
                    let face = if bold { &w.bold } else { &w.regular };
                    let x = if centred { x - face.width(&text, size) / 2.0 } else { x };
                    surface.set_stroke(None);
                    surface.set_fill(Some(Fill {
                        paint: paint(color),
                        opacity: NormalizedF32::ONE,
                        rule: Default::default(),
                    }));
                    surface.draw_text(
                        Point::from_xy(x, y),
                        face.font.clone(),
                        size,
                        &text,
                        false,
                        TextDirection::Auto,
                    );
                }
            }
        }
        surface.finish();
        pdf_page.finish();
    }
    document.finish().map_err(|e| PdfError(format!("{e:?}")))
}
