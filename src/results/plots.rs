//! PNG exporters: pure functions of result rows (they never compute statistics beyond what a
//! box plot draws, and never train). Text uses an embedded DejaVu Sans, so rendering needs no
//! system fonts and is byte-identical from run to run.

use std::path::Path;
use std::sync::Once;

use anyhow::Result;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::data::ImageShape;
use crate::files::write_atomic;
use crate::results::csv::{FoldRow, HistoryRow};

/// matplotlib's default blue (train, as in the seed's figure).
pub const BLUE: RGBColor = RGBColor(31, 119, 180);
/// matplotlib's default orange (validation).
pub const ORANGE: RGBColor = RGBColor(255, 127, 14);
const FONT: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/DejaVuSans.ttf");
        plotters::style::register_font(FONT, FontStyle::Normal, bytes)
            .map_err(|_| ())
            .expect("embedded font parses");
    });
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing failed: {e:?}")
}

/// A chart over epochs 1..=`epochs` (at least 2) and `lo..hi`, with the mesh, labels and
/// fonts every epoch plot here shares.
fn epoch_chart<'a, 'b>(
    area: &'a DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>,
    caption: String,
    epochs: usize,
    (lo, hi): (f64, f64),
    ylabel: &str,
) -> Result<ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 22))
        .margin(12)
        .margin_right(28)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(1f64..(epochs.max(2)) as f64, lo..hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(epochs.clamp(2, 20))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("epoch")
        .y_desc(ylabel)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

/// Renders into an RGB buffer with `draw`, then writes it as PNG atomically.
fn render(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    register_font();
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(root.clone())?;
        root.present().map_err(err)?;
    }
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &buf,
        w,
        h,
        image::ExtendedColorType::Rgb8,
    )?;
    write_atomic(path, &png)
}

fn range_of(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = (hi - lo).max(1e-6);
    (lo - pad * span, hi + pad * span)
}

/// The seed's diagnostics figure: loss and accuracy over epochs, train blue, validation orange,
/// one thin line per fold and the mean over folds drawn bold.
pub fn diagnostics_png(path: &Path, history: &[HistoryRow], title: &str) -> Result<()> {
    let mut folds: Vec<usize> = history.iter().map(|r| r.fold).collect();
    folds.sort_unstable();
    folds.dedup();
    let epochs = history.iter().map(|r| r.row.epoch).max().unwrap_or(1);
    render(path, (900, 900), |root| {
        let (top, bottom) = root.split_vertically(450);
        type Get = fn(&HistoryRow) -> (f64, f64);
        let panels: [(&DrawingArea<_, _>, &str, &str, Get); 2] = [
            (&top, "Cross Entropy Loss", "loss", |r| {
                (r.row.train_loss, r.row.val_loss)
            }),
            (&bottom, "Classification Accuracy", "accuracy (%)", |r| {
                (r.row.train_acc * 100.0, r.row.val_acc * 100.0)
            }),
        ];
        for (area, caption, ylabel, get) in panels {
            let (lo, hi) = range_of(
                history.iter().flat_map(|r| {
                    let (a, b) = get(r);
                    [a, b]
                }),
                0.05,
            );
            let mut chart = epoch_chart(
                area,
                format!("{title}: {caption}"),
                epochs,
                (lo, hi),
                ylabel,
            )?;
            for (which, color) in [(0usize, BLUE), (1, ORANGE)] {
                let pick = |r: &HistoryRow| if which == 0 { get(r).0 } else { get(r).1 };
                for (i, f) in folds.iter().enumerate() {
                    let pts: Vec<(f64, f64)> = history
                        .iter()
                        .filter(|r| r.fold == *f)
                        .map(|r| (r.row.epoch as f64, pick(r)))
                        .filter(|p| p.1.is_finite())
                        .collect();
                    let s = chart
                        .draw_series(LineSeries::new(pts, color.mix(0.45).stroke_width(1)))
                        .map_err(err)?;
                    if i == 0 {
                        let name = if which == 0 {
                            "train (each fold)"
                        } else {
                            "validation (each fold)"
                        };
                        s.label(name).legend(move |(x, y)| {
                            PathElement::new(
                                vec![(x, y), (x + 20, y)],
                                color.mix(0.45).stroke_width(1),
                            )
                        });
                    }
                }
                let mean: Vec<(f64, f64)> = (1..=epochs)
                    .filter_map(|e| {
                        let v: Vec<f64> = history
                            .iter()
                            .filter(|r| r.row.epoch == e)
                            .map(pick)
                            .filter(|v| v.is_finite())
                            .collect();
                        (!v.is_empty()).then(|| (e as f64, v.iter().sum::<f64>() / v.len() as f64))
                    })
                    .collect();
                let name = if which == 0 {
                    "train (mean)"
                } else {
                    "validation (mean)"
                };
                chart
                    .draw_series(LineSeries::new(mean, color.stroke_width(3)))
                    .map_err(err)?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                    });
            }
            chart
                .configure_series_labels()
                .position(if caption.starts_with("Cross") {
                    SeriesLabelPosition::UpperRight
                } else {
                    SeriesLabelPosition::LowerRight
                })
                .label_font((FONT, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.5))
                .draw()
                .map_err(err)?;
        }
        Ok(())
    })
}

/// One variant's curve in a search plot: its name, its validation accuracy (fraction) after
/// each epoch it trained on its first rung fold, and whether it survived.
pub struct SearchCurve {
    /// The variant.
    pub name: String,
    /// Validation accuracy after each epoch trained.
    pub val_acc: Vec<f64>,
    /// Whether it was cross-validated in full.
    pub survivor: bool,
}

/// A search's plot: every variant's validation accuracy by epoch on its first rung fold,
/// stopped variants faint gray, survivors in colour, the rungs' epochs marked.
pub fn search_png(path: &Path, title: &str, curves: &[SearchCurve], rungs: &[usize]) -> Result<()> {
    const COLOURS: [RGBColor; 6] = [
        BLUE,
        ORANGE,
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    let epochs = curves
        .iter()
        .map(|c| c.val_acc.len())
        .max()
        .unwrap_or(1)
        .max(2);
    render(path, (900, 560), |root| {
        // The upper part of the range: where the variants that matter are told apart.
        let all: Vec<f64> = curves
            .iter()
            .flat_map(|c| c.val_acc.iter().map(|a| a * 100.0))
            .collect();
        let (_, hi) = range_of(all.iter().copied(), 0.05);
        let mut sorted = all.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let lo = sorted
            .get(sorted.len() / 10)
            .copied()
            .unwrap_or(0.0)
            .min(hi - 1.0);
        let ylabel = "validation accuracy (%), first rung fold";
        let mut chart = epoch_chart(&root, title.to_string(), epochs, (lo, hi), ylabel)?;
        for &r in rungs {
            chart
                .draw_series(LineSeries::new(
                    [(r as f64, lo), (r as f64, hi)],
                    BLACK.mix(0.25).stroke_width(1),
                ))
                .map_err(err)?;
        }
        let points = |c: &SearchCurve| -> Vec<(f64, f64)> {
            c.val_acc
                .iter()
                .enumerate()
                .map(|(i, a)| ((i + 1) as f64, (a * 100.0).max(lo)))
                .collect()
        };
        for c in curves.iter().filter(|c| !c.survivor) {
            chart
                .draw_series(LineSeries::new(points(c), BLACK.mix(0.2).stroke_width(1)))
                .map_err(err)?;
            // A variant stopped after one epoch is a point.
            chart
                .draw_series(
                    points(c)
                        .into_iter()
                        .map(|p| Circle::new(p, 2, BLACK.mix(0.3).filled())),
                )
                .map_err(err)?;
        }
        for (i, c) in curves.iter().filter(|c| c.survivor).enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(
                    points(c)
                        .into_iter()
                        .map(|p| Circle::new(p, 3, colour.filled())),
                )
                .map_err(err)?;
            chart
                .draw_series(LineSeries::new(points(c), colour.stroke_width(3)))
                .map_err(err)?
                .label(c.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3))
                });
        }
        if curves.iter().any(|c| c.survivor) {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .label_font((FONT, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.5))
                .draw()
                .map_err(err)?;
        }
        Ok(())
    })
}

/// Box-plot statistics as matplotlib draws them (linear-interpolated quartiles, whiskers at the
/// furthest data within 1.5 IQR, the rest as outliers).
#[derive(Debug, Clone, PartialEq)]
pub struct BoxStats {
    /// Lower whisker end.
    pub low: f64,
    /// First quartile.
    pub q1: f64,
    /// Median.
    pub median: f64,
    /// Third quartile.
    pub q3: f64,
    /// Upper whisker end.
    pub high: f64,
    /// Points beyond the whiskers.
    pub outliers: Vec<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let pos = p * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    if i + 1 < sorted.len() {
        sorted[i] + frac * (sorted[i + 1] - sorted[i])
    } else {
        sorted[i]
    }
}

impl BoxStats {
    /// Statistics of `values` (at least one).
    pub fn of(values: &[f64]) -> Self {
        let mut v = values.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        let (q1, median, q3) = (
            percentile(&v, 0.25),
            percentile(&v, 0.5),
            percentile(&v, 0.75),
        );
        let iqr = q3 - q1;
        let (lo_lim, hi_lim) = (q1 - 1.5 * iqr, q3 + 1.5 * iqr);
        let low = v
            .iter()
            .cloned()
            .filter(|x| *x >= lo_lim)
            .fold(f64::INFINITY, f64::min);
        let high = v
            .iter()
            .cloned()
            .filter(|x| *x <= hi_lim)
            .fold(f64::NEG_INFINITY, f64::max);
        let outliers = v
            .iter()
            .cloned()
            .filter(|x| *x < lo_lim || *x > hi_lim)
            .collect();
        BoxStats {
            low,
            q1,
            median,
            q3,
            high,
            outliers,
        }
    }
}

/// Box plots of fold accuracies (percent) per experiment, with thin lines joining each fold's
/// scores across experiments when `join_folds`.
pub fn boxplot_png(
    path: &Path,
    title: &str,
    groups: &[(String, Vec<FoldRow>)],
    join_folds: bool,
) -> Result<()> {
    let width = (260 + 110 * groups.len() as u32).max(600);
    render(path, (width, 560), |root| {
        let (lo, hi) = range_of(
            groups
                .iter()
                .flat_map(|(_, f)| f.iter().map(|r| r.val_acc * 100.0)),
            0.1,
        );
        let n = groups.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(75)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), lo..hi)
            .map_err(err)?;
        let names: Vec<String> = groups.iter().map(|(n, _)| n.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                    names[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .x_label_style((FONT, 14))
            .y_desc("validation accuracy (%)")
            .light_line_style(WHITE.mix(0.0))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()
            .map_err(err)?;
        if join_folds && n > 1 {
            let mut folds: Vec<usize> = groups
                .iter()
                .flat_map(|(_, f)| f.iter().map(|r| r.fold))
                .collect();
            folds.sort_unstable();
            folds.dedup();
            for fold in folds {
                let pts: Vec<(f64, f64)> = groups
                    .iter()
                    .enumerate()
                    .filter_map(|(i, (_, f))| {
                        f.iter()
                            .find(|r| r.fold == fold)
                            .map(|r| (i as f64, r.val_acc * 100.0))
                    })
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts, BLACK.mix(0.25).stroke_width(1)))
                    .map_err(err)?;
            }
        }
        for (i, (_, folds)) in groups.iter().enumerate() {
            if folds.is_empty() {
                continue;
            }
            let vals: Vec<f64> = folds.iter().map(|r| r.val_acc * 100.0).collect();
            let s = BoxStats::of(&vals);
            let x = i as f64;
            let hw = 0.25;
            chart
                .draw_series([
                    Rectangle::new([(x - hw, s.q1), (x + hw, s.q3)], BLUE.mix(0.25).filled()),
                    Rectangle::new([(x - hw, s.q1), (x + hw, s.q3)], BLUE.stroke_width(2)),
                ])
                .map_err(err)?;
            let lines = [
                vec![(x - hw, s.median), (x + hw, s.median)],
                vec![(x, s.q3), (x, s.high)],
                vec![(x, s.q1), (x, s.low)],
                vec![(x - hw / 2.0, s.high), (x + hw / 2.0, s.high)],
                vec![(x - hw / 2.0, s.low), (x + hw / 2.0, s.low)],
            ];
            for (j, l) in lines.into_iter().enumerate() {
                let style = if j == 0 {
                    ORANGE.stroke_width(3)
                } else {
                    BLACK.stroke_width(1)
                };
                chart
                    .draw_series(std::iter::once(PathElement::new(l, style)))
                    .map_err(err)?;
            }
            chart
                .draw_series(
                    vals.iter()
                        .map(|v| Circle::new((x, *v), 3, BLACK.mix(0.6).filled())),
                )
                .map_err(err)?;
        }
        Ok(())
    })
}

/// A grid of images with a caption under each (the seed's first figure: the first nine training
/// images, captioned with their labels). Gray images are drawn as they are; with three channels, in colour;
/// with any other number, their first channel.
pub fn samples_png(
    path: &Path,
    shape: ImageShape,
    images: &[&[u8]],
    captions: &[String],
    cols: usize,
) -> Result<()> {
    let rows = images.len().div_ceil(cols.max(1));
    let (h, w, c) = (shape.height, shape.width, shape.channels);
    let (cell_w, cell_h) = (w * 5, h * 5);
    let label_w = captions
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        * 10;
    let col_w = cell_w.max(label_w) + 20;
    let (width, height) = (
        (cols * col_w + 20) as u32,
        (rows * (cell_h + 44) + 20) as u32,
    );
    render(path, (width, height), |root| {
        for (k, img) in images.iter().enumerate() {
            let (r, col) = (k / cols, k % cols);
            let (x0, y0) = ((20 + col * col_w) as i32, (20 + r * (cell_h + 44)) as i32);
            for y in 0..h {
                for x in 0..w {
                    let px = &img[(y * w + x) * c..(y * w + x + 1) * c];
                    let color = if c == 3 {
                        RGBColor(px[0], px[1], px[2])
                    } else {
                        RGBColor(px[0], px[0], px[0])
                    };
                    root.draw(&Rectangle::new(
                        [
                            (x0 + (x * 5) as i32, y0 + (y * 5) as i32),
                            (x0 + (x * 5 + 5) as i32, y0 + (y * 5 + 5) as i32),
                        ],
                        color.filled(),
                    ))
                    .map_err(err)?;
                }
            }
            root.draw(&Text::new(
                captions[k].clone(),
                (x0, y0 + cell_h as i32 + 6),
                (FONT, 18).into_font(),
            ))
            .map_err(err)?;
        }
        Ok(())
    })
}

/// Confusion heat map with counts (rows: true class, columns: predicted class). Classes whose
/// names are their numbers are "digits" (MNIST); other names label the rows.
pub fn confusion_png(
    path: &Path,
    confusion: &[Vec<usize>],
    names: &[String],
    title: &str,
) -> Result<()> {
    let k = confusion.len();
    let numbered = names.iter().enumerate().all(|(i, n)| *n == i.to_string());
    let noun = if numbered && k <= 10 {
        "digit"
    } else {
        "class"
    };
    let name_width = if numbered {
        50
    } else {
        (names.iter().map(|n| n.chars().count()).max().unwrap_or(0) * 9 + 30) as u32
    };
    // Cells of the seed's 10 classes keep its 14-point counts; more classes get smaller text.
    let text_size = (14.0 * (10.0 / k.max(10) as f64)).max(7.0);
    render(path, (670 + name_width, 720), |root| {
        let max_off = confusion
            .iter()
            .enumerate()
            .flat_map(|(t, row)| {
                row.iter()
                    .enumerate()
                    .filter(move |(p, _)| *p != t)
                    .map(|(_, c)| *c)
            })
            .max()
            .unwrap_or(1)
            .max(1);
        let max_diag = (0..k).map(|i| confusion[i][i]).max().unwrap_or(1).max(1);
        let top = k as f64 - 0.5;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{title}: confusion on the test set"), (FONT, 20))
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(name_width)
            .build_cartesian_2d(-0.5f64..top, top..-0.5)
            .map_err(err)?;
        let name_of = |v: &f64| {
            let i = v.round();
            if numbered || (v - i).abs() > 1e-6 || i < 0.0 || i as usize >= k {
                format!("{v:.0}")
            } else {
                format!("{} {}", names[i as usize], i)
            }
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(k)
            .y_labels(k)
            .x_label_formatter(&|v| format!("{:.0}", v))
            .y_label_formatter(&name_of)
            .x_desc(format!("predicted {noun}"))
            .y_desc(format!("true {noun}"))
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 16))
            .draw()
            .map_err(err)?;
        for (t, row) in confusion.iter().enumerate() {
            for (p, &c) in row.iter().enumerate() {
                // Diagonal on its own scale (blue), errors on theirs (orange), so both read.
                let (base, frac) = if t == p {
                    (BLUE, c as f64 / max_diag as f64)
                } else {
                    (ORANGE, c as f64 / max_off as f64)
                };
                let fill = if c == 0 {
                    WHITE
                } else {
                    mix(base, 0.15 + 0.85 * frac)
                };
                let (x, y) = (p as f64, t as f64);
                chart
                    .draw_series([Rectangle::new(
                        [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                        fill.filled(),
                    )])
                    .map_err(err)?;
                let dark = t == p || frac > 0.6;
                let color = if dark { WHITE } else { BLACK };
                chart
                    .draw_series([Text::new(
                        c.to_string(),
                        (
                            x - 0.18 - 0.05 * (c.to_string().len() as f64 - 1.0),
                            y - 0.12,
                        ),
                        (FONT, text_size).into_font().color(&color),
                    )])
                    .map_err(err)?;
            }
        }
        Ok(())
    })
}

fn mix(c: RGBColor, t: f64) -> RGBColor {
    let f = |a: u8| (255.0 + (a as f64 - 255.0) * t).round() as u8;
    RGBColor(f(c.0), f(c.1), f(c.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_stats_match_matplotlib_conventions() {
        let s = BoxStats::of(&[98.6, 98.7, 98.5, 98.8, 97.0]);
        assert!(
            (s.q1 - 98.5).abs() < 1e-9
                && (s.median - 98.6).abs() < 1e-9
                && (s.q3 - 98.7).abs() < 1e-9
        );
        assert_eq!(s.outliers, vec![97.0]);
        assert!((s.low - 98.5).abs() < 1e-9 && (s.high - 98.8).abs() < 1e-9);
    }
}
