//! Draws an [`App`] with ratatui: a title line (endpoint, uptime, arena),
//! a status line (connected, disconnected, ended), the node table and a
//! line of keys. Fixed-width columns add up to 60 cells; the name column
//! takes the rest (20 cells at 80 columns) and longer names are cut with
//! an ellipsis, so nothing wraps or spills.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::app::{App, Link};
use super::model::{
    drops_level, fmt_count, fmt_latency, fmt_uptime, queue_level, row_level, truncate, Level,
    NodeRow, NodeState, SortKey,
};

/// Columns after the name: heading, width, and the sort key it shows.
const COLUMNS: [(&str, u16, Option<SortKey>); 8] = [
    ("ROLE", 4, None),
    ("IN/s", 7, Some(SortKey::RateIn)),
    ("OUT/s", 7, Some(SortKey::RateOut)),
    ("DROPS", 6, None),
    ("DROP/s", 7, Some(SortKey::Drops)),
    ("QUEUE", 6, Some(SortKey::Queue)),
    ("P99", 7, Some(SortKey::Latency)),
    ("STATE", 8, None),
];
/// The name column never gets narrower than this (the table is clipped
/// on the right instead).
const MIN_NAME: u16 = 8;

/// The name column's width in a table `width` cells wide.
pub fn name_width(width: u16) -> u16 {
    let fixed: u16 = COLUMNS.iter().map(|c| c.1).sum();
    let gaps = COLUMNS.len() as u16;
    width.saturating_sub(fixed + gaps).max(MIN_NAME)
}

/// Draws the whole screen.
pub fn render(frame: &mut Frame<'_>, app: &App) {
    let [title, status, table, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(title_line(app)), title);
    frame.render_widget(Paragraph::new(status_line(app)), status);
    render_table(frame, table, app);
    // The header takes one line of the table's area.
    let hidden = app
        .rows
        .len()
        .saturating_sub(table.height.saturating_sub(1).into());
    frame.render_widget(Paragraph::new(keys_line(app, hidden)), keys);
}

fn title_line(app: &App) -> Line<'static> {
    let mut spans = vec![
        Span::styled("dataplane top", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!("  {}", app.target)),
    ];
    if let Some(s) = &app.current {
        let s = &s.stats;
        spans.push(Span::raw(format!("  up {}", fmt_uptime(s.uptime_ms))));
        if let Some(a) = s.arena.filter(|a| a.slots > 0) {
            spans.push(Span::raw(format!(
                "  arena {}/{} ({:.0}%)",
                a.used,
                a.slots,
                a.used as f64 * 100.0 / a.slots as f64
            )));
        }
        spans.push(Span::raw(format!("  {} nodes", s.nodes.len())));
    }
    Line::from(spans)
}

fn status_line(app: &App) -> Line<'static> {
    let every = format!("{:.1}s", app.interval.as_secs_f64());
    let (text, colour) = match &app.link {
        Link::Connecting => (format!("connecting to {}...", app.target), Color::Yellow),
        Link::Up => {
            let all_done = app.current.as_ref().is_some_and(|s| {
                !s.stats.nodes.is_empty()
                    && s.stats.nodes.iter().all(|n| n.state != NodeState::Running)
            });
            if all_done {
                (
                    "connected; every node has stopped".to_string(),
                    Color::Yellow,
                )
            } else {
                (format!("connected, refreshing every {every}"), Color::Green)
            }
        }
        Link::Down { error } => (
            format!("disconnected: {error}, retrying every {every}"),
            Color::Red,
        ),
        Link::Ended { error } => (
            format!("pipeline ended ({error}); last numbers kept, q to quit"),
            Color::Yellow,
        ),
    };
    Line::from(Span::styled(text, Style::new().fg(colour)))
}

fn keys_line(app: &App, hidden: usize) -> Line<'static> {
    let arrow = if app.sort.reversed { "asc" } else { "desc" };
    let arrow = if app.sort.key == SortKey::Name {
        if app.sort.reversed {
            "desc"
        } else {
            "asc"
        }
    } else {
        arrow
    };
    let key = Style::new().add_modifier(Modifier::BOLD);
    let mut spans = vec![
        Span::styled("q", key),
        Span::raw(" quit  "),
        Span::styled("s/S", key),
        Span::raw(" sort column  "),
        Span::styled("r", key),
        Span::raw(" reverse  "),
        Span::raw(format!("sorted by {} {arrow}", app.sort.key.label())),
    ];
    if hidden > 0 {
        spans.push(Span::styled(
            format!("  +{hidden} rows below"),
            Style::new().fg(Color::Yellow),
        ));
    }
    Line::from(spans)
}

fn style_of(level: Level) -> Style {
    match level {
        Level::Normal => Style::new(),
        Level::Warn => Style::new().fg(Color::Yellow),
        Level::Alert => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
    }
}

fn render_table(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let name_w = name_width(area.width);
    let heading = |label: &'static str, key: Option<SortKey>| {
        let sorted = key == Some(app.sort.key);
        let style = if sorted {
            Style::new().add_modifier(Modifier::UNDERLINED)
        } else {
            Style::new()
        };
        Span::styled(label, style)
    };
    let mut header = vec![Cell::from(heading("NAME", Some(SortKey::Name)))];
    header.extend(COLUMNS.iter().enumerate().map(|(i, &(label, _, key))| {
        let line = Line::from(heading(label, key));
        // Numbers are right-aligned; so are their headings. ROLE and
        // STATE are words.
        if i == 0 || i == COLUMNS.len() - 1 {
            Cell::from(line)
        } else {
            Cell::from(line.right_aligned())
        }
    }));
    let header =
        Row::new(header).style(Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED));

    let rows = app.rows.iter().map(|r| table_row(r, name_w as usize));
    let mut widths = vec![Constraint::Length(name_w)];
    widths.extend(COLUMNS.iter().map(|c| Constraint::Length(c.1)));
    let table = Table::new(rows, widths).header(header).column_spacing(1);
    frame.render_widget(table, area);
}

fn table_row(r: &NodeRow, name_w: usize) -> Row<'static> {
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), fmt_count);
    let num =
        |text: String, style: Style| Cell::from(Line::from(text).right_aligned()).style(style);
    let state_style = match r.state {
        NodeState::Failed => style_of(Level::Alert),
        NodeState::Finished => Style::new().add_modifier(Modifier::DIM),
        _ => Style::new(),
    };
    Row::new(vec![
        Cell::from(truncate(&r.name, name_w)),
        Cell::from(r.role.short()),
        num(opt(r.rate_in), Style::new()),
        num(opt(r.rate_out), Style::new()),
        num(fmt_count(r.dropped as f64), style_of(drops_level(r))),
        num(opt(r.drop_rate), style_of(drops_level(r))),
        num(
            r.queue_fill
                .map_or_else(|| "-".to_string(), |f| format!("{f:.0}%")),
            style_of(queue_level(r)),
        ),
        num(
            r.p99_ns.map_or_else(|| "-".to_string(), fmt_latency),
            Style::new(),
        ),
        Cell::from(r.state.as_str()).style(state_style),
    ])
    .style(style_of(row_level(r)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::app::Fetched;
    use crate::top::model::{NodeRole, NodeStats, Stats};
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use ratatui::Terminal;
    use std::time::{Duration, Instant};

    fn draw(app: &App, w: u16, h: u16) -> Buffer {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| render(f, app)).unwrap();
        t.backend().buffer().clone()
    }

    fn lines(b: &Buffer) -> Vec<String> {
        (0..b.area.height)
            .map(|y| {
                (0..b.area.width)
                    .map(|x| b[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect()
    }

    fn line_with<'a>(lines: &'a [String], needle: &str) -> &'a str {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{}", lines.join("\n")))
    }

    fn node(name: &str, role: NodeRole, received: u64, sent: u64) -> NodeStats {
        NodeStats {
            name: name.into(),
            role,
            received,
            sent,
            ..NodeStats::default()
        }
    }

    /// Two snapshots one second apart of a three-node pipeline whose
    /// middle node has a name far too long for the screen, a sink with a
    /// full queue and rising drops, and a failed node.
    fn busy_app() -> App {
        let long = "a_processor_with_a_remarkably_long_name_that_cannot_fit";
        let t0 = Instant::now();
        let mut app = App::new("127.0.0.1:9464", Duration::from_secs(1));
        let snap = |k: u64, uptime: u64| {
            let mut sink = node("sink", NodeRole::Sink, 900 * k, 900 * k);
            sink.queue_depth = 1000;
            sink.queue_capacity = 1024;
            sink.dropped = 3 * k;
            sink.latency_p99_ns = Some(12_300);
            let mut bad = node("broken", NodeRole::Processor, 5, 0);
            bad.state = NodeState::Failed;
            Stats {
                uptime_ms: uptime,
                arena: Some(crate::top::model::ArenaStats {
                    slots: 16384,
                    used: 120,
                }),
                nodes: vec![
                    node("gen", NodeRole::Source, 0, 1000 * k),
                    node(long, NodeRole::Processor, 1000 * k, 950 * k),
                    sink,
                    bad,
                ],
                edges: Vec::new(),
            }
        };
        app.on_fetch(Fetched::Stats(snap(1, 1000)), t0);
        app.on_fetch(Fetched::Stats(snap(2, 2000)), t0);
        app
    }

    #[test]
    fn fits_80_columns_with_long_names() {
        let app = busy_app();
        let b = draw(&app, 80, 24);
        let l = lines(&b);
        let text = l.join("\n");
        assert!(
            l[0].starts_with("dataplane top  127.0.0.1:9464  up 2s  arena 120/16384 (1%)  4 nodes"),
            "{text}"
        );
        assert!(
            l[1].starts_with("connected, refreshing every 1.0s"),
            "{text}"
        );
        let header = line_with(&l, "NAME");
        for h in [
            "ROLE", "IN/s", "OUT/s", "DROPS", "DROP/s", "QUEUE", "P99", "STATE",
        ] {
            assert!(header.contains(h), "{h} in {header:?}");
        }
        assert!(header.trim_end().ends_with("STATE"), "{header:?}");
        assert!(
            l[23].starts_with("q quit  s/S sort column  r reverse  sorted by IN/s desc"),
            "{text}"
        );

        // Sorted by rate in: the long-named processor (1000/s), the sink
        // (900/s), the failed node (0/s), the source (0/s in, by name).
        let body: Vec<&str> = l[2..7].iter().map(|s| s.trim_end()).collect();
        assert_eq!(
            body,
            [
                "NAME                 ROLE    IN/s   OUT/s  DROPS  DROP/s  QUEUE     P99 STATE",
                "a_processor_with_a_… proc   1.00k     950      0       0      -       - running",
                "sink                 sink     900     900      6       3    98%  12.3us running",
                "broken               proc       0       0      0       0      -       - failed",
                "gen                  src        0   1.00k      0       0      -       - running",
            ],
            "{text}"
        );
        assert!(l[7].trim().is_empty(), "{text}");

        // Nothing wraps or spills: every line fits, the last column ends
        // within the screen.
        for line in &l {
            assert!(line.chars().count() <= 80, "{line:?}");
        }
        assert_eq!(b.area.width, 80);
    }

    #[test]
    fn colours_drops_queue_and_failures() {
        let app = busy_app();
        let b = draw(&app, 80, 24);
        let l = lines(&b);
        let find = |y: u16, needle: &str| {
            let col = l[y as usize].find(needle).unwrap() as u16;
            // `find` gives a byte offset; rows before the needle are ASCII here.
            b[(col, y)].fg
        };
        let sink_y = 4;
        assert!(l[sink_y as usize].starts_with("sink"));
        assert_eq!(find(sink_y, "98%"), Color::Red, "queue >= 95%");
        assert_eq!(find(sink_y, "12.3us"), Color::Reset);
        // DROP/s of the sink: 3/s, rising, red.
        let x = (name_width(80) + 1 + 4 + 1 + 7 + 1 + 7 + 1 + 6 + 1 + 6) as usize;
        assert_eq!(&l[sink_y as usize][x..x + 1], "3");
        assert_eq!(b[(x as u16, sink_y)].fg, Color::Red);
        // The failed node's row is red from its name on.
        assert_eq!(find(5, "broken"), Color::Red);
        assert_eq!(find(5, "failed"), Color::Red);
        // A healthy row is not coloured.
        assert_eq!(find(6, "gen"), Color::Reset);
    }

    #[test]
    fn disconnected_and_ended_say_so_and_keep_the_numbers() {
        let mut app = App::new("127.0.0.1:9", Duration::from_millis(500));
        app.on_fetch(
            Fetched::Failed {
                message: "connection refused by 127.0.0.1:9".into(),
                refused: true,
            },
            Instant::now(),
        );
        let l = lines(&draw(&app, 80, 24));
        assert!(
            l[1].starts_with(
                "disconnected: connection refused by 127.0.0.1:9, retrying every 0.5s"
            ),
            "{l:?}"
        );

        let mut app = busy_app();
        app.on_fetch(
            Fetched::Failed {
                message: "connection refused".into(),
                refused: true,
            },
            Instant::now(),
        );
        let l = lines(&draw(&app, 80, 24));
        assert!(
            l[1].starts_with("pipeline ended (connection refused); last numbers kept, q to quit"),
            "{l:?}"
        );
        assert!(line_with(&l, "sink").contains("900"));
    }

    #[test]
    fn small_and_wide_screens_do_not_panic() {
        let app = busy_app();
        for (w, h) in [(1, 1), (20, 3), (40, 10), (80, 5), (200, 50)] {
            let b = draw(&app, w, h);
            assert_eq!((b.area.width, b.area.height), (w, h));
        }
        // 6 lines: 3 for the table's header and two rows, 2 rows cut off.
        let l = lines(&draw(&app, 80, 6));
        assert!(
            l[5].trim_end()
                .ends_with("sorted by IN/s desc  +2 rows below"),
            "{l:?}"
        );
        assert!(!lines(&draw(&app, 80, 24))[23].contains("below"));
        let l = lines(&draw(&app, 200, 50));
        assert!(
            line_with(&l, "proc")
                .contains("a_processor_with_a_remarkably_long_name_that_cannot_fit"),
            "a wide screen shows the whole name"
        );
    }
}
