//! The evaluation's outputs: Markdown tables in the paper's layout (rows attacks, columns
//! class sets), CSV, JSON and ROC curves as PNG.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::{CellResult, EvalReport, PAPER_DETECTION, PAPER_FPR};
use crate::train::Variant;

fn ordered<T: PartialEq + Clone>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

/// One Markdown table: rows attacks, columns class sets, for one variant and one metric.
fn table(
    cells: &[CellResult],
    variant: Variant,
    title: &str,
    value: impl Fn(&CellResult) -> String,
) -> String {
    let sets = ordered(cells.iter().map(|c| c.class_set.clone()));
    let attacks = ordered(cells.iter().map(|c| c.attack.clone()));
    let mut s = format!("**{title}** ({} classifier)\n\n| attack |", variant.name());
    for set in &sets {
        let _ = write!(s, " {set} |");
    }
    s += "\n|---|";
    s += &"---:|".repeat(sets.len());
    s += "\n";
    for attack in &attacks {
        let _ = write!(s, "| {attack} |");
        for set in &sets {
            let cell = cells
                .iter()
                .find(|c| c.variant == variant && &c.class_set == set && &c.attack == attack);
            let _ = write!(s, " {} |", cell.map_or_else(|| "–".into(), &value));
        }
        s += "\n";
    }
    s
}

/// The Markdown report.
pub fn markdown(report: &EvalReport) -> String {
    let cells = &report.cells;
    let variants = ordered(cells.iter().map(|c| c.variant));
    let mut s = String::new();
    let _ = writeln!(s, "# UnMask evaluation on parts-world\n");
    let _ = writeln!(
        s,
        "Produced by `{}` on {} ({}), {} held-out images per class set, {:.0} s. \
         Held-out images come from the evaluation seed, never used for training, tuning or calibration.\n",
        report.command, report.date, report.machine, report.images_per_class_set, report.seconds
    );
    let _ = writeln!(
        s,
        "Detection and false-positive rates are at the thresholds each classifier was calibrated with \
         (`unmask calibrate`, on separate calibration images: one threshold per predicted class when \
         the table below lists them, each for the same clean false-positive rate). Positives are the \
         successful attacks (M wrong on the adversarial image), negatives the same images clean, as in \
         the paper. The ROC curves and AUCs use the detector's score, the threshold of the predicted \
         class minus the similarity (with one global threshold: the paper's score 1 − similarity, \
         shifted); \"AUC of 1 − s\" is the paper's score whatever the thresholds. \
         \"@9.66% FPR\" is the best detection rate on the ROC curve with at most {:.2}% false positives — \
         the paper's best operating point was {:.2}% detection there. Defense accuracy is the accuracy \
         of UnMask's final label on all adversarial images (realigned when flagged, M's label otherwise); \
         realignment accuracy uses K's parts alone, for every adversarial image.\n",
        100.0 * PAPER_FPR,
        100.0 * PAPER_DETECTION
    );
    for &v in &variants {
        let clean = cells.iter().filter(|c| c.variant == v);
        let sets = ordered(clean.clone().map(|c| {
            let per_class = if c.class_thresholds.is_empty() {
                "–".to_owned()
            } else {
                c.class_thresholds
                    .iter()
                    .map(|t| format!("{t:.3}"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            (
                c.class_set.clone(),
                c.clean_accuracy,
                c.clean_flag_rate,
                c.threshold,
                per_class,
            )
        }));
        let _ = writeln!(s, "## {} classifier\n", v.name());
        let _ = writeln!(
            s,
            "| class set | clean accuracy of M | clean images flagged | global threshold | per-class thresholds (classes in class-set order) |\n|---|---:|---:|---:|---|"
        );
        for (set, acc, flag, t, per_class) in sets {
            let _ = writeln!(
                s,
                "| {set} | {} | {} | {t:.3} | {per_class} |",
                pct(acc),
                pct(flag)
            );
        }
        s += "\n";
        s += &table(cells, v, "M's accuracy under attack, no defense (%)", |c| {
            pct(c.attacked_accuracy)
        });
        s += "\n";
        s += &table(
            cells,
            v,
            "Detection rate / false-positive rate at the calibrated threshold (%), over n successful attacks",
            |c| {
                format!(
                    "{} / {} (n={})",
                    pct(c.detection_rate),
                    pct(c.false_positive_rate),
                    c.successful_attacks
                )
            },
        );
        s += "\n";
        s += &table(
            cells,
            v,
            "ROC AUC (detector's score) / AUC of 1 − s",
            |c| {
                let f = |a: Option<f64>| a.map_or_else(|| "–".into(), |a| format!("{a:.3}"));
                format!("{} / {}", f(c.auc), f(c.auc_paper_score))
            },
        );
        s += "\n";
        s += &table(cells, v, "Detection @9.66% FPR (%)", |c| {
            pct(c.detection_at_paper_fpr)
        });
        s += "\n";
        s += &table(
            cells,
            v,
            "Defense accuracy (%)",
            |c| pct(c.defense_accuracy),
        );
        s += "\n";
        s += &table(cells, v, "Realignment accuracy (%)", |c| {
            pct(c.realignment_accuracy)
        });
        s += "\n";
        s += &table(
            cells,
            v,
            "Attacks that beat UnMask: M wrong and not flagged (%)",
            |c| pct(c.undetected_success_rate),
        );
        s += "\n";
    }
    s
}

/// CSV, one line per cell.
pub fn csv(cells: &[CellResult]) -> String {
    let mut s = String::from(
        "class_set,variant,attack,adaptive,images,threshold,class_thresholds,clean_accuracy,clean_flag_rate,attacked_accuracy,successful_attacks,detection_rate,false_positive_rate,auc,auc_paper_score,detection_at_paper_fpr,fpr_at_paper_point,defense_accuracy,realignment_accuracy,undetected_success_rate\n",
    );
    for c in cells {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{:.4},{:.4},{:.4},{},{:.4},{:.4},{},{},{:.4},{:.4},{:.4},{:.4},{:.4}",
            c.class_set,
            c.variant.name(),
            c.attack,
            c.adaptive,
            c.images,
            c.threshold,
            c.class_thresholds
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            c.clean_accuracy,
            c.clean_flag_rate,
            c.attacked_accuracy,
            c.successful_attacks,
            c.detection_rate,
            c.false_positive_rate,
            c.auc.map_or_else(String::new, |a| format!("{a:.4}")),
            c.auc_paper_score
                .map_or_else(String::new, |a| format!("{a:.4}")),
            c.detection_at_paper_fpr,
            c.fpr_at_paper_point,
            c.defense_accuracy,
            c.realignment_accuracy,
            c.undetected_success_rate
        );
    }
    s
}

/// One ROC plot per (class set, variant): a curve per attack.
pub fn roc_plots(cells: &[CellResult], dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut written = Vec::new();
    let groups = ordered(cells.iter().map(|c| (c.class_set.clone(), c.variant)));
    for (set, variant) in groups {
        let path = dir.join(format!(
            "roc-{}-{}.png",
            set.to_ascii_lowercase(),
            variant.name()
        ));
        {
            let root = BitMapBackend::new(&path, (760, 560)).into_drawing_area();
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    format!("UnMask ROC — {set}, {} M", variant.name()),
                    ("sans-serif", 22),
                )
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d(0f64..1f64, 0f64..1.0001f64)?;
            chart
                .configure_mesh()
                .x_desc("false-positive rate")
                .y_desc("detection rate")
                .draw()?;
            let group: Vec<&CellResult> = cells
                .iter()
                .filter(|c| c.class_set == set && c.variant == variant && !c.roc.is_empty())
                .collect();
            for (i, c) in group.iter().enumerate() {
                let colour = Palette99::pick(i).stroke_width(2);
                let points: Vec<(f64, f64)> = c
                    .roc
                    .iter()
                    .map(|p| (p.false_positive_rate, p.true_positive_rate))
                    .collect();
                let label = format!(
                    "{} (AUC {})",
                    c.attack,
                    c.auc.map_or_else(|| "–".into(), |a| format!("{a:.3}"))
                );
                chart
                    .draw_series(LineSeries::new(points, colour))?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(
                            vec![(x, y), (x + 18, y)],
                            Palette99::pick(i).stroke_width(2),
                        )
                    });
            }
            chart
                .draw_series(std::iter::once(Circle::new(
                    (PAPER_FPR, PAPER_DETECTION),
                    5,
                    RED.filled(),
                )))?
                .label("paper: 96.75% @ 9.66%")
                .legend(|(x, y)| Circle::new((x + 9, y), 4, RED.filled()));
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 12))
                .draw()?;
            root.present()
                .with_context(|| format!("writing {}", path.display()))?;
        }
        written.push(path);
    }
    Ok(written)
}

/// Writes `eval.md`, `eval.csv`, `eval.json` and the ROC plots into `dir`.
pub fn write_all(report: &EvalReport, dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, text) in [
        ("eval.md", markdown(report)),
        ("eval.csv", csv(&report.cells)),
        ("eval.json", serde_json::to_string_pretty(report)? + "\n"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    written.extend(roc_plots(&report.cells, dir)?);
    Ok(written)
}
