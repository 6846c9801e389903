//! A latency-percentile plot, written as SVG text: one panel per scenario,
//! one line per system, percentiles on a "nines" axis (50%, 90%, 99%,
//! 99.9%, 99.99%, max), latency on a log axis.

use std::fmt::Write;

use crate::output::{Report, ScenarioResult};

const PANEL_W: f64 = 420.0;
const PANEL_H: f64 = 270.0;
const COLS: usize = 3;
const TOP: f64 = 70.0;
// Plot area inside a panel.
const LEFT: f64 = 62.0;
const RIGHT: f64 = 16.0;
const PTOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;
/// Where "max" sits on the nines axis (99.99% is at 4).
const MAX_X: f64 = 4.6;

fn color(system: &str) -> (&'static str, &'static str) {
    match system {
        "engine" => ("#d62728", ""),
        "crossbeam" => ("#1f77b4", ""),
        "std-mpsc" => ("#2ca02c", ""),
        "disruptor" => ("#9467bd", ""),
        _ => ("#7f7f7f", " stroke-dasharray=\"5,3\""),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn nines(q: f64) -> f64 {
    if q >= 1.0 {
        MAX_X
    } else {
        -(1.0 - q).log10()
    }
}

fn decade_label(e: i32) -> String {
    match e {
        0 => "1 ns".into(),
        1 => "10 ns".into(),
        2 => "100 ns".into(),
        3 => "1 us".into(),
        4 => "10 us".into(),
        5 => "100 us".into(),
        6 => "1 ms".into(),
        7 => "10 ms".into(),
        8 => "100 ms".into(),
        9 => "1 s".into(),
        e => format!("1e{e} ns"),
    }
}

fn panel(out: &mut String, s: &ScenarioResult, x0: f64, y0: f64) {
    let (pw, ph) = (PANEL_W - LEFT - RIGHT, PANEL_H - PTOP - BOTTOM);
    let series: Vec<(&str, Vec<(f64, f64)>)> = s
        .systems
        .iter()
        .filter(|sys| sys.status == "ok")
        .map(|sys| {
            let pts = sys
                .latency_curve
                .iter()
                .filter(|p| p[0] >= 0.5 && p[1] > 0.0 && p[1].is_finite())
                .map(|p| (nines(p[0]), p[1].log10()))
                .collect();
            (sys.system.as_str(), pts)
        })
        .collect();
    let ys = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1));
    let (lo, hi) = ys.fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
    let (lo, hi) = if lo > hi {
        (1.0, 6.0)
    } else {
        (lo.floor(), hi.ceil().max(lo.floor() + 1.0))
    };
    let px = |x: f64| x0 + LEFT + (x - nines(0.5)) / (MAX_X - nines(0.5)) * pw;
    let py = |y: f64| y0 + PTOP + ph - (y - lo) / (hi - lo) * ph;

    let load = match s.offered_rate_eps {
        Some(r) => format!("{:.0} k/s", r / 1e3),
        None => "saturating".to_string(),
    };
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\" font-weight=\"bold\">{} <tspan font-weight=\"normal\">({} B, {})</tspan></text>",
        x0 + LEFT,
        y0 + 18.0,
        escape(&s.name),
        s.payload_bytes,
        escape(&load)
    );
    let _ = writeln!(
        out,
        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{pw:.1}\" height=\"{ph:.1}\" fill=\"none\" stroke=\"#999\"/>",
        x0 + LEFT,
        y0 + PTOP
    );
    for e in lo as i32..=hi as i32 {
        let y = py(e as f64);
        let _ = writeln!(
            out,
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e5e5e5\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            x0 + LEFT,
            x0 + LEFT + pw,
            x0 + LEFT - 4.0,
            y + 3.0,
            decade_label(e)
        );
    }
    for (q, label) in [
        (0.5, "50%"),
        (0.9, "90%"),
        (0.99, "99%"),
        (0.999, "99.9%"),
        (0.9999, "99.99%"),
        (1.0, "max"),
    ] {
        let x = px(nines(q));
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#e5e5e5\"/><text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{label}</text>",
            y0 + PTOP,
            y0 + PTOP + ph,
            y0 + PTOP + ph + 14.0
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#555\">percentile (end-to-end latency)</text>",
        x0 + LEFT + pw / 2.0,
        y0 + PTOP + ph + 28.0
    );
    for (name, pts) in &series {
        if pts.is_empty() {
            continue;
        }
        let (c, dash) = color(name);
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"1.8\"{dash}><title>{}</title></polyline>",
            path.join(" "),
            escape(name)
        );
        for &(x, y) in pts {
            let _ = writeln!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"{c}\"/>",
                px(x),
                py(y)
            );
        }
    }
}

/// The plot of every scenario in `report`.
pub fn render(report: &Report) -> String {
    let n = report.scenarios.len().max(1);
    let rows = n.div_ceil(COLS);
    let width = PANEL_W * COLS as f64;
    let height = TOP + PANEL_H * rows as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\">"
    );
    let _ = writeln!(out, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        out,
        "<text x=\"16\" y=\"24\" font-size=\"16\" font-weight=\"bold\">End-to-end latency by percentile: engine vs baselines</text>"
    );
    let _ = writeln!(
        out,
        "<text x=\"16\" y=\"42\" font-size=\"11\" fill=\"#555\">{} on {} ({} usable cores), median of {} rep(s) per point; saturating runs measure queueing, rate runs the pipeline</text>",
        escape(&report.started_at),
        escape(&report.machine.hostname),
        report.machine.usable_cores.len(),
        report.settings.reps
    );
    let mut lx = 16.0;
    for name in ["engine", "crossbeam", "std-mpsc", "disruptor", "pingpong"] {
        let (c, dash) = color(name);
        let _ = writeln!(
            out,
            "<line x1=\"{lx:.0}\" y1=\"58\" x2=\"{:.0}\" y2=\"58\" stroke=\"{c}\" stroke-width=\"2.5\"{dash}/><text x=\"{:.0}\" y=\"62\" font-size=\"12\">{name}</text>",
            lx + 22.0,
            lx + 27.0
        );
        lx += 115.0;
    }
    for (i, s) in report.scenarios.iter().enumerate() {
        let x0 = PANEL_W * (i % COLS) as f64;
        let y0 = TOP + PANEL_H * (i / COLS) as f64;
        panel(&mut out, s, x0, y0);
    }
    out.push_str("</svg>\n");
    out
}
