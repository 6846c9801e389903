//! The state behind the screen: the last two snapshots, the rows derived
//! from them, the sort order and the connection's state, changed only by
//! [`App::on_fetch`] and [`App::on_key`] so both can be tested without a
//! terminal or a network.

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::model::{rows, sort_rows, NodeRow, Snapshot, Sort, Stats};

/// The outcome of one poll of the endpoint.
#[derive(Debug, Clone)]
pub enum Fetched {
    /// A `/stats` document.
    Stats(Stats),
    /// The poll failed.
    Failed {
        /// What went wrong, for the status line.
        message: String,
        /// The connection was refused: nothing listens on the port.
        refused: bool,
    },
}

/// Where the connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// No answer yet, no error yet.
    Connecting,
    /// The last poll succeeded.
    Up,
    /// The last poll failed; retrying.
    Down {
        /// The error.
        error: String,
    },
    /// The endpoint refused connections after having answered: the
    /// pipeline ended. The last numbers stay; polling goes on in case it
    /// comes back.
    Ended {
        /// The error.
        error: String,
    },
}

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing to do.
    None,
    /// Draw again (the sort changed).
    Redraw,
    /// Leave.
    Quit,
}

/// Everything the view draws.
#[derive(Debug)]
pub struct App {
    /// The endpoint, as shown in the title.
    pub target: String,
    /// How often the endpoint is polled.
    pub interval: Duration,
    /// The table's order.
    pub sort: Sort,
    /// The connection's state.
    pub link: Link,
    /// The latest snapshot, kept on screen while disconnected.
    pub current: Option<Snapshot>,
    previous: Option<Snapshot>,
    /// The table, sorted.
    pub rows: Vec<NodeRow>,
    ever_connected: bool,
}

impl App {
    /// A view of `target`, polled every `interval`, before the first answer.
    pub fn new(target: impl Into<String>, interval: Duration) -> App {
        App {
            target: target.into(),
            interval,
            sort: Sort::default(),
            link: Link::Connecting,
            current: None,
            previous: None,
            rows: Vec::new(),
            ever_connected: false,
        }
    }

    /// Takes in one poll's outcome, received at `at`.
    pub fn on_fetch(&mut self, fetched: Fetched, at: Instant) {
        match fetched {
            Fetched::Stats(stats) => {
                self.previous = self.current.take();
                let cur = Snapshot { stats, at };
                self.rows = rows(self.previous.as_ref(), &cur);
                sort_rows(&mut self.rows, self.sort);
                self.current = Some(cur);
                self.link = Link::Up;
                self.ever_connected = true;
            }
            Fetched::Failed { message, refused } => {
                self.link = if refused && self.ever_connected {
                    Link::Ended { error: message }
                } else {
                    Link::Down { error: message }
                };
            }
        }
    }

    /// Handles a key: `q`, Esc or Ctrl-C quit; `s`/`S` pick the next or
    /// previous sort column; `r` reverses the order.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        match key.code {
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
            KeyCode::Char('q' | 'Q') | KeyCode::Esc => Action::Quit,
            KeyCode::Char('s') | KeyCode::Right | KeyCode::Tab => self.resort(Sort {
                key: self.sort.key.next(),
                reversed: false,
            }),
            KeyCode::Char('S') | KeyCode::Left | KeyCode::BackTab => self.resort(Sort {
                key: self.sort.key.prev(),
                reversed: false,
            }),
            KeyCode::Char('r' | 'R') => self.resort(Sort {
                reversed: !self.sort.reversed,
                ..self.sort
            }),
            _ => Action::None,
        }
    }

    fn resort(&mut self, sort: Sort) -> Action {
        self.sort = sort;
        sort_rows(&mut self.rows, sort);
        Action::Redraw
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::model::{NodeRole, NodeStats, SortKey};

    fn stats(uptime_ms: u64, counts: &[(&str, u64)]) -> Stats {
        Stats {
            uptime_ms,
            nodes: counts
                .iter()
                .map(|&(name, n)| NodeStats {
                    name: name.into(),
                    role: NodeRole::Processor,
                    received: n,
                    sent: n,
                    ..NodeStats::default()
                })
                .collect(),
            ..Stats::default()
        }
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn names(app: &App) -> Vec<&str> {
        app.rows.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn quits_on_q_esc_and_ctrl_c_only() {
        let mut app = App::new("x", Duration::from_secs(1));
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), Action::Quit);
        assert_eq!(app.on_key(key(KeyCode::Esc)), Action::Quit);
        assert_eq!(
            app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Action::Quit
        );
        assert_eq!(app.on_key(key(KeyCode::Char('c'))), Action::None);
        assert_eq!(app.on_key(key(KeyCode::Char('x'))), Action::None);
    }

    #[test]
    fn keys_change_the_sort_and_resort_the_rows() {
        let t0 = Instant::now();
        let mut app = App::new("x", Duration::from_secs(1));
        app.on_fetch(Fetched::Stats(stats(1000, &[("a", 0), ("b", 0)])), t0);
        app.on_fetch(Fetched::Stats(stats(2000, &[("a", 10), ("b", 50)])), t0);
        assert_eq!(names(&app), ["b", "a"], "by rate in, descending");
        assert_eq!(app.on_key(key(KeyCode::Char('r'))), Action::Redraw);
        assert_eq!(names(&app), ["a", "b"]);
        assert!(app.sort.reversed);
        app.on_key(key(KeyCode::Char('s')));
        assert_eq!(app.sort.key, SortKey::RateOut);
        assert!(
            !app.sort.reversed,
            "a new column starts in its natural order"
        );
        assert_eq!(names(&app), ["b", "a"]);
        app.on_key(key(KeyCode::Char('S')));
        app.on_key(key(KeyCode::Char('S')));
        assert_eq!(app.sort.key, SortKey::Name);
        assert_eq!(names(&app), ["a", "b"]);
        // A new snapshot keeps the chosen order.
        app.on_fetch(Fetched::Stats(stats(3000, &[("b", 60), ("a", 20)])), t0);
        assert_eq!(names(&app), ["a", "b"]);
    }

    #[test]
    fn refused_after_connected_means_ended_and_keeps_the_numbers() {
        let t0 = Instant::now();
        let mut app = App::new("x", Duration::from_secs(1));
        assert_eq!(app.link, Link::Connecting);
        let refused = || Fetched::Failed {
            message: "connection refused".into(),
            refused: true,
        };
        app.on_fetch(refused(), t0);
        assert!(
            matches!(app.link, Link::Down { .. }),
            "never connected: not there yet"
        );
        app.on_fetch(Fetched::Stats(stats(1000, &[("a", 0)])), t0);
        app.on_fetch(Fetched::Stats(stats(2000, &[("a", 7)])), t0);
        assert_eq!(app.link, Link::Up);
        app.on_fetch(
            Fetched::Failed {
                message: "no answer in time".into(),
                refused: false,
            },
            t0,
        );
        assert!(
            matches!(app.link, Link::Down { .. }),
            "a hiccup, not an end"
        );
        app.on_fetch(refused(), t0);
        assert_eq!(
            app.link,
            Link::Ended {
                error: "connection refused".into()
            }
        );
        assert_eq!(app.rows[0].rate_in, Some(7.0), "last numbers kept");
        // It came back (a new run): numbers again, no rate across the restart.
        app.on_fetch(Fetched::Stats(stats(500, &[("a", 1)])), t0);
        assert_eq!(app.link, Link::Up);
        assert_eq!(app.rows[0].rate_in, None);
    }
}
