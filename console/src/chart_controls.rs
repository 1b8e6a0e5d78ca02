//! What makes a run page's charts interactive: a form that zooms every chart to a
//! range of steps (the page's own `?from=&to=` query, so it works without script and
//! a zoomed page can be linked), boxes that show or hide the loss chart's series
//! (style only), and a small script of the page's own that turns a drag across any
//! chart into that zoom.

use maud::{Markup, PreEscaped, html};
use serde::{Deserialize, Deserializer};

use crate::chart::{StepWindow, loss_chart};

/// A query's step: empty (a form's field left blank) is no step.
fn optional_step<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let text: Option<String> = Option::deserialize(deserializer)?;
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("a step is a whole number, not {text:?}"))
        }),
    }
}

/// A page's `?from=&to=` query.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct StepQuery {
    #[serde(default, deserialize_with = "optional_step")]
    pub from: Option<u64>,
    #[serde(default, deserialize_with = "optional_step")]
    pub to: Option<u64>,
}

impl StepQuery {
    pub fn window(self) -> StepWindow {
        StepWindow {
            from: self.from,
            to: self.to,
        }
        .ordered()
    }
}

/// The zoom form of the page at `href`, showing `window`.
pub fn zoom_form(href: &str, window: &StepWindow) -> Markup {
    html! {
        form.zoom method="get" action=(href) {
            label { "Steps from " input name="from" type="number" min="0" size="6" value=[window.from]; }
            " "
            label { "to " input name="to" type="number" min="0" size="6" value=[window.to]; }
            " "
            button type="submit" { "Zoom" }
            @if !window.is_all() { " " a href=(href) { "All steps" } }
            span.muted { " Or drag across a chart." }
        }
    }
}

/// The loss chart with a box per series to show or hide it.
pub fn loss_chart_with_series(train: &[(u64, f64)], valid: &[(u64, f64)]) -> Markup {
    html! {
        div.series {
            input #show-train type="checkbox" checked; label for="show-train" { "training loss (line)" }
            " "
            input #show-valid type="checkbox" checked; label for="show-valid" { "validation loss (points)" }
            (loss_chart(train, valid))
        }
    }
}

/// The style rules the series boxes need.
pub const SERIES_STYLE: &str = "
#show-train:not(:checked)~svg .train,#show-train:not(:checked)~svg .train-point{display:none}
#show-valid:not(:checked)~svg .valid-point{display:none}
svg.chart[data-first-step]{cursor:col-resize;touch-action:pan-y}
.series>svg{display:block;margin-top:.3rem}
.zoom input{width:6em}
";

/// The page's drag-to-zoom script: listens on the document, so charts a live page
/// puts in place keep working.
pub fn zoom_script() -> Markup {
    html! { script { (PreEscaped(ZOOM_SCRIPT)) } }
}

/// A drag across a chart marks a band; letting go loads the page with the band's
/// steps as `from` and `to`. The steps come from the chart's `data-first-step`,
/// `data-last-step` and `data-plot` (the plot's left and right edge in the
/// viewBox's units).
const ZOOM_SCRIPT: &str = r#"
(function () {
  if (!window.URL || !document.addEventListener) return;
  var drag = null;
  function stepAt(svg, clientX) {
    var rect = svg.getBoundingClientRect();
    var box = svg.viewBox.baseVal;
    var plot = svg.getAttribute('data-plot').split(' ').map(Number);
    var first = Number(svg.getAttribute('data-first-step'));
    var last = Number(svg.getAttribute('data-last-step'));
    var x = (clientX - rect.left) / rect.width * box.width;
    var share = Math.min(1, Math.max(0, (x - plot[0]) / (plot[1] - plot[0])));
    return { step: Math.round(first + share * (last - first)), x: x };
  }
  document.addEventListener('pointerdown', function (event) {
    var svg = event.target.closest && event.target.closest('svg.chart[data-first-step]');
    if (!svg || event.button !== 0) return;
    var at = stepAt(svg, event.clientX);
    var band = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
    band.setAttribute('y', 0);
    band.setAttribute('height', svg.viewBox.baseVal.height);
    band.setAttribute('fill', 'rgba(37,99,235,0.15)');
    band.setAttribute('x', at.x);
    band.setAttribute('width', 0);
    svg.appendChild(band);
    drag = { svg: svg, start: at, clientX: event.clientX, band: band };
    event.preventDefault();
  });
  document.addEventListener('pointermove', function (event) {
    if (!drag) return;
    var at = stepAt(drag.svg, event.clientX);
    drag.band.setAttribute('x', Math.min(at.x, drag.start.x));
    drag.band.setAttribute('width', Math.abs(at.x - drag.start.x));
  });
  document.addEventListener('pointerup', function (event) {
    if (!drag) return;
    var done = drag;
    drag = null;
    done.band.remove();
    var end = stepAt(done.svg, event.clientX);
    if (Math.abs(event.clientX - done.clientX) < 4 || end.step === done.start.step) return;
    var url = new URL(location.href);
    url.searchParams.set('from', Math.min(end.step, done.start.step));
    url.searchParams.set('to', Math.max(end.step, done.start.step));
    location.href = url.toString();
  });
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn query(text: &str) -> Result<StepQuery, String> {
        let pairs: Vec<(String, String)> = text
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let map: serde_json::Map<String, serde_json::Value> = pairs
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| e.to_string())
    }

    #[test]
    fn blank_fields_are_no_bound_and_a_bad_step_is_named() {
        assert_eq!(query("from=&to=").unwrap().window(), StepWindow::default());
        assert_eq!(
            query("from=9&to=3").unwrap().window(),
            StepWindow {
                from: Some(3),
                to: Some(9)
            }
        );
        assert_eq!(query("").unwrap().window(), StepWindow::default());
        let error = query("from=abc").unwrap_err();
        assert!(
            error.contains("a step is a whole number, not \"abc\""),
            "{error}"
        );
    }

    #[test]
    fn the_form_shows_the_window_and_a_way_back() {
        let zoomed = StepWindow {
            from: Some(3),
            to: Some(9),
        };
        let html = zoom_form("/runs/a/b/c", &zoomed).into_string();
        assert!(
            html.contains(r#"name="from" type="number" min="0" size="6" value="3""#),
            "{html}"
        );
        assert!(
            html.contains(r#"<a href="/runs/a/b/c">All steps</a>"#),
            "{html}"
        );
        let all = zoom_form("/runs/a/b/c", &StepWindow::default()).into_string();
        assert!(!all.contains("All steps"), "{all}");
    }
}
