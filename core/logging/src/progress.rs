//! `progress.png` like nnU-Net's `LocalLogger.plot_progress_png` (training spec §2.11): three stacked panels
//!
//! 1. train loss (blue) and val loss (red) vs epoch; pseudo Dice (green, dotted) and its EMA (green, solid)
//!    on a twin y-axis (right);
//! 2. epoch duration in seconds (y from 0);
//! 3. learning rate.
//!
//! Legends sit above each panel as in nnU-Net (`legend(loc=(0, 1))`), on seaborn's darkgrid look. Drawn with
//! `plotters` into an RGB buffer (no system libraries), text with a bundled ASCII subset of DejaVu Sans
//! (matplotlib's default font; licence in `assets/LICENSE_DEJAVU`), encoded with the pure-Rust `image` PNG
//! encoder. Non-finite values (a NaN Dice) leave a gap in their curve.

use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans-ASCII.ttf");
const FONT_NAME: &str = "nnunet-dejavu-sans";

/// One value per epoch for each curve (nnU-Net's `LocalLogger` lists). The plot shows the first
/// `min(len)` epochs of all lists, as nnU-Net does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgressCurves {
    pub train_losses: Vec<f64>,
    pub val_losses: Vec<f64>,
    /// mean foreground pseudo Dice of the epoch's validation batches
    pub mean_fg_dice: Vec<f64>,
    /// its exponential moving average (`0.9 * previous + 0.1 * current`)
    pub ema_fg_dice: Vec<f64>,
    /// `epoch_end_timestamp - epoch_start_timestamp`, seconds
    pub epoch_durations: Vec<f64>,
    pub lrs: Vec<f64>,
}

impl ProgressCurves {
    /// Number of epochs that have a value in every list.
    pub fn epochs(&self) -> usize {
        [&self.train_losses, &self.val_losses, &self.mean_fg_dice, &self.ema_fg_dice, &self.epoch_durations, &self.lrs]
            .iter()
            .map(|v| v.len())
            .min()
            .unwrap_or(0)
    }
}

/// Error drawing or encoding the plot.
#[derive(Debug)]
pub struct PlotError(pub String);

impl std::fmt::Display for PlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "progress plot: {}", self.0)
    }
}

impl std::error::Error for PlotError {}

fn perr(e: impl std::fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

/// Default size in pixels: half of nnU-Net's 3000×5400 (`figsize=(30, 54)` at 100 dpi), same aspect ratio.
pub const DEFAULT_SIZE: (u32, u32) = (1500, 2700);

fn register_font() -> Result<(), PlotError> {
    static ONCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *ONCE.get_or_init(|| plotters::style::register_font(FONT_NAME, FontStyle::Normal, FONT).is_ok());
    if ok { Ok(()) } else { Err(PlotError("bundled font could not be parsed".into())) }
}

/// Draw the plot and return PNG bytes (`size` = (width, height) in pixels).
pub fn render_progress_png(curves: &ProgressCurves, size: (u32, u32)) -> Result<Vec<u8>, PlotError> {
    register_font()?;
    let (w, h) = size;
    if w < 200 || h < 300 {
        return Err(PlotError(format!("image size {w}x{h} too small")));
    }
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        let panels = root.split_evenly((3, 1));
        let style = Style::new(w);
        let n = curves.epochs();
        let x: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let take = |v: &[f64]| v[..n].to_vec();

        draw_panel(
            &panels[0],
            &style,
            &x,
            "loss",
            None,
            &[
                Curve { label: "loss_tr", y: take(&curves.train_losses), color: BLUE_C, width: 4.0, dotted: false },
                Curve { label: "loss_val", y: take(&curves.val_losses), color: RED_C, width: 4.0, dotted: false },
            ],
            Some((
                "pseudo dice",
                &[
                    Curve { label: "pseudo dice", y: take(&curves.mean_fg_dice), color: GREEN_C, width: 3.0, dotted: true },
                    Curve { label: "pseudo dice (mov. avg.)", y: take(&curves.ema_fg_dice), color: GREEN_C, width: 4.0, dotted: false },
                ],
            )),
        )?;
        draw_panel(
            &panels[1],
            &style,
            &x,
            "time [s]",
            Some(0.0),
            &[Curve { label: "epoch duration", y: take(&curves.epoch_durations), color: BLUE_C, width: 4.0, dotted: false }],
            None,
        )?;
        draw_panel(
            &panels[2],
            &style,
            &x,
            "learning rate",
            None,
            &[Curve { label: "learning rate", y: take(&curves.lrs), color: BLUE_C, width: 4.0, dotted: false }],
            None,
        )?;
        root.present().map_err(perr)?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).ok_or_else(|| PlotError("buffer size".into()))?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).map_err(perr)?;
    Ok(png)
}

/// Draw the plot and write it atomically to `path` (nnU-Net: `fold_X/progress.png`), at [`DEFAULT_SIZE`].
pub fn write_progress_png(path: &Path, curves: &ProgressCurves) -> Result<(), PlotError> {
    let png = render_progress_png(curves, DEFAULT_SIZE)?;
    nnunet_schema::json::write_atomic(path, &png).map_err(perr)
}

// matplotlib's 'b', 'r', 'g' and seaborn darkgrid's axes colour
const BLUE_C: RGBColor = RGBColor(0, 0, 255);
const RED_C: RGBColor = RGBColor(255, 0, 0);
const GREEN_C: RGBColor = RGBColor(0, 128, 0);
const AXES_BG: RGBColor = RGBColor(234, 234, 242);
const TEXT: RGBColor = RGBColor(38, 38, 38);

struct Curve {
    label: &'static str,
    y: Vec<f64>,
    color: RGBColor,
    /// matplotlib linewidth in points (converted with the image scale)
    width: f64,
    dotted: bool,
}

struct Style {
    /// pixels per matplotlib point at this image width (100 dpi at 3000 px)
    px_per_pt: f64,
    font_px: f64,
}

impl Style {
    fn new(width: u32) -> Self {
        let px_per_pt = width as f64 / 3000.0 * 100.0 / 72.0;
        // seaborn font_scale=2.5 on matplotlib's 10 pt: 25 pt (ticks 22 pt)
        Self { px_per_pt, font_px: 25.0 * px_per_pt }
    }
    fn px(&self, pt: f64) -> u32 {
        (pt * self.px_per_pt).round().max(1.0) as u32
    }
    fn text(&self, scale: f64) -> TextStyle<'static> {
        (FONT_NAME, self.font_px * scale).into_font().color(&TEXT)
    }
}

/// matplotlib-like autoscale: data range plus 5 % on each side (`floor` pins the lower end).
fn y_range(curves: &[Curve], floor: Option<f64>) -> (f64, f64) {
    let vals = curves.iter().flat_map(|c| c.y.iter().copied()).filter(|v| v.is_finite());
    let (mut lo, mut hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(lo.abs()) {
        let pad = if lo == 0.0 { 0.05 } else { lo.abs() * 0.05 };
        (lo, hi) = (lo - pad, hi + pad);
    } else {
        let pad = (hi - lo) * 0.05;
        (lo, hi) = (lo - pad, hi + pad);
    }
    match floor {
        Some(f) => (f, hi.max(f + f64::EPSILON)),
        None => (lo, hi),
    }
}

/// Tick label with as many decimals as the axis span needs (about 8 ticks).
fn tick_formatter(lo: f64, hi: f64) -> impl Fn(&f64) -> String {
    let step = (hi - lo) / 8.0;
    let decimals = if step > 0.0 { (-step.log10()).ceil().clamp(0.0, 10.0) as usize } else { 2 };
    move |v: &f64| {
        let s = format!("{:.*}", decimals, v);
        if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') { s[1..].to_string() } else { s }
    }
}

/// Contiguous runs of finite points.
fn runs(x: &[f64], y: &[f64]) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = vec![];
    let mut cur = vec![];
    for (&a, &b) in x.iter().zip(y) {
        if b.is_finite() {
            cur.push((a, b));
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn shape(style: &Style, c: &Curve) -> ShapeStyle {
    c.color.stroke_width(style.px(c.width * 1.0))
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    style: &Style,
    x: &[f64],
    y_label: &str,
    y_floor: Option<f64>,
    primary: &[Curve],
    secondary: Option<(&str, &[Curve])>,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let (aw, _) = area.dim_in_pixel();
    let legend_h = (style.font_px * 2.2) as u32;
    let margin = (aw as f64 * 0.02) as u32;
    let area = area.margin(margin, margin / 2, margin, margin);
    let (legend_area, plot_area) = area.split_vertically(legend_h);

    let n = x.len();
    let span = (n.max(2) - 1) as f64;
    let (x_lo, x_hi) = (-0.05 * span, span * 1.05);
    let (y_lo, y_hi) = y_range(primary, y_floor);
    let y_fmt = tick_formatter(y_lo, y_hi);
    let label_px = (style.font_px * 3.2) as u32;
    let mut builder = ChartBuilder::on(&plot_area);
    builder.x_label_area_size(label_px).y_label_area_size((style.font_px * 4.5) as u32);
    if secondary.is_some() {
        builder.right_y_label_area_size((style.font_px * 4.5) as u32);
    }
    let chart = builder.build_cartesian_2d(x_lo..x_hi, y_lo..y_hi).map_err(perr)?;
    chart.plotting_area().fill(&AXES_BG).map_err(perr)?;
    let mut legend: Vec<&Curve> = primary.iter().collect();

    // With a twin axis the secondary coordinate system must exist before the primary mesh is drawn, or the
    // primary tick labels are also drawn into the right label area.
    match secondary {
        None => {
            let mut chart = chart;
            draw_primary(&mut chart, style, x, y_label, &y_fmt, primary)?;
        }
        Some((label2, sec)) => {
            let (s_lo, s_hi) = y_range(sec, None);
            let s_fmt = tick_formatter(s_lo, s_hi);
            let mut dual = chart.set_secondary_coord(x_lo..x_hi, s_lo..s_hi);
            draw_primary(&mut dual, style, x, y_label, &y_fmt, primary)?;
            dual.configure_secondary_axes()
                .axis_style(TRANSPARENT)
                .set_all_tick_mark_size(0)
                .y_labels(8)
                .y_desc(label2)
                .label_style(style.text(0.88))
                .axis_desc_style(style.text(1.0))
                .y_label_formatter(&s_fmt)
                .draw()
                .map_err(perr)?;
            for c in sec {
                for run in runs(x, &c.y) {
                    if c.dotted {
                        let dash = style.px(c.width) as i32;
                        dual.draw_secondary_series(DashedLineSeries::new(run, dash, (dash as f64 * 1.65) as i32, shape(style, c)))
                            .map_err(perr)?;
                    } else {
                        dual.draw_secondary_series(LineSeries::new(run, shape(style, c))).map_err(perr)?;
                    }
                }
            }
            // nnU-Net draws two legends side by side (loc (0,1) and (0.2,1)); one row here
            legend.extend(sec.iter());
        }
    }
    draw_legend(&legend_area, style, &legend)?;
    Ok(())
}

type F64Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// Grid, ticks, axis titles and the curves of the primary (left) axis.
fn draw_primary<DB: DrawingBackend>(
    chart: &mut F64Chart<'_, DB>,
    style: &Style,
    x: &[f64],
    y_label: &str,
    y_fmt: &dyn Fn(&f64) -> String,
    curves: &[Curve],
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let x_fmt = |v: &f64| format!("{}", v.round() as i64);
    chart
        .configure_mesh()
        .bold_line_style(WHITE.stroke_width(style.px(1.25)))
        .light_line_style(TRANSPARENT)
        .axis_style(TRANSPARENT)
        .set_all_tick_mark_size(0)
        .x_labels(10)
        .y_labels(8)
        .x_desc("epoch")
        .y_desc(y_label)
        .label_style(style.text(0.88))
        .axis_desc_style(style.text(1.0))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(y_fmt)
        .draw()
        .map_err(perr)?;
    for c in curves {
        for run in runs(x, &c.y) {
            if c.dotted {
                let dash = style.px(c.width) as i32;
                chart.draw_series(DashedLineSeries::new(run, dash, (dash as f64 * 1.65) as i32, shape(style, c))).map_err(perr)?;
            } else {
                chart.draw_series(LineSeries::new(run, shape(style, c))).map_err(perr)?;
            }
        }
    }
    Ok(())
}

/// A one-row legend (line sample + label per curve) in a framed box at the top left.
fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, style: &Style, curves: &[&Curve]) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let (_, h) = area.dim_in_pixel();
    let text = style.text(0.9);
    let sample = (style.font_px * 2.0) as i32;
    let gap = (style.font_px * 0.8) as i32;
    let y = h as i32 / 2;
    let left = (style.font_px * 4.5) as i32; // align with the plot's left edge (after the y label area)
    let mut widths = Vec::new();
    for c in curves {
        let (tw, _) = area.estimate_text_size(c.label, &text).map_err(perr)?;
        widths.push(tw as i32);
    }
    let total: i32 = widths.iter().map(|w| sample + gap / 2 + w + gap).sum::<i32>() + gap / 2;
    let box_h = (style.font_px * 1.6) as i32;
    area.draw(&Rectangle::new([(left, y - box_h / 2), (left + total, y + box_h / 2)], RGBColor(234, 234, 242).filled())).map_err(perr)?;
    area.draw(&Rectangle::new([(left, y - box_h / 2), (left + total, y + box_h / 2)], RGBColor(204, 204, 204).stroke_width(1)))
        .map_err(perr)?;
    let mut xpos = left + gap / 2;
    for (c, tw) in curves.iter().zip(widths) {
        let pts = vec![(xpos, y), (xpos + sample, y)];
        if c.dotted {
            let dash = style.px(c.width) as i32;
            area.draw(&plotters::element::DashedPathElement::new(pts, dash, (dash as f64 * 1.65) as i32, shape(style, c))).map_err(perr)?;
        } else {
            area.draw(&PathElement::new(pts, shape(style, c))).map_err(perr)?;
        }
        xpos += sample + gap / 2;
        area.draw(&Text::new(
            c.label,
            (xpos, y),
            text.pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Left,
                plotters::style::text_anchor::VPos::Center,
            )),
        ))
        .map_err(perr)?;
        xpos += tw + gap;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn synthetic(n: usize) -> ProgressCurves {
        let mut c = ProgressCurves::default();
        let mut ema = f64::NAN;
        for e in 0..n {
            let t = e as f64;
            c.train_losses.push(-0.85 * (1.0 - (-t / 40.0).exp()) + 0.02 * (t * 0.7).sin());
            c.val_losses.push(-0.80 * (1.0 - (-t / 45.0).exp()) + 0.03 * (t * 1.3).cos());
            let dice = if e == 7 { f64::NAN } else { 0.88 * (1.0 - (-t / 30.0).exp()) + 0.02 * (t * 0.9).sin() };
            c.mean_fg_dice.push(dice);
            ema = if ema.is_nan() {
                dice
            } else if dice.is_nan() {
                ema
            } else {
                0.9 * ema + 0.1 * dice
            };
            c.ema_fg_dice.push(ema);
            c.epoch_durations.push(40.0 + 3.0 * (t * 0.37).sin() + if e == 0 { 25.0 } else { 0.0 });
            c.lrs.push(0.01 * (1.0 - t / n as f64).powf(0.9));
        }
        c
    }

    #[test]
    fn renders_png_with_expected_size_and_colours() {
        let curves = synthetic(120);
        assert_eq!(curves.epochs(), 120);
        let png = render_progress_png(&curves, DEFAULT_SIZE).unwrap();
        let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), DEFAULT_SIZE);
        let count = |c: [u8; 3]| img.pixels().filter(|p| p.0 == c).count();
        assert!(count([0, 0, 255]) > 500, "blue curves");
        assert!(count([255, 0, 0]) > 100, "red curve");
        assert!(count([0, 128, 0]) > 100, "green curves");
        assert!(count([234, 234, 242]) > 100_000, "axes background");
        // text was rendered: dark anti-aliased pixels exist
        assert!(img.pixels().filter(|p| p.0.iter().all(|&v| v < 100)).count() > 2000, "text");
    }

    #[test]
    fn degenerate_inputs_do_not_fail() {
        let dir = tempfile::tempdir().unwrap();
        for curves in [ProgressCurves::default(), synthetic(1), {
            let mut c = synthetic(3);
            c.mean_fg_dice = vec![f64::NAN; 3];
            c.ema_fg_dice = vec![f64::NAN; 3];
            c
        }] {
            let path = dir.path().join("progress.png");
            write_progress_png(&path, &curves).unwrap();
            assert!(std::fs::metadata(&path).unwrap().len() > 1000);
        }
        // lists of different lengths: the common prefix is drawn
        let mut c = synthetic(10);
        c.lrs.truncate(4);
        assert_eq!(c.epochs(), 4);
        render_progress_png(&c, (600, 1080)).unwrap();
    }

    /// Writes `$NNUNET_PROGRESS_PNG_OUT` (if set) for a visual check.
    #[test]
    fn write_sample_for_inspection() {
        if let Some(out) = std::env::var_os("NNUNET_PROGRESS_PNG_OUT") {
            write_progress_png(Path::new(&out), &synthetic(250)).unwrap();
        }
    }
}
