//! `[console]`: the web console's switches and session lifetimes.

use serde::Deserialize;

use super::default_true;

/// The web console at `/console` (docs/console.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console. Off: `/console` answers like any unknown path.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A session unused this long is signed out.
    #[serde(default = "default_console_idle")]
    pub idle_timeout_secs: u64,
    /// A session is signed out this long after sign-in, however busy.
    #[serde(default = "default_console_absolute")]
    pub absolute_timeout_secs: u64,
    /// Sessions held at once (each is a few hundred bytes); beyond it the oldest goes.
    #[serde(default = "default_console_sessions")]
    pub max_sessions: usize,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            idle_timeout_secs: default_console_idle(),
            absolute_timeout_secs: default_console_absolute(),
            max_sessions: default_console_sessions(),
        }
    }
}

fn default_console_idle() -> u64 {
    15 * 60
}

fn default_console_absolute() -> u64 {
    8 * 3600
}

fn default_console_sessions() -> usize {
    10_000
}
