//! A node's restart settings as the config gives them (`restart = {
//! policy, max_restarts, within_ms, backoff_ms, max_backoff_ms }`): plain
//! data, parsed and checked here. What a running node does with them is
//! `runtime/restart.rs`'s business.

use serde::Deserialize;

/// When a failed stage is rebuilt and started again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// Never: the first failure fails the stage and stops the pipeline.
    #[default]
    Never,
    /// After a panic or a fatal error of a running stage (not of `init`).
    OnFailure,
    /// After any failure, `init` errors included.
    Always,
}

impl Policy {
    /// Parses `never`, `on-failure` or `always`.
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "never" => Some(Policy::Never),
            "on-failure" => Some(Policy::OnFailure),
            "always" => Some(Policy::Always),
            _ => None,
        }
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Never => "never",
            Policy::OnFailure => "on-failure",
            Policy::Always => "always",
        }
    }
}

/// Where a stage failed (the policies differ on `init`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailedIn {
    /// The stage's `init`.
    Init,
    /// A call of the running stage (`pull`, `process`, `route`, `push`,
    /// `end_batch`, `tick`).
    Running,
}

/// A node's restart settings (`restart = { ... }` in its table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// When to restart.
    pub policy: Policy,
    /// Most restarts within `within_ms` (at least 1 with a restarting
    /// policy); one more failure in the window gives up.
    pub max_restarts: u32,
    /// The sliding window `max_restarts` counts in, in milliseconds.
    pub within_ms: u64,
    /// Backoff before the first restart, doubled for each further restart
    /// in the window, in milliseconds.
    pub backoff_ms: u64,
    /// Longest backoff, in milliseconds.
    pub max_backoff_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            policy: Policy::Never,
            max_restarts: 5,
            within_ms: 60_000,
            backoff_ms: 100,
            max_backoff_ms: 10_000,
        }
    }
}

/// The `restart` table as written (phase one of the config).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRestart {
    policy: Option<String>,
    max_restarts: Option<u32>,
    within_ms: Option<u64>,
    backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
}

impl RestartPolicy {
    /// Whether a failure `at` is restarted under this policy.
    pub fn restarts(&self, at: FailedIn) -> bool {
        match self.policy {
            Policy::Never => false,
            Policy::OnFailure => at == FailedIn::Running,
            Policy::Always => true,
        }
    }

    /// Parses a node's `restart` value (a table), with every problem found.
    pub fn from_toml(value: &toml::Value) -> Result<RestartPolicy, Vec<String>> {
        let raw = RawRestart::deserialize(value.clone())
            .map_err(|e| vec![e.message().trim_end().to_string()])?;
        let mut errors = Vec::new();
        let mut p = RestartPolicy::default();
        if let Some(s) = raw.policy {
            match Policy::parse(&s) {
                Some(policy) => p.policy = policy,
                None => errors.push(format!(
                    "unknown restart policy '{s}' (expected never, on-failure or always)"
                )),
            }
        }
        p.max_restarts = raw.max_restarts.unwrap_or(p.max_restarts);
        p.within_ms = raw.within_ms.unwrap_or(p.within_ms);
        p.backoff_ms = raw.backoff_ms.unwrap_or(p.backoff_ms);
        p.max_backoff_ms = raw.max_backoff_ms.unwrap_or(p.max_backoff_ms);
        if let Err(mut more) = p.check() {
            errors.append(&mut more);
        }
        if errors.is_empty() {
            Ok(p)
        } else {
            Err(errors)
        }
    }

    /// Checks the settings together.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.policy != Policy::Never && self.max_restarts == 0 {
            errors.push(format!(
                "max_restarts = 0 with policy '{}' would never restart (use policy = \"never\", or max_restarts >= 1)",
                self.policy.as_str()
            ));
        }
        if self.within_ms == 0 {
            errors.push("within_ms must be at least 1".to_string());
        }
        if self.backoff_ms > self.max_backoff_ms {
            errors.push(format!(
                "backoff_ms = {} is larger than max_backoff_ms = {}",
                self.backoff_ms, self.max_backoff_ms
            ));
        }
        // Keeps the doubling and the ns conversions far from overflow.
        const MAX_MS: u64 = 365 * 24 * 3_600_000;
        for (key, v) in [
            ("within_ms", self.within_ms),
            ("backoff_ms", self.backoff_ms),
            ("max_backoff_ms", self.max_backoff_ms),
        ] {
            if v > MAX_MS {
                errors.push(format!("{key} = {v} is more than a year"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}
