//! The loss curve, drawn as an SVG beside the checkpoints (`loss.svg`): training
//! loss at every logged step and validation loss at every evaluation.

use plotters::prelude::*;

use super::state::LogEntry;

pub const CHART_FILE: &str = "loss.svg";

/// Why the chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("drawing the loss chart: {0}")]
pub struct ChartError(#[source] DrawingAreaErrorKind<std::io::Error>);

/// The chart of `history` as SVG text.
pub fn loss_chart_svg(history: &[LogEntry], title: &str) -> Result<String, ChartError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 480)).into_drawing_area();
        draw(&root, history, title).map_err(ChartError)?;
        root.present().map_err(ChartError)?;
    }
    Ok(svg)
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    history: &[LogEntry],
    title: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let train: Vec<(f64, f64)> = history
        .iter()
        .map(|e| (e.step as f64, e.train_loss))
        .collect();
    let valid: Vec<(f64, f64)> = history
        .iter()
        .filter_map(|e| e.valid_loss.map(|v| (e.step as f64, v)))
        .collect();
    let last_step = history.iter().map(|e| e.step).max().unwrap_or(1).max(1) as f64;
    let top = train
        .iter()
        .chain(&valid)
        .map(|&(_, loss)| loss)
        .filter(|loss| loss.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.05;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..last_step, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss (nats per answer token)")
        .draw()?;
    chart
        .draw_series(LineSeries::new(train, BLUE.stroke_width(2)))?
        .label("train")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(valid.clone(), RED.stroke_width(2)))?
        .label("validation")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart.draw_series(valid.iter().map(|&p| Circle::new(p, 4, RED.filled())))?;
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(step: u64, train: f64, valid: Option<f64>) -> LogEntry {
        LogEntry {
            step,
            epoch: step as f64 / 10.0,
            train_loss: train,
            train_token_accuracy: Some(0.5),
            train_rewards: None,
            learning_rate: 1e-3,
            grad_norm: 1.0,
            tokens_per_second: 100.0,
            valid_loss: valid,
            valid_token_accuracy: valid.map(|_| 0.5),
            valid_rewards: None,
        }
    }

    #[test]
    fn the_chart_has_both_curves() {
        let history = vec![
            entry(1, 3.0, None),
            entry(2, 2.5, None),
            entry(3, 2.0, Some(2.2)),
            entry(4, 1.5, Some(1.9)),
        ];
        let svg = loss_chart_svg(&history, "quickstart").unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.contains("quickstart") && svg.contains("validation"));
        // The train curve is one polyline through 4 points, the validation one through 2.
        let polylines: Vec<&str> = svg
            .match_indices("<polyline")
            .map(|(i, _)| &svg[i..])
            .collect();
        assert!(polylines.len() >= 2, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 2);
    }
}
