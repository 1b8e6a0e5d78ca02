//! The charts of a run page, drawn on the server as SVG over steps: the loss chart
//! (training loss as a line, validation loss as points) and one line chart per other
//! metric (learning rate, tokens per second, DPO's rewards). No script: they show in
//! any browser and in an air-gapped cluster. Each point carries a `<title>` with its
//! step and value, so hovering names it. A page zooms them to a [`StepWindow`] (its
//! `?from=&to=` query); each chart's `data-first-step`/`data-last-step` let the
//! page's script turn a drag across it into that query.

use maud::{Markup, html};
use serde::Deserialize;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 280.0;
/// Room for the axis labels.
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 32.0;
const TOP: f64 = 12.0;
const RIGHT: f64 = 12.0;

/// The steps a page's charts show: all of them, or those from `from` to `to`
/// (inclusive; either end open).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct StepWindow {
    pub from: Option<u64>,
    pub to: Option<u64>,
}

impl StepWindow {
    /// The window with its ends in order.
    pub fn ordered(self) -> Self {
        match (self.from, self.to) {
            (Some(from), Some(to)) if from > to => Self {
                from: Some(to),
                to: Some(from),
            },
            _ => self,
        }
    }

    pub fn is_all(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }

    pub fn contains(&self, step: u64) -> bool {
        let window = self.ordered();
        window.from.is_none_or(|from| step >= from) && window.to.is_none_or(|to| step <= to)
    }

    /// The points of `series` inside the window.
    pub fn of(&self, series: &[(u64, f64)]) -> Vec<(u64, f64)> {
        series
            .iter()
            .copied()
            .filter(|(step, _)| self.contains(*step))
            .collect()
    }
}

/// Where the series are drawn: their step and value ranges mapped onto the plot.
struct Frame {
    steps: (f64, f64),
    values: (f64, f64),
}

impl Frame {
    fn around(series: &[&[(u64, f64)]]) -> Option<Self> {
        let points = series
            .iter()
            .flat_map(|s| s.iter())
            .filter(|p| p.1.is_finite());
        let (mut steps, mut values) = ((f64::MAX, f64::MIN), (f64::MAX, f64::MIN));
        let mut any = false;
        for &(step, value) in points {
            any = true;
            steps = (steps.0.min(step as f64), steps.1.max(step as f64));
            values = (values.0.min(value), values.1.max(value));
        }
        if !any {
            return None;
        }
        // A flat series or a single step still gets a frame.
        if steps.1 - steps.0 < 1.0 {
            steps.1 = steps.0 + 1.0;
        }
        let pad = ((values.1 - values.0) * 0.05).max(1e-6);
        // A loss is never below 0: the axis does not start below it either.
        let low = match values.0 >= 0.0 {
            true => (values.0 - pad).max(0.0),
            false => values.0 - pad,
        };
        Some(Self {
            steps,
            values: (low, values.1 + pad),
        })
    }

    fn x(&self, step: u64) -> f64 {
        let share = (step as f64 - self.steps.0) / (self.steps.1 - self.steps.0);
        LEFT + share * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, value: f64) -> f64 {
        let share = (value - self.values.0) / (self.values.1 - self.values.0);
        HEIGHT - BOTTOM - share * (HEIGHT - BOTTOM - TOP)
    }
}

/// The chart of `train` (a line) and `valid` (points), or a note when there is
/// nothing to draw yet.
pub fn loss_chart(train: &[(u64, f64)], valid: &[(u64, f64)]) -> Markup {
    let Some(frame) = Frame::around(&[train, valid]) else {
        return html! { p.muted { "No loss logged yet." } };
    };
    let line: Vec<String> = (train.iter())
        .filter(|p| p.1.is_finite())
        .map(|&(step, loss)| format!("{:.1},{:.1}", frame.x(step), frame.y(loss)))
        .collect();
    let bottom = HEIGHT - BOTTOM;
    html! {
        svg.chart viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img"
            data-first-step=(frame.steps.0) data-last-step=(frame.steps.1)
            data-plot=(format!("{LEFT} {}", WIDTH - RIGHT))
            aria-label="Training loss (line) and validation loss (points) over steps" {
            line x1=(LEFT) y1=(bottom) x2=(WIDTH - RIGHT) y2=(bottom) stroke="#888" {}
            line x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(bottom) stroke="#888" {}
            text x=(LEFT - 6.0) y=(TOP + 10.0) text-anchor="end" font-size="11" { (format!("{:.3}", frame.values.1)) }
            text x=(LEFT - 6.0) y=(bottom) text-anchor="end" font-size="11" { (format!("{:.3}", frame.values.0)) }
            text x=(LEFT) y=(HEIGHT - 10.0) font-size="11" { "step " (frame.steps.0) }
            text x=(WIDTH - RIGHT) y=(HEIGHT - 10.0) text-anchor="end" font-size="11" { (frame.steps.1) }
            polyline.train points=(line.join(" ")) fill="none" stroke="#2563eb" stroke-width="2" {}
            @for &(step, loss) in train.iter().filter(|p| p.1.is_finite()) {
                circle.train-point cx=(format!("{:.1}", frame.x(step))) cy=(format!("{:.1}", frame.y(loss))) r="2" fill="#2563eb" {
                    title { "step " (step) ": training loss " (format!("{loss:.4}")) }
                }
            }
            @for &(step, loss) in valid.iter().filter(|p| p.1.is_finite()) {
                circle.valid-point cx=(format!("{:.1}", frame.x(step))) cy=(format!("{:.1}", frame.y(loss))) r="4" fill="#dc2626" {
                    title { "step " (step) ": validation loss " (format!("{loss:.4}")) }
                }
            }
        }
    }
}

/// The chart of one metric's `series` over steps, as a line with its points, headed
/// by `label`; nothing when the run logged none of it.
pub fn metric_chart(label: &str, series: &[(u64, f64)]) -> Markup {
    let Some(frame) = Frame::around(&[series]) else {
        return html! {};
    };
    let finite = || series.iter().filter(|p| p.1.is_finite());
    let line: Vec<String> = finite()
        .map(|&(step, value)| format!("{:.1},{:.1}", frame.x(step), frame.y(value)))
        .collect();
    let bottom = HEIGHT - BOTTOM;
    // Learning rates are small: they are labelled in exponent form.
    let show = |value: f64| match value.abs() {
        v if v != 0.0 && !(1e-2..1e5).contains(&v) => format!("{value:.3e}"),
        _ => format!("{value:.3}"),
    };
    html! {
        figure.metric {
            figcaption { (label) }
            svg.chart viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img"
                data-first-step=(frame.steps.0) data-last-step=(frame.steps.1)
                data-plot=(format!("{LEFT} {}", WIDTH - RIGHT))
                aria-label=(format!("{label} over steps")) {
                line x1=(LEFT) y1=(bottom) x2=(WIDTH - RIGHT) y2=(bottom) stroke="#888" {}
                line x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(bottom) stroke="#888" {}
                text x=(LEFT - 6.0) y=(TOP + 10.0) text-anchor="end" font-size="11" { (show(frame.values.1)) }
                text x=(LEFT - 6.0) y=(bottom) text-anchor="end" font-size="11" { (show(frame.values.0)) }
                text x=(LEFT) y=(HEIGHT - 10.0) font-size="11" { "step " (frame.steps.0) }
                text x=(WIDTH - RIGHT) y=(HEIGHT - 10.0) text-anchor="end" font-size="11" { (frame.steps.1) }
                polyline points=(line.join(" ")) fill="none" stroke="#059669" stroke-width="2" {}
                @for &(step, value) in finite() {
                    circle.metric-point cx=(format!("{:.1}", frame.x(step))) cy=(format!("{:.1}", frame.y(value))) r="2" fill="#059669" {
                        title { "step " (step) ": " (label) " " (show(value)) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_is_drawn_inside_the_plot() {
        let train = [(1, 2.0), (2, 1.5), (3, f64::NAN), (4, 1.0)];
        let valid = [(2, 1.8), (4, 1.2)];
        let svg = loss_chart(&train, &valid).into_string();
        assert_eq!(svg.matches("class=\"train-point\"").count(), 3);
        assert_eq!(svg.matches("class=\"valid-point\"").count(), 2);
        assert!(svg.contains("step 4: training loss 1.0000"));
        let frame = Frame::around(&[&train, &valid]).unwrap();
        // The highest loss is near the top, the last step at the right edge.
        assert!((frame.x(4) - (WIDTH - RIGHT)).abs() < 1e-9);
        assert!(frame.y(2.0) > TOP && frame.y(2.0) < TOP + 20.0);
        assert!(frame.y(1.0) < HEIGHT - BOTTOM);
        assert_eq!(
            loss_chart(&[], &[]).into_string(),
            "<p class=\"muted\">No loss logged yet.</p>"
        );
    }

    #[test]
    fn a_window_keeps_the_steps_between_its_ends_in_either_order() {
        let series = [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)];
        let window = |from, to| StepWindow { from, to };
        assert_eq!(window(Some(2), Some(3)).of(&series), [(2, 2.0), (3, 3.0)]);
        assert_eq!(window(Some(3), Some(2)).of(&series), [(2, 2.0), (3, 3.0)]);
        assert_eq!(window(None, Some(1)).of(&series), [(1, 1.0)]);
        assert_eq!(window(Some(4), None).of(&series), [(4, 4.0)]);
        assert_eq!(StepWindow::default().of(&series).len(), 4);
        // The zoomed chart spans the window's steps, for the drag script to map.
        let svg = loss_chart(&window(Some(2), Some(3)).of(&series), &[]).into_string();
        assert!(
            svg.contains(r#"data-first-step="2" data-last-step="3" data-plot="56 708""#),
            "{svg}"
        );
    }

    #[test]
    fn a_metric_is_a_line_of_its_points_labelled_to_scale() {
        let rates = [(1, 1e-4), (2, 2e-4), (3, 1.5e-4)];
        let svg = metric_chart("Learning rate", &rates).into_string();
        assert_eq!(svg.matches("class=\"metric-point\"").count(), 3);
        assert!(svg.contains("step 2: Learning rate 2.000e-4"), "{svg}");
        assert!(svg.contains("<figcaption>Learning rate</figcaption>"));
        let margins = [(1, -0.5), (2, 0.25)];
        let svg = metric_chart("Reward margin", &margins).into_string();
        assert!(svg.contains("step 1: Reward margin -0.500"), "{svg}");
        assert_eq!(metric_chart("Tokens/s", &[]).into_string(), "");
    }
}
